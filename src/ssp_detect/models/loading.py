"""Loading a detector from a weights file: our checkpoints or the official SSP release."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ssp_detect.data.preprocess import InputSpec
from ssp_detect.models.checkpoint import (
    CheckpointError,
    infer_official_model,
    is_ours,
    official_to_ours,
    read_checkpoint_file,
    unwrap_state_dict,
)
from ssp_detect.models.registry import ModelSpec, UnknownModelError, create_model, get_spec

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A model ready for inference, with what is needed to feed and describe it.

    Attributes:
        model: The network in eval mode, on the CPU (logit of fake).
        name: Registry name.
        spec: Its registry spec.
        source: ``ssp-detect`` or ``official``.
        threshold: Decision threshold on p_fake stored with the weights (0.5 if none).
        sha256: Hex digest of the weights file.
        meta: Everything else the checkpoint carried (train config, metrics, epoch, ...).
        feed: How to feed it: the spec's, with what the checkpoint stored (the patch size and
            candidate count it was trained with; official weights: the paper's 32 and 64).
    """

    model: nn.Module
    name: str
    spec: ModelSpec
    source: str
    threshold: float
    sha256: str
    meta: dict[str, Any] = field(default_factory=dict)
    feed: InputSpec | None = None

    def __post_init__(self) -> None:
        if self.feed is None:
            self.feed = self.spec.feed


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_model(path: str | Path, *, model_name: str | None = None) -> LoadedModel:
    """Load a detector from ``path``.

    * An ssp-detect checkpoint rebuilds the model it names, with its threshold and metadata.
    * Any other state dict is taken as the official SSP release (labels real = 1): the model is
      ``ssp`` when it has ``srm.kernel`` (``model_name`` overrides), and the final layer is negated
      once so that the logit is that of *fake* and every decision is unchanged.

    Raises:
        CheckpointError: a missing, unreadable or mismatched file, in one sentence.
    """
    raw = read_checkpoint_file(path)
    state = unwrap_state_dict(raw)
    if is_ours(raw):
        name = model_name or raw["model"]
        source, threshold = "ssp-detect", float(raw.get("threshold", 0.5))
        meta = {k: v for k, v in raw.items() if k not in ("state_dict", "optimizer", "rng")}
        stored = raw.get("preprocess")
    else:
        name = model_name or infer_official_model(state)
        state = official_to_ours(state)
        source, threshold, meta = "official", 0.5, {"label_convention_in_file": "real=1,fake=0"}
        stored = None
    try:
        spec = get_spec(name)
    except UnknownModelError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    model = create_model(name)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit model {name!r}: tensor shapes differ ({str(exc).splitlines()[-1].strip()}).") from exc
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{path} does not fit model {name!r}: {len(result.missing_keys)} missing tensors "
            f"(e.g. {', '.join(result.missing_keys[:3])}) and {len(result.unexpected_keys)} unexpected "
            f"(e.g. {', '.join(result.unexpected_keys[:3])}); pass --arch to name the right architecture."
        )
    model.eval()
    log.info("loaded %s (%s weights) from %s", name, source, path)
    try:
        feed = InputSpec.from_dict(stored, spec.feed) if isinstance(stored, dict) else spec.feed
    except ValueError as exc:
        raise CheckpointError(f"{path} stores an input spec that cannot be used: {exc}") from exc
    return LoadedModel(model, name, spec, source, threshold, file_sha256(path), meta, feed)
