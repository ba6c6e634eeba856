"""Checkpoint files: reading state dicts safely, our own format, and official SSP checkpoints.

Inside ssp-detect labels are real = 0 and fake = 1 and every model's logit is the log-odds of
*fake*. The official SSP code uses real = 1, so its logit is the log-odds of *real*. An official
checkpoint is converted once, here, by negating the final layer: ``sigmoid(-z) = 1 - sigmoid(z)``,
so every decision stays the same.

Our checkpoints are dicts of plain types and tensors (loadable with ``weights_only=True``)::

    {"format": "ssp-detect/1", "model": "ssp-native-gn", "state_dict": {...},
     "label_convention": "real=0,fake=1", "threshold": 0.5, "preprocess": {...},
     "train_config": {...}, "metrics": {...}, "epoch": 12}

A calibrated copy (:func:`save_calibrated`) adds ``"calibration": {"target_fpr", "data", "split",
"metrics"}`` and replaces ``threshold``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssp_detect.errors import SSPError
from ssp_detect.outputs import write_failed

log = logging.getLogger(__name__)

FORMAT = "ssp-detect/1"
OUR_CONVENTION = "real=0,fake=1"
OFFICIAL_CONVENTION = "real=1,fake=0"


class CheckpointError(SSPError, ValueError):
    """A weights file that cannot be used; the message says which file and why."""


def read_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """Load a ``.pt``/``.pth`` file with ``weights_only=True`` onto the CPU; a ``.safetensors`` file
    with its JSON config is read as the checkpoint it was exported from (:mod:`~ssp_detect.models.safetensors_io`)."""
    from ssp_detect.models.safetensors_io import is_safetensors, read_safetensors_checkpoint

    if is_safetensors(path):
        return read_safetensors_checkpoint(path)
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Weights file {path} does not exist; check the path.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise CheckpointError(
            f"Weights file {path} could not be read as a PyTorch checkpoint ({exc.__class__.__name__})."
        ) from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"Weights file {path} holds a {type(obj).__name__}, not a state dict.")
    return obj


def unwrap_state_dict(obj: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Return the tensors of a state dict, unwrapping ``state_dict``/``model`` and ``module.``."""
    for key in ("state_dict", "model"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the tensors of any state-dict file (ours, official, or a plain torchvision one)."""
    state = unwrap_state_dict(read_checkpoint_file(path))
    if not state:
        raise CheckpointError(f"Weights file {path} holds no tensors.")
    return state


def is_ours(obj: dict[str, Any]) -> bool:
    """True for a checkpoint written by ssp-detect."""
    return obj.get("format") == FORMAT


def official_to_ours(state: dict[str, torch.Tensor], head: str = "disc.fc") -> dict[str, torch.Tensor]:
    """Convert an official (real = 1) state dict to our convention by negating the final layer."""
    missing = [f"{head}.weight", f"{head}.bias"]
    missing = [k for k in missing if k not in state]
    if missing:
        raise CheckpointError(f"Official-style state dict lacks {', '.join(missing)}.")
    state = dict(state)
    state[f"{head}.weight"] = -state[f"{head}.weight"]
    state[f"{head}.bias"] = -state[f"{head}.bias"]
    return state


def infer_official_model(state: dict[str, torch.Tensor]) -> str:
    """The registered model of an official SSP state dict: ``ssp`` when it has the SRM kernel, else
    the ResNet-50 baseline when it has the ``disc.*`` backbone."""
    if "srm.kernel" in state:
        return "ssp"
    if any(k.startswith("disc.") for k in state):
        return "resnet50-baseline"
    raise CheckpointError(
        "The weights are neither an ssp-detect checkpoint nor an official SSP state dict "
        "(no srm.kernel or disc.* tensors)."
    )


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically: into ``<path>.tmp``, flushed to the disk, then renamed over
    ``path``, so that a reader or a crash never meets a half-written file.

    Raises:
        ~ssp_detect.outputs.OutputError: the write failed (a full disk, a read-only folder): the temporary file is
            removed and a checkpoint already at ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Through a Python file, so that a failed write is an OSError with its errno (torch.save to a
        # path raises a RuntimeError from its C++ writer).
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, "label_convention": OUR_CONVENTION, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException as exc:  # an interrupt too: never leave the temporary file behind
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if not isinstance(exc, OSError):
            raise
        kept = "; the previous one is unchanged" if path.is_file() else ""
        raise write_failed(f"the checkpoint {path}", exc, kept) from exc


def save_calibrated(
    path: str | Path,
    source: str | Path,
    *,
    threshold: float,
    calibration: dict[str, Any],
    model_name: str | None = None,
    temperature: float = 1.0,
) -> None:
    """Write a copy of the checkpoint ``source`` that carries a decision threshold.

    ``source`` is read once. Our checkpoints are copied with everything they hold (a ``last.pt``
    keeps its optimizer state). An official SSP file is converted once, as :func:`load_model
    <ssp_detect.models.loading.load_model>` converts it: the final layer negated (labels real = 0),
    the model named (``model_name``, else inferred) and the registered input spec stored, so the
    copy makes the same decisions as the original at every threshold.

    Args:
        path: The calibrated copy to write (atomically).
        source: The checkpoint the threshold was chosen for.
        threshold: Decision threshold on p_fake.
        calibration: How it was chosen (target false-positive rate, data, split, metrics), stored
            under ``calibration``.
        model_name: Architecture of an official state dict (default: inferred); ignored for ours.
        temperature: p_fake = sigmoid(logit / temperature) from now on (1: the raw output).
    """
    raw = read_checkpoint_file(source)
    if not is_ours(raw):
        from ssp_detect.models.registry import get_spec

        state = unwrap_state_dict(raw)
        name = model_name or infer_official_model(state)
        raw = {"model": name, "state_dict": official_to_ours(state), "preprocess": get_spec(name).feed.to_dict()}
    payload = {k: v for k, v in raw.items() if k not in ("format", "label_convention")}
    save_checkpoint(path, payload | {"threshold": threshold, "temperature": temperature, "calibration": calibration})


def load_backbone_weights(net: nn.Module, path: str | Path) -> None:
    """Copy a local backbone state dict (e.g. ImageNet weights) into ``net``.

    ``net`` is a torchvision-layout ResNet, or a backbone that says in class attributes what its
    classifier is called (``classifier``) and which weights it takes (``weights_kind``,
    ``weights_hint``), as :class:`~ssp_detect.models.efficientnet.EfficientNetLite0` does. The
    classifier (``fc.*`` for a ResNet) is never copied. Tensors whose name or shape do not exist in
    ``net`` (a changed stem, BatchNorm statistics under GroupNorm) are skipped and logged.

    Raises:
        CheckpointError: the file is missing, unreadable, or not a matching state dict.
    """
    head = getattr(net, "classifier", "fc") + "."
    kind = getattr(net, "weights_kind", "a torchvision ResNet")
    hint = getattr(
        net,
        "weights_hint",
        "a matching torchvision ResNet (e.g. resnet50 ImageNet weights saved with torch.save(model.state_dict()))",
    )
    state = read_state_dict(path)
    own = net.state_dict()
    usable = {k: v for k, v in state.items() if not k.startswith(head) and k in own and own[k].shape == v.shape}
    wanted = [k for k, v in own.items() if not k.startswith(head) and v.is_floating_point()]
    covered = sum(1 for k in wanted if k in usable)
    if covered < 0.8 * len(wanted):
        raise CheckpointError(
            f"{path} does not look like {kind} state dict for this backbone "
            f"({covered} of {len(wanted)} tensors match); pass the weights of {hint}."
        )
    skipped = sorted(set(state) - set(usable) - {k for k in state if k.startswith(head)})
    if skipped:
        log.info("backbone weights: skipped %d tensors that do not fit: %s", len(skipped), ", ".join(skipped[:8]))
    net.load_state_dict(usable, strict=False)
    log.info("backbone weights: loaded %d tensors from %s", len(usable), path)
