"""Training configuration: defaults < YAML preset < command-line flags.

The defaults are the official SSP recipe. A preset is a YAML file holding only the keys it
changes; ``--config NAME`` finds a preset shipped with the package (``src/ssp_detect/configs``),
``--config PATH`` reads a file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

PRESET_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A preset or option that cannot be used."""


@dataclass
class TrainConfig:
    """Everything a training run needs. See ``ssp train --help`` for each option."""

    # data
    data: str | None = None
    layout: str = "auto"
    train_split: str = "train"
    val_split: str = "holdout"
    val_fraction: float = 0.1
    subsets: list[str] | None = None
    val_data: str | None = None
    val_subsets: list[str] | None = None
    real: str | None = None
    fake: str | None = None
    val_real: str | None = None
    val_fake: str | None = None
    # model
    model: str = "ssp"
    backbone_weights: str | None = None
    # optimisation (official recipe)
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.0
    poly_power: float = 0.9
    steps_per_epoch: int | None = None
    repeats: int = 1
    stop_after: int | None = None
    select_metric: str = "acc"
    target_fpr: float | None = 0.05
    # augmentation (official options, off by default), applied before patch selection
    blur_prob: float = 0.0
    blur_sig: list[float] = field(default_factory=lambda: [0.0, 1.0])
    jpg_prob: float = 0.0
    jpg_method: list[str] = field(default_factory=lambda: ["pil", "cv2"])
    jpg_qual: list[int] = field(default_factory=lambda: [90, 100])
    format_match: str = "auto"
    format_match_qualities: list[int] | None = None
    # auxiliary losses of models that define training_loss (ESSP), added to the detection BCE
    perception_weight: float = 0.5
    restoration_weight: float = 1.0
    # patches
    patch_mode: str = "random"
    eval_patch_mode: str = "seeded"
    num_candidates: int | None = None
    patch_size: int | None = None
    # run
    out: str = "runs/train"
    seed: int = 0
    workers: int | None = None
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    train_eval_samples: int = 256
    log_every: int = 20
    strict: bool = False
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain types (for YAML and checkpoints)."""
        return dataclasses.asdict(self)


def read_preset(name_or_path: str) -> dict[str, Any]:
    """Load a preset by packaged name (``from-scratch``) or path (``my.yaml``)."""
    path = Path(name_or_path)
    if not path.is_file():
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
        raise ConfigError(f"Config {name_or_path!r} is neither a file nor a packaged preset ({known}).")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config {path} must be a YAML mapping of option: value.")
    return data


def build_config(preset: str | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the preset's keys, then the non-None overrides (flags)."""
    known = {f.name for f in fields(TrainConfig)}
    values: dict[str, Any] = {}
    for source, data in (("preset", read_preset(preset) if preset else {}), ("flags", overrides or {})):
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"Unknown option(s) in {source}: {', '.join(unknown)}.")
        values.update({k: v for k, v in data.items() if v is not None})
    if values.get("format_match") is False:  # YAML reads an unquoted `off` as false
        values["format_match"] = "off"
    return TrainConfig(**values)


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
