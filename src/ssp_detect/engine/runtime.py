"""Device and numeric-precision choices."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

import torch

from ssp_detect.constants import BACKENDS, DECODERS, PRECISIONS  # noqa: F401  (BACKENDS, DECODERS: re-exported)
from ssp_detect.errors import SSPError, UsageError


class DeviceError(SSPError, ValueError):
    """A device that cannot be used here."""


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else the CPU; ``cpu``, ``cuda`` or ``cuda:N`` force one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise DeviceError(f"Unknown device {name!r}; use auto, cpu, cuda or cuda:N.") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"Device {name!r} was asked for but CUDA is not available here; use --device cpu.")
    return device


def resolve_precision(precision: str, device: torch.device, *, official: bool = False) -> str:
    """``auto`` means fp32 on the CPU and bf16 autocast on CUDA, except for ``official`` weights (the
    paper's release), which keep fp32 everywhere: bf16 moves their p_fake (measured in
    ``benchmarks/bf16_agreement.py``), and their numbers should be the paper's."""
    if precision not in PRECISIONS:
        raise UsageError(f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    if precision == "auto":
        return "bf16" if device.type == "cuda" and not official else "fp32"
    return precision


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """bf16 autocast when asked for (the SRM step stays fp32 inside the model), else nothing."""
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


def place_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move a model to ``device`` in channels-last layout (faster convolutions on CPU and GPU;
    measured in ``benchmarks/``)."""
    return model.to(device).to(memory_format=torch.channels_last)


def model_input(
    pixels: torch.Tensor, device: torch.device, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """A uint8 (B, 3, S, S) batch -> normalised float32 on ``device``, channels-last."""
    from ssp_detect.data.preprocess import normalize

    x = normalize(pixels.to(device, non_blocking=True), tuple(mean), tuple(std))
    return x.contiguous(memory_format=torch.channels_last)


def default_workers() -> int:
    """DataLoader workers: one per core, leaving one for the main process, at most 16."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(16, n - 1))
