"""Exporting a loaded detector to ONNX: one graph with its input contract, checked, and cached.

The graph is the model part after patch selection (for ``ssp``: bilinear upsampling, SRM,
clipping and the ResNet-50; for ``ssp-cooc``: residuals, co-occurrence histograms and the linear
head), traced by PyTorch's TorchScript exporter at opset :data:`OPSET`::

    input  "input": float32 (batch, 3, S, S), RGB, normalised: (pixel / 255 - mean) / std
    output "logit": float32 (batch,), log-odds of *fake*; p_fake = sigmoid(logit / temperature)

The batch axis is dynamic; S is the side the checkpoint feeds (32 for the paper's patch). The input
contract is stored in the model's ``metadata_props`` (:func:`onnx_metadata`): input kind and size,
mean, std, label convention (real=0, fake=1), threshold, temperature, model name and the checkpoint's
SHA-256. Every export is checked before it is kept: ONNX Runtime must reproduce PyTorch's p_fake
within :data:`PARITY_TOLERANCE` on a seeded batch of random pixels, else :class:`ExportError`.

:func:`cached_onnx` exports a checkpoint once, to ``<cache>/onnx/<sha256>.onnx``, where
``<cache>`` is ``$SSP_CACHE``, else ``$XDG_CACHE_HOME/ssp-detect``, else ``~/.cache/ssp-detect``;
written atomically (a temporary file, then a rename), so concurrent processes never read half a file.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import math
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ssp_detect.errors import SSPError

if TYPE_CHECKING:
    from ssp_detect.models.loading import LoadedModel

log = logging.getLogger(__name__)

OPSET = 17  # ScatterElements with an add reduction (ssp-cooc's histograms) needs 16 or later
ONNX_FORMAT = "ssp-detect-onnx/1"  # bump when the exported graph of a checkpoint changes
PARITY_TOLERANCE = 1e-4  # largest |p_fake(ONNX Runtime) - p_fake(PyTorch)| an export may show
INPUT_NAME, OUTPUT_NAME = "input", "logit"
WAYS_OUT = "score it with --backend torch, or export it with --format safetensors"


class ExportError(SSPError, ValueError):
    """A model that cannot be exported, or an export that cannot be written or used; one sentence."""


class _LogitGraph(nn.Module):
    """The exported function: the model's logit of a normalised batch, and nothing else (models whose
    ``forward`` takes options, as ESSP's does, are traced with their defaults)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).float()


# ---------------------------------------------------------------- ONNX


def model_fingerprint(model: nn.Module) -> str:
    """A hash of a module's class and its state (names, shapes, dtypes and values of every tensor): it
    tells the graph of a checkpoint's module from that of a module put in its place after loading
    (``dataclasses.replace(loaded, model=...)``), which the file's SHA-256 cannot."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


def onnx_metadata(loaded: LoadedModel) -> dict[str, str]:
    """The input contract stored in an exported graph's ``metadata_props`` (strings, as ONNX keeps them)."""
    from ssp_detect import __version__

    feed = loaded.feed
    return {
        "format": ONNX_FORMAT,
        "model": loaded.name,
        "input": feed.input,
        "input_size": str(feed.size),
        "input_layout": "NCHW float32 RGB, (pixel / 255 - mean) / std",
        "mean": json.dumps(list(feed.mean)),
        "std": json.dumps(list(feed.std)),
        "preprocess": json.dumps(feed.to_dict()),
        "output": "logit of fake; p_fake = sigmoid(logit / temperature)",
        "label_convention": "real=0,fake=1",
        "threshold": repr(float(loaded.threshold)),
        "temperature": repr(float(loaded.temperature)),
        "checkpoint_sha256": loaded.sha256,
        "weights_source": loaded.source,
        "model_fingerprint": model_fingerprint(loaded.model),
        "ssp_detect_version": __version__,
    }


def example_batch(loaded: LoadedModel, batch: int, seed: int = 0) -> torch.Tensor:
    """A seeded batch of random pixels at the model's input size, normalised as the model expects."""
    from ssp_detect.data.preprocess import normalize

    size = loaded.feed.size
    pixels = torch.randint(
        0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )
    return normalize(pixels, tuple(loaded.feed.mean), tuple(loaded.feed.std))


def _cpu_float_copy(model: nn.Module) -> nn.Module:
    """The model on the CPU in float32 and eval mode: itself when it is so already, else a copy."""
    on_cpu = all(p.device.type == "cpu" and p.dtype == torch.float32 for p in model.parameters())
    return (model if on_cpu else copy.deepcopy(model).cpu().float()).eval()


def _trace(loaded: LoadedModel) -> bytes:
    """The traced ONNX graph of ``loaded`` as bytes, without metadata; ExportError when tracing fails."""
    graph = _LogitGraph(_cpu_float_copy(loaded.model)).eval()
    buffer = io.BytesIO()
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter warns about its deprecation and about shapes it reads as
            # constants (the input side); the parity check below catches any graph that is wrong.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph,
                (example_batch(loaded, 2),),
                buffer,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as exc:  # the exporter raises many types; each means "does not export"
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc.__class__.__name__
        raise ExportError(f"Model {loaded.name!r} does not export to ONNX ({reason}); {WAYS_OUT}.") from exc
    return buffer.getvalue()


def _with_metadata(graph: bytes, metadata: dict[str, str]) -> bytes:
    import onnx

    proto = onnx.load_from_string(graph)
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "ssp-detect"
    proto.doc_string = (
        f"ssp-detect model {metadata['model']}: input {metadata['input']} {metadata['input_size']}x"
        f"{metadata['input_size']}, output the logit of fake (labels real=0, fake=1)."
    )
    return proto.SerializeToString()


def parity(loaded: LoadedModel, session: Any, *, batch: int = 3, seed: int = 1) -> float:
    """Largest |p_fake| difference between ONNX Runtime (``session``) and PyTorch on a seeded random
    batch (another batch size than the traced one, to exercise the dynamic axis); NaN counts as inf."""
    x = example_batch(loaded, batch, seed)
    with torch.inference_mode(False), torch.no_grad():
        reference = _cpu_float_copy(loaded.model)(x).float().numpy().astype(np.float64)
    got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0].astype(np.float64).reshape(-1)
    t = loaded.temperature
    diff = np.abs(1 / (1 + np.exp(-got / t)) - 1 / (1 + np.exp(-reference / t)))
    return float(diff.max()) if np.isfinite(diff).all() else math.inf


def onnx_bytes(loaded: LoadedModel) -> bytes:
    """The checked ONNX graph of ``loaded`` with its input contract (see the module docstring).

    Raises:
        ExportError: the model does not export, onnxruntime or onnx is not installed, or ONNX
            Runtime does not reproduce PyTorch's p_fake within :data:`PARITY_TOLERANCE`.
    """
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as exc:
        raise ExportError(
            f"ONNX export needs the packages onnx and onnxruntime ({exc.name} is missing); "
            "install them with 'pip install onnx onnxruntime'."
        ) from exc
    graph = _with_metadata(_trace(loaded), onnx_metadata(loaded))
    try:
        session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
        inputs = [i.name for i in session.get_inputs()]
        worst = parity(loaded, session) if inputs == [INPUT_NAME] else math.nan
    except Exception as exc:  # onnxruntime raises its own types for a graph it cannot run
        raise ExportError(
            f"Model {loaded.name!r} does not export to ONNX (ONNX Runtime cannot run the graph: "
            f"{str(exc).strip().splitlines()[0][:200]}); {WAYS_OUT}."
        ) from exc
    if inputs != [INPUT_NAME]:
        raise ExportError(
            f"Model {loaded.name!r} does not export to ONNX (the traced graph does not read its input: Python or "
            f"numpy code in forward); {WAYS_OUT}."
        )
    if not worst <= PARITY_TOLERANCE:
        raise ExportError(
            f"The ONNX graph of model {loaded.name!r} does not reproduce PyTorch (p_fake differs by {worst:.2g}, "
            f"more than {PARITY_TOLERANCE:g}); {WAYS_OUT}."
        )
    log.info("exported %s to ONNX (opset %d); p_fake within %.1e of PyTorch", loaded.name, OPSET, worst)
    return graph


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def export_onnx(loaded: LoadedModel, path: str | Path) -> Path:
    """Write the checked ONNX graph of ``loaded`` to ``path`` (atomically); see :func:`onnx_bytes`. A
    failed write is an :class:`~ssp_detect.outputs.OutputError`."""
    from ssp_detect.outputs import writing

    path = Path(path)
    data = onnx_bytes(loaded)
    with writing(path, "the ONNX graph"):
        write_atomically(path, data)
    return path


def cache_dir() -> Path:
    """The cache root: ``$SSP_CACHE``, else ``$XDG_CACHE_HOME/ssp-detect``, else ``~/.cache/ssp-detect``."""
    if os.environ.get("SSP_CACHE"):
        return Path(os.environ["SSP_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ssp-detect"


def cached_onnx_path(loaded: LoadedModel) -> Path:
    """Where the ONNX graph of a checkpoint is cached: ``<cache>/onnx/<sha256>.onnx``."""
    return cache_dir() / "onnx" / f"{loaded.sha256}.onnx"


def is_current(metadata: dict[str, str], loaded: LoadedModel) -> bool:
    """Whether a graph's metadata says it is the export of ``loaded`` by this version of ssp-detect
    (same format, model, input, checkpoint, module and version; the cache key alone does not cover a
    model named with ``--arch``, a module swapped in after loading, or a newer exporter)."""
    expected = onnx_metadata(loaded)
    keys = ("format", "model", "preprocess", "checkpoint_sha256", "model_fingerprint", "ssp_detect_version")
    return all(metadata.get(k) == expected[k] for k in keys)


def cached_onnx(loaded: LoadedModel, *, refresh: bool = False) -> Path:
    """The cached ONNX graph of ``loaded``, exported on first use (see the module docstring).

    Args:
        refresh: Export again even when a file is there (a stale or damaged cache entry).

    Raises:
        ExportError: the model does not export, or the cache folder cannot be written.
    """
    path = cached_onnx_path(loaded)
    if path.is_file() and not refresh:
        return path
    data = onnx_bytes(loaded)
    try:
        write_atomically(path, data)
    except OSError as exc:
        raise ExportError(
            f"Cannot write the ONNX cache {path} ({exc.strerror or exc}); set SSP_CACHE to a writable folder."
        ) from None
    log.info("cached the ONNX graph of %s (sha256 %s) in %s", loaded.name, loaded.sha256[:12], path)
    return path
