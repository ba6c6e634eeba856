"""SSP: the single-simple-patch detector of the paper, variants that train from scratch, and
``ssp-effnet``, SSP's input into an EfficientNet-Lite0 that starts from ImageNet weights.

Forward of the paper's model, on a normalised simple patch (B, 3, 32, 32):
bilinear upsampling to 256x256 -> fixed SRM high-pass -> Hardtanh(-3, 3) -> ResNet-50 -> logit.

The variants exist because the paper's model does not learn from random weights: trained from
scratch on an H100 (real photos from installed packages versus Real-ESRGAN x4plus fakes of them,
1,500 steps of batch 64), its training loss fell to 0.04 while its AUC stayed at 0.47-0.55;
with GroupNorm instead of BatchNorm it reached 0.81 (see ``docs/models.md``). BatchNorm lets it
use batch statistics, and after x8 upsampling the SRM filters mostly see the interpolation grid.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ssp_detect.models.backbone import Norm, Stem, build_resnet
from ssp_detect.models.efficientnet import IMAGENET_PACKAGE, efficientnet_lite0, imagenet_weights_path
from ssp_detect.models.registry import BackboneWeights, ModelSpec, register_model
from ssp_detect.models.srm import SRMFilter


class SSPNet(nn.Module):
    """SRM residual of the simple patch, classified by a ResNet.

    Attribute names (``srm``, ``disc``) match the official code, so its state dicts load as-is.

    Args:
        upsample_to: Side the patch is upsampled to (bilinear, align_corners=False); None keeps
            the native resolution.
        srm_first: Apply the SRM filter before upsampling (on the patch's own pixels).
        arch, norm, stem: Backbone options, see :func:`build_resnet`.
        backbone: Builds another network for the residual instead of the ResNet (one logit, shape
            (B, 1)); ``arch``, ``norm`` and ``stem`` are then unused.
    """

    def __init__(
        self,
        *,
        upsample_to: int | None = 256,
        srm_first: bool = False,
        arch: str = "resnet50",
        norm: Norm = "batch",
        stem: Stem = "standard",
        backbone: Callable[[], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.upsample_to = upsample_to
        self.srm_first = srm_first
        self.srm = SRMFilter()
        self.disc = build_resnet(arch, norm=norm, stem=stem) if backbone is None else backbone()

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The clipped SRM residual that the backbone sees, float32."""
        if not self.srm_first and self.upsample_to is not None:
            x = F.interpolate(
                x.float(), size=(self.upsample_to, self.upsample_to), mode="bilinear", align_corners=False
            )
        x = F.hardtanh(self.srm(x), -3.0, 3.0)
        if self.srm_first and self.upsample_to is not None:
            x = F.interpolate(x, size=(self.upsample_to, self.upsample_to), mode="bilinear", align_corners=False)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of *fake*, shape (B,)."""
        return self.disc(self.residual(x)).squeeze(1)


register_model(
    ModelSpec(
        name="ssp",
        builder=SSPNet,
        paper=True,
        description="The paper's SSP: 32x32 simple patch, bilinear x8, SRM, ResNet-50 (BatchNorm). Loads "
        "official checkpoints.",
    )
)
register_model(
    ModelSpec(
        name="ssp-gn",
        builder=partial(SSPNet, norm="group"),
        description="SSP with GroupNorm in the ResNet-50: no batch-statistics cue; trains from random weights.",
    )
)
register_model(
    ModelSpec(
        name="ssp-native-gn",
        builder=partial(SSPNet, upsample_to=None, srm_first=True, norm="group", stem="native"),
        description="SRM on the native 32x32 patch, ResNet-50 with a stride-1 stem and GroupNorm: ~1/4 of SSP's "
        "compute, learns best from scratch.",
    )
)
register_model(
    ModelSpec(
        name="ssp-lite",
        builder=partial(SSPNet, upsample_to=None, srm_first=True, arch="compact", norm="group", stem="native"),
        description="ssp-native-gn with a compact ResNet (one basic block per stage, widths 32-256): trains on a "
        "CPU in minutes; the CPU demo trains it beside ssp-cooc.",
    )
)
register_model(
    ModelSpec(
        name="ssp-effnet",
        builder=partial(SSPNet, backbone=efficientnet_lite0),
        pretrained=BackboneWeights(f"ImageNet-1k weights of the package {IMAGENET_PACKAGE}", imagenet_weights_path),
        description="The paper's SSP input (32x32 simple patch, bilinear x8, SRM, clipping) into an EfficientNet-Lite0 "
        f"that starts from ImageNet weights ({IMAGENET_PACKAGE}, installed, never downloaded): 3.4M parameters.",
    )
)
