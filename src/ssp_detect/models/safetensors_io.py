"""Checkpoints as safetensors plus a JSON config: weights without pickle, metadata a person can read.

A pair of files::

    model.safetensors         the state dict, labels real = 0, fake = 1 (an official file's final
                              layer is already negated), float32 on the CPU
    model.safetensors.json    {"format": "ssp-detect-safetensors/1", "model": "ssp", "label_convention":
                              "real=0,fake=1", "threshold": 0.5, "temperature": 1.0, "preprocess": {...},
                              "weights_source": "official", "exported_from_sha256": "...",
                              "meta": {"train_config": {...}, "metrics": {...}, "calibration": {...}, ...}}

:func:`read_safetensors_checkpoint` turns the pair into the dict a ``.pt`` checkpoint holds, so that
:func:`~ssp_detect.models.checkpoint.read_checkpoint_file`, and through it
:func:`~ssp_detect.models.loading.load_model`, ``ssp calibrate`` and the rest, read it like a ``.pt``:
the same model, threshold, temperature, preprocessing and metadata. The config is required: without
it the label convention of the tensors is unknown, and nothing is guessed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ssp_detect.models.checkpoint import FORMAT, OUR_CONVENTION, CheckpointError

if TYPE_CHECKING:
    from ssp_detect.models.loading import LoadedModel

SAFETENSORS_FORMAT = "ssp-detect-safetensors/1"
SUFFIX = ".safetensors"
# Fields of the config that load_model reads itself; "meta" carries the rest of the checkpoint.
_OWN_FIELDS = ("format", "model", "label_convention", "threshold", "temperature", "preprocess")


def config_path(path: str | Path) -> Path:
    """The JSON config beside a safetensors file: ``PATH.json`` (``model.safetensors.json``)."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def _plain(value: Any) -> Any:
    """``value`` in JSON types (tensors and numpy values as lists or numbers); None for anything else."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        return value.tolist()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return None


def safetensors_config(loaded: LoadedModel) -> dict[str, Any]:
    """The JSON config of :func:`save_safetensors`: what a ``.pt`` checkpoint carries besides tensors."""
    return {
        "format": SAFETENSORS_FORMAT,
        "model": loaded.name,
        "label_convention": OUR_CONVENTION,
        "threshold": float(loaded.threshold),
        "temperature": float(loaded.temperature),
        "preprocess": loaded.feed.to_dict(),
        "weights_source": loaded.source,
        "exported_from_sha256": loaded.sha256,
        "meta": _plain({k: v for k, v in loaded.meta.items() if k not in (*_OWN_FIELDS, "weights_source")}),
    }


def save_safetensors(loaded: LoadedModel, path: str | Path) -> tuple[Path, Path]:
    """Write the weights of ``loaded`` to ``path`` and its config to :func:`config_path`, each atomically
    (a failed write is an :class:`~ssp_detect.outputs.OutputError`).

    Returns:
        The two files written, weights first.
    """
    from safetensors.torch import save

    from ssp_detect.models.export import write_atomically
    from ssp_detect.outputs import writing

    path = Path(path)
    state = {
        k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous()
        for k, v in loaded.model.state_dict().items()
    }
    config = config_path(path)
    with writing(path, "the weights"):
        write_atomically(path, save(state, metadata={"format": SAFETENSORS_FORMAT, "model": loaded.name}))
    with writing(config, "the config"):
        write_atomically(config, (json.dumps(safetensors_config(loaded), indent=2) + "\n").encode())
    return path, config


def is_safetensors(path: str | Path) -> bool:
    """Whether ``path`` names a safetensors file (by its suffix)."""
    return Path(path).suffix.lower() == SUFFIX


def read_safetensors_checkpoint(path: str | Path) -> dict[str, Any]:
    """A safetensors file and its JSON config as the dict of an ssp-detect ``.pt`` checkpoint.

    Raises:
        CheckpointError: a missing or unreadable file or config, in one sentence.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path, config = Path(path), config_path(path)
    if not path.is_file():
        raise CheckpointError(f"Weights file {path} does not exist; check the path.")
    if not config.is_file():
        raise CheckpointError(
            f"{path} has no config {config.name} beside it, so its model and label convention are unknown; "
            "export it with 'ssp export --format safetensors', which writes both."
        )
    try:
        settings = json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"The config {config} could not be read as JSON ({exc.__class__.__name__}).") from exc
    if not isinstance(settings, dict) or settings.get("format") != SAFETENSORS_FORMAT:
        raise CheckpointError(f"The config {config} is not an ssp-detect safetensors config ({SAFETENSORS_FORMAT}).")
    if settings.get("label_convention", OUR_CONVENTION) != OUR_CONVENTION:
        raise CheckpointError(
            f"The config {config} names labels {settings['label_convention']!r}; expected real=0,fake=1."
        )
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"Weights file {path} could not be read as safetensors ({exc}).") from exc
    meta = settings.get("meta") if isinstance(settings.get("meta"), dict) else {}
    own = {k: settings[k] for k in _OWN_FIELDS[1:] if k in settings}
    extra = {k: settings[k] for k in ("weights_source", "exported_from_sha256") if k in settings}
    return {**meta, **extra, **own, "format": FORMAT, "state_dict": state}
