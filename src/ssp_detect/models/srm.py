"""The fixed SRM high-pass filter bank used by SSP.

Three 5x5 residual filters from steganalysis (spatial rich models). Output channel ``k`` applies
filter ``k`` to each of the R, G and B channels and sums them, so the convolution weight has shape
``(3, 3, 5, 5)`` with ``weight[k, c] = filter_k`` for every input channel ``c``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_F1 = [
    [0, 0, 0, 0, 0],
    [0, -1, 2, -1, 0],
    [0, 2, -4, 2, 0],
    [0, -1, 2, -1, 0],
    [0, 0, 0, 0, 0],
]
_F2 = [
    [-1, 2, -2, 2, -1],
    [2, -6, 8, -6, 2],
    [-2, 8, -12, 8, -2],
    [2, -6, 8, -6, 2],
    [-1, 2, -2, 2, -1],
]
_F3 = [
    [0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0],
    [0, 1, -2, 1, 0],
    [0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0],
]


def srm_kernel() -> torch.Tensor:
    """Return the SRM convolution weight, shape ``(3, 3, 5, 5)``, float32, on the CPU (also while a
    model is built on the meta device, whose arithmetic would import torch's compiler stack)."""
    filters = torch.tensor([_F1, _F2, _F3], dtype=torch.float32, device="cpu")
    filters = filters / torch.tensor([4.0, 12.0, 2.0], device="cpu").view(3, 1, 1)
    return filters.unsqueeze(1).repeat(1, 3, 1, 1)


class SRMFilter(nn.Module):
    """Fixed (never trained) SRM high-pass convolution, stride 1, padding 2, no bias.

    The filter always runs in float32, also under autocast: its residuals on a smooth patch are
    of order 1e-4 to 1e-2 and bf16 or TF32 would swamp them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("kernel", srm_kernel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            if x.is_cuda:
                with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
                    return F.conv2d(x.float(), self.kernel.float(), stride=1, padding=2)
            return F.conv2d(x.float(), self.kernel.float(), stride=1, padding=2)
