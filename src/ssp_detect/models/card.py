"""A model card (Markdown) generated from a checkpoint: what the model is, reads, was trained on, scored
on validation, how its threshold was chosen, and what it cannot be trusted with.

Everything comes from the checkpoint itself (its registry spec, ``preprocess``, ``train_config``,
``metrics``, ``calibration``, ``temperature``); nothing is looked up elsewhere, so the card of a file
is the same wherever it is made. Sections say "not recorded" where a checkpoint lacks a record (the
official release carries none).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ssp_detect.models.loading import LoadedModel

# Known limits by model family, from measurements recorded in docs/models.md and docs/results.md.
UNSEEN = (
    "Verdicts on images from sources unseen in training (other generators, cameras, editing, "
    "compression or file formats) are not reliable yet: validate on data like yours and calibrate the "
    "threshold there (`ssp calibrate`) before trusting a verdict."
)
LIMITS: dict[str, list[str]] = {
    "paper": [
        "The paper's SSP, as measured by others: 93.3% accuracy on GenImage, 72.2% on ForenSynths and 57.5% "
        "on DRCT-2M (about chance on most Stable Diffusion / SDXL subsets); reported near chance on Synthbuster.",
        "Its BatchNorm ResNet-50 did not learn from random weights in our runs (AUC 0.47-0.55): train the "
        "GroupNorm variants from scratch, or start from ImageNet weights.",
    ],
    "noise": [
        "It reads noise statistics of the flattest regions of the image; JPEG re-compression and resizing wipe "
        "them out, so the same picture can flip between verdicts when stored as JPEG or PNG (use "
        "`ssp predict --stability`).",
        "On real photos from sources outside its training data the medium demo `ssp-strata` called 49% fake "
        "at threshold 0.5 (all crops of PNG-stored photos, most JPEG q90 photos).",
    ],
    "from-scratch": [
        "Trained from random weights (no ImageNet weights ship offline) on a small benchmark; such models "
        "learned in part whether an image is a JPEG (real photos) or a PNG (fakes), a format shortcut.",
    ],
    "pretrained": [
        "Its backbone started from ImageNet weights, learned on photos, but it reads the SRM residual of an "
        "enlarged patch: how much that start helps detection is not measured yet. Trained on a small benchmark, "
        "it may have learned in part whether an image is a JPEG (real photos) or a PNG (fakes), a format shortcut.",
    ],
}


def _family(loaded: LoadedModel) -> list[str]:
    if loaded.source == "official" or loaded.spec.paper:
        return ["paper"]
    if loaded.name in ("ssp-cooc", "ssp-strata"):
        return ["noise", "from-scratch"]
    return ["pretrained"] if loaded.spec.pretrained is not None else ["from-scratch"]


def _number(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _model_section(loaded: LoadedModel) -> list[str]:
    n_params = sum(p.numel() for p in loaded.model.parameters())
    feed = loaded.feed
    if feed.input == "patch":
        candidates = feed.num_candidates or (256 // feed.patch_size) ** 2
        reads = (
            f"the simplest {feed.patch_size}x{feed.patch_size} patch of the image (lowest texture diversity among "
            f"{candidates} candidate crops; images with a side below {feed.patch_size} px are resized to 256x256 first)"
        )
    elif feed.input == "crop":
        reads = (
            f"the centre {feed.image_size}x{feed.image_size} crop at native resolution (smaller images are "
            f"resized to {feed.image_size}x{feed.image_size} first)"
        )
    else:
        reads = f"the whole image resized to {feed.image_size}x{feed.image_size}"
    return [
        "## Model",
        "",
        f"- Architecture: `{loaded.name}`{' (a model of the SSP paper)' if loaded.spec.paper else ''}: "
        f"{loaded.spec.description}",
        f"- Parameters: {n_params:,}",
        f"- Weights: {'the official SSP release (labels converted once to real=0, fake=1)' if loaded.source == 'official' else 'trained with ssp-detect'}; "  # noqa: E501
        f"sha256 `{loaded.sha256}`",
        f"- Reads: {reads}; RGB scaled to [0, 1], normalised with mean {list(feed.mean)} and std "
        f"{[round(s, 6) for s in feed.std]}.",
        f"- Output: p_fake = sigmoid(logit / temperature), the probability that the image is AI-generated "
        f"(labels real = 0, fake = 1); temperature {loaded.temperature:.4g}.",
        "",
    ]


def _default_backbone_start(loaded: LoadedModel) -> str:
    """What a training run without ``--backbone-weights`` started the backbone from."""
    return loaded.spec.pretrained.description if loaded.spec.pretrained is not None else "random weights"


def _training_section(loaded: LoadedModel) -> list[str]:
    cfg = loaded.meta.get("train_config") or {}
    lines = ["## Training data and recipe", ""]
    if not cfg:
        if loaded.source == "official":
            lines += [
                "Not recorded in the file. The official release trains one checkpoint per GenImage subset with the "
                "paper's recipe: BCE, Adam lr 1e-4, 30 epochs, batch 64, poly decay; the checkpoint of best pooled "
                "validation accuracy is kept.",
                "",
            ]
        else:
            lines += ["Not recorded in the checkpoint.", ""]
        return lines
    if cfg.get("data"):
        data = f"`{cfg['data']}` ({cfg.get('layout', 'auto')} layout), split `{cfg.get('train_split', 'train')}`"
    else:
        data = f"real images `{cfg.get('real')}`, fake images `{cfg.get('fake')}`"
    subsets = ", ".join(cfg.get("subsets") or []) or "all"
    validation = (loaded.meta.get("metrics") or {}).get("validation_data") or (
        f"split `{cfg.get('val_split')}`" if cfg.get("val_split") else "not recorded"
    )
    augment = []
    if cfg.get("blur_prob"):
        augment.append(f"Gaussian blur p={cfg['blur_prob']:g} sigma {cfg.get('blur_sig')}")
    jpeg = {k.replace("jpg_", "jpeg_"): v for k, v in cfg.items() if k.startswith(("jpg_", "jpeg_"))}  # old names too
    if jpeg.get("jpeg_prob"):
        augment.append(
            f"JPEG p={jpeg['jpeg_prob']:g} quality {jpeg.get('jpeg_qual')} ({', '.join(jpeg.get('jpeg_method') or [])})"
        )
    if cfg.get("delivery_prob"):
        augment.append(f"random deliveries (JPEG, WebP, resizing, PNG; both classes) p={cfg['delivery_prob']:g}")
    trained = loaded.meta.get("epoch")
    lines += [
        f"- Data: {data}; subsets: {subsets}.",
        f"- Validation: {validation}.",
        f"- Recipe: {cfg.get('epochs')} epochs planned"
        f"{f', this checkpoint from epoch {trained}' if trained is not None else ''}"
        f" (best {cfg.get('select_metric', 'acc')} on validation), batch {cfg.get('batch_size')}, "
        f"lr {cfg.get('lr')} with poly decay (power {cfg.get('poly_power')}), weight decay {cfg.get('weight_decay')}, "
        f"seed {cfg.get('seed')}.",
        f"- Augmentations: {'; '.join(augment) if augment else 'none'}; format matching: "
        f"{cfg.get('format_match', 'not recorded')}; training patch mode: {cfg.get('patch_mode', 'not recorded')}.",
        f"- Backbone start: {cfg.get('backbone_weights') or _default_backbone_start(loaded)}.",
        "",
    ]
    return lines


METRIC_ROWS = (
    ("images (real / fake)", None),
    ("accuracy at the threshold", "acc"),
    ("real accuracy", "real_acc"),
    ("fake accuracy", "fake_acc"),
    ("ROC-AUC", "auc"),
    ("average precision", "ap"),
    ("equal error rate", "eer"),
    ("fakes caught at FPR 1% / 5% / 10%", "tpr"),
    ("expected calibration error", "ece"),
)


def _metrics_section(loaded: LoadedModel) -> list[str]:
    metrics = loaded.meta.get("metrics") or {}
    val = metrics.get("val")
    lines = ["## Validation metrics", ""]
    if not isinstance(val, dict):
        return [*lines, "Not recorded in the checkpoint.", ""]
    lines += [
        f"On {metrics.get('validation_data', 'the validation data')}; validation, not a test on unseen data.",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for label, key in METRIC_ROWS:
        if key is None:
            value = f"{val.get('n_real', '-')} / {val.get('n_fake', '-')}"
        elif key == "tpr":
            value = " / ".join(_number(val.get(f"tpr@fpr{k}")) for k in (1, 5, 10))
        else:
            value = _number(val.get(key))
            if key == "auc" and "auc_low" in val:
                value += f" (95% interval {_number(val['auc_low'])}-{_number(val['auc_high'])})"
        lines.append(f"| {label} | {value} |")
    lines.append("")
    if "auc_low" not in val:
        lines += ["No intervals were stored with these numbers.", ""]
    return lines


def _threshold_section(loaded: LoadedModel) -> list[str]:
    cal = loaded.meta.get("calibration") or {}
    lines = ["## Decision threshold", "", f"- Threshold on p_fake: **{loaded.threshold:.4f}**."]
    if cal.get("method") == "target-fpr":
        lines.append(
            f"- Chosen for a target false-positive rate of **{cal['target_fpr']:g}** on {cal.get('n_real', '?')} real "
            f"(and {cal.get('n_fake', '?')} fake) images of {cal.get('data', 'the calibration data')}: FPR reached "
            f"{_number(cal.get('fpr'))} (95% interval {_number(cal.get('fpr_low'))}-{_number(cal.get('fpr_high'))}), "
            f"fakes caught {_number(cal.get('tpr'))}."
        )
    elif cal:
        lines.append(
            f"- Chosen for the best accuracy on {cal.get('n_real', '?')} real and {cal.get('n_fake', '?')} fake images "
            f"of {cal.get('data', 'the calibration data')}; no false-positive rate was targeted."
        )
    else:
        lines.append("- Not calibrated: the default 0.5.")
    if cal.get("n_real") is not None and cal["n_real"] < 100:
        lines.append(
            f"- Only {cal['n_real']} real images set it: the false-positive rate on new data may be far from "
            "the target."
        )
    if cal:
        lines.append(
            f"- Temperature {loaded.temperature:.4g}, fitted on the same data (expected calibration error "
            f"{_number(cal.get('ece_before'))} -> {_number(cal.get('ece_after'))})."
        )
    else:
        lines.append(f"- Temperature {loaded.temperature:.4g} (1 is the raw output).")
    return [*lines, ""]


def _limits_section(loaded: LoadedModel) -> list[str]:
    lines = ["## Known limits", "", f"- {UNSEEN}"]
    for family in _family(loaded):
        lines += [f"- {text}" for text in LIMITS[family]]
    return [*lines, ""]


def model_card(loaded: LoadedModel, *, title: str | None = None) -> str:
    """The Markdown model card of a loaded checkpoint (see the module docstring)."""
    from ssp_detect import __version__

    heading = title or f"Model card: {loaded.name}"
    lines = [
        f"# {heading}",
        "",
        f"Generated by ssp-detect {__version__} from the checkpoint with sha256 `{loaded.sha256[:12]}`.",
        "",
    ]
    for section in (_model_section, _training_section, _metrics_section, _threshold_section, _limits_section):
        lines += section(loaded)
    return "\n".join(lines).rstrip() + "\n"


def write_model_card(loaded: LoadedModel, path: str | Path, *, title: str | None = None) -> Path:
    """Write :func:`model_card` to ``path`` (atomically) and return it."""
    from ssp_detect.models.export import write_atomically
    from ssp_detect.outputs import writing

    path = Path(path)
    with writing(path, "the model card"):
        write_atomically(path, model_card(loaded, title=title).encode())
    return path
