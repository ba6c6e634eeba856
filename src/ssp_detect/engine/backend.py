"""Inference backends: what turns a normalised batch into logits, PyTorch or ONNX Runtime.

Data flow: uint8 batch -> :func:`~ssp_detect.engine.runtime.model_input` (normalised float32 on the
device) -> ``backend(x)`` -> logits (float32, on the CPU for ONNX Runtime, on the device for torch)
-> p_fake = sigmoid(logit / temperature). Patch selection, decoding and everything after the logit
stay the same whichever backend runs.

* ``torch``: the ``nn.Module`` on its device, with bf16 autocast when the precision asks for it.
* ``onnxruntime``: the model's ONNX graph (:mod:`ssp_detect.models.export`, exported once per
  checkpoint and cached by its SHA-256) on ONNX Runtime's CPU provider with one intra-op thread per
  core; fp32 only, CPU only. About twice PyTorch's throughput for the ResNet-50 of ``ssp`` on a
  2-core CPU (``benchmarks/backends.py``), p_fake within 1e-4.
* ``auto``: ``onnxruntime`` on the CPU in fp32 when the package is installed and the model exports
  at the input size it will be fed; ``torch`` otherwise (CUDA, bf16, a model that does not export,
  an input size other than the checkpoint's).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ssp_detect.engine.runtime import BACKENDS, autocast, place_model
from ssp_detect.errors import UsageError
from ssp_detect.models.registry import get_spec

if TYPE_CHECKING:
    from ssp_detect.models.loading import LoadedModel

log = logging.getLogger(__name__)

__all__ = ["BACKENDS", "Backend", "OnnxRuntimeBackend", "TorchBackend", "resolve_backend"]

Backend = Callable[[torch.Tensor], torch.Tensor]
"""A normalised float32 batch (B, 3, S, S) on the model's device -> logits of *fake* (B,), float32."""


@dataclass
class TorchBackend:
    """The PyTorch module itself, with bf16 autocast when ``precision`` is ``bf16``."""

    model: nn.Module
    device: torch.device
    precision: str = "fp32"
    name: str = field(default="torch", init=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.precision):
            return self.model(x).float()


@dataclass
class OnnxRuntimeBackend:
    """An ONNX Runtime session over an exported graph (see :mod:`ssp_detect.models.export`)."""

    session: Any
    size: int
    name: str = field(default="onnxruntime", init=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from ssp_detect.models.export import INPUT_NAME, OUTPUT_NAME

        if tuple(x.shape[1:]) != (3, self.size, self.size):
            raise UsageError(
                f"The ONNX graph takes inputs of 3x{self.size}x{self.size}, not {'x'.join(map(str, x.shape[1:]))}; "
                "use --backend torch for another input size."
            )
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: array})[0]).reshape(-1)


def cpu_threads() -> int:
    """Intra-op threads for ONNX Runtime: the cores this process may use, shared among the local
    ranks under torchrun."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def onnxruntime_available() -> bool:
    """Whether the ``onnxruntime`` and ``onnx`` packages can be imported."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


@functools.lru_cache(maxsize=4)
def _session(path: str, mtime_ns: int, threads: int) -> Any:
    """One ONNX Runtime session per graph file (and version of it), reused across evaluations."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    # No spin-waiting between runs: the decoding threads and PyTorch need those cores right after.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def onnxruntime_backend(loaded: LoadedModel) -> OnnxRuntimeBackend:
    """The ONNX Runtime backend of ``loaded``: its cached graph (exported on first use; exported
    again when the cached file is not this checkpoint's current export).

    Raises:
        ExportError: the model does not export, or the cache cannot be written.
    """
    from ssp_detect.models.export import cached_onnx, is_current

    path = cached_onnx(loaded)
    try:
        session = _session(str(path), path.stat().st_mtime_ns, cpu_threads())
        current = is_current(session.get_modelmeta().custom_metadata_map, loaded)
    except Exception as exc:  # a damaged cache file: onnxruntime raises its own types
        log.info("re-exporting %s: the cached graph %s could not be used (%s)", loaded.name, path, exc)
        current = False
    if not current:
        path = cached_onnx(loaded, refresh=True)
        session = _session(str(path), path.stat().st_mtime_ns, cpu_threads())
    return OnnxRuntimeBackend(session, loaded.feed.size)


def resolve_backend(
    name: str,
    loaded: LoadedModel,
    *,
    device: torch.device,
    precision: str,
    input_size: int | None = None,
) -> TorchBackend | OnnxRuntimeBackend:
    """The backend ``name`` (one of :data:`BACKENDS`) for ``loaded`` (see the module docstring).

    Args:
        name: ``auto``, ``torch`` or ``onnxruntime``.
        loaded: The checkpoint (its hash keys the ONNX cache, its feed sets the graph's input size).
        device: The resolved device.
        precision: The resolved precision, ``fp32`` or ``bf16``.
        input_size: The side of the inputs it will be fed (default: the checkpoint's); a graph is
            only used at the checkpoint's own size.

    Raises:
        UsageError: an unknown name, or ``onnxruntime`` asked for where it cannot run (CUDA, bf16,
            another input size, the package missing).
        ExportError: ``onnxruntime`` asked for a model that does not export.
    """
    from ssp_detect.models.export import ExportError

    if name not in BACKENDS:
        raise UsageError(f"Unknown backend {name!r}; choose one of {', '.join(BACKENDS)}.")
    size = loaded.feed.size if input_size is None else input_size
    why_not = _onnxruntime_refusal(device, precision, size, loaded.feed.size)
    if name == "onnxruntime":
        if why_not:
            raise UsageError(f"--backend onnxruntime cannot run here: {why_not}; use --backend auto or torch.")
        return onnxruntime_backend(loaded)
    if name == "auto" and not why_not and not get_spec(loaded.name).onnxruntime_when_auto:
        log.info("scoring %s with PyTorch: it runs faster there than on ONNX Runtime (measured)", loaded.name)
    elif name == "auto" and not why_not:
        try:
            backend = onnxruntime_backend(loaded)
            log.info("scoring %s with ONNX Runtime (%d threads)", loaded.name, cpu_threads())
            return backend
        except ExportError as exc:
            log.info("scoring with PyTorch: %s", exc)
    # placed only now: moving a ResNet-50 to channels-last costs about 0.5 s on 2 cores, wasted on ONNX Runtime
    return TorchBackend(place_model(loaded.model, device), device, precision)


def _onnxruntime_refusal(device: torch.device, precision: str, size: int, exported: int) -> str:
    """Why ONNX Runtime cannot score these inputs here, in words; empty when it can."""
    if device.type != "cpu":
        return f"it runs on the CPU only, and the device is {device}"
    if precision != "fp32":
        return f"the graph is float32, and the precision asked for is {precision}"
    if size != exported:
        return f"the graph takes the checkpoint's input size {exported}, and the inputs are {size}"
    if not onnxruntime_available():
        return "the packages onnxruntime and onnx are not installed (pip install onnxruntime onnx)"
    return ""
