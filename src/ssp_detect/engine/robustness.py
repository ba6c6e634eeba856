"""Robustness sweeps: detection metrics of several checkpoints under increasing degradation.

Each setting degrades every image, real and fake alike, before patch selection (see
:class:`~ssp_detect.data.degradations.Degradation`), then scores it as ``ssp test`` does; the
pooled accuracy at each model's threshold, real and fake accuracy, AP and AUC are kept. The
settings that leave images unchanged (JPEG ``none``, blur 0, scale 1, WebP ``none``) are scored
once per model and shared.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from ssp_detect.constants import DEFAULT_MAX_PIXELS, SWEEP_TABLE
from ssp_detect.data.degradations import Degradation, Interpolation, JpegMethod
from ssp_detect.data.layouts import Sample
from ssp_detect.data.preprocess import PatchOptions
from ssp_detect.errors import UsageError
from ssp_detect.models.loading import LoadedModel
from ssp_detect.outputs import ensure_writable_folder, writing

if TYPE_CHECKING:
    from ssp_detect.engine.evaluate import Predictions
    from ssp_detect.engine.scoring import EvalRuntime

log = logging.getLogger(__name__)

ROBUSTNESS_METRICS = (
    "n_real",
    "n_fake",
    "acc",
    "real_acc",
    "fake_acc",
    "ap",
    "auc",
    "tpr@fpr1",
    "tpr@fpr5",
    "tpr@fpr10",
    "ece",
)
DIFFERENCE_FIELDS = ("auc_diff", "auc_diff_low", "auc_diff_high", "acc_diff", "acc_diff_low", "acc_diff_high")


@dataclass(frozen=True)
class Sweep:
    """One degradation swept over strengths.

    Attributes:
        name: Short name (file stem), e.g. ``jpeg``.
        title: Axis title, e.g. ``JPEG quality``.
        kind: The :class:`Degradation` kind.
        values: Strengths in sweep order; None means no degradation.
    """

    name: str
    title: str
    kind: str
    values: tuple[float | None, ...]

    def settings(
        self, *, jpeg_method: JpegMethod = "pil", interpolation: Interpolation = "bilinear"
    ) -> list[tuple[str, Degradation]]:
        """(label, degradation) per strength, e.g. ``("75", Degradation("jpeg", 75))``."""
        return [
            ("none", Degradation())
            if v is None
            else (f"{v:g}", Degradation(self.kind, float(v), jpeg_method=jpeg_method, interpolation=interpolation))  # type: ignore[arg-type]
            for v in self.values
        ]


SWEEPS: dict[str, Sweep] = {row[0]: Sweep(*row) for row in SWEEP_TABLE}


def default_names(weights: Sequence[str | Path], models: Sequence[LoadedModel]) -> list[str]:
    """One name per checkpoint: its model name, or ``<model> (<file>)`` where two share a model."""
    names = [m.name for m in models]
    return [
        f"{n} ({Path(w).parent.name}/{Path(w).name})" if names.count(n) > 1 else n
        for n, w in zip(names, weights, strict=False)
    ]


def _difference(
    reference: tuple[Predictions, float], other: tuple[Predictions, float], samples: Sequence[Sample], bootstrap: int
) -> dict[str, float]:
    """``other`` minus ``reference`` on the images both scored (see
    :func:`~ssp_detect.engine.metrics.paired_difference`)."""
    from ssp_detect.engine.metrics import (
        paired_difference,  # here, as evaluate_model below: scikit-learn loads only when needed
    )

    (a, threshold_a), (b, threshold_b) = other, reference
    common, ia, ib = np.intersect1d(a.index, b.index, return_indices=True)
    groups = np.array([samples[i].group for i in common], dtype=object)
    return paired_difference(
        a.label[ia], a.p_fake[ia], b.p_fake[ib], threshold_a, threshold_b, groups, resamples=bootstrap
    )


def run_robustness(
    models: Sequence[tuple[str, LoadedModel]],
    samples: Sequence[Sample],
    *,
    sweeps: Sequence[str] = tuple(SWEEPS),
    jpeg_method: JpegMethod = "pil",
    interpolation: Interpolation = "bilinear",
    device: torch.device,
    precision: str,
    batch_size: int = 64,
    workers: int = 0,
    patch: PatchOptions = PatchOptions(),
    progress: bool = True,
    bootstrap: int = 0,
    allow_truncated: bool = False,
    backend: str = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[dict[str, Any]]:
    """Score every model under every setting of the chosen sweeps.

    Args:
        models: (name, loaded model) pairs, in table order.
        samples: Labelled images (real and fake).
        sweeps: Names from :data:`SWEEPS`.
        jpeg_method: JPEG library of the JPEG sweep.
        interpolation: PIL filter of the scale sweep.
        device, precision, batch_size, workers, patch, progress, allow_truncated, backend, max_pixels: As for
            :func:`~ssp_detect.engine.evaluate.evaluate_model`.
        bootstrap: With two models or more and ``bootstrap`` > 0, every model after the first is
            compared with the first on the same images at each setting: the differences in AUC and
            accuracy with paired bootstrap intervals of that many resamples (images made from one
            source photo drawn together; :func:`~ssp_detect.engine.metrics.paired_difference`).

    Returns:
        One row per (model, sweep, setting), in that order: ``model``, ``degradation`` (sweep
        name), ``setting`` (label), ``value`` (strength or None), ``n_unreadable`` and
        :data:`ROBUSTNESS_METRICS` of the pooled images; with the comparison, also ``vs`` (the
        first model) and :data:`DIFFERENCE_FIELDS` (NaN in the first model's rows).
    """
    from ssp_detect.engine.evaluate import evaluate_model  # here, so that `ssp --help` need not import scikit-learn

    unknown = sorted(set(sweeps) - set(SWEEPS))
    if unknown:
        raise UsageError(f"Unknown sweep(s) {', '.join(unknown)}; choose from {', '.join(SWEEPS)}.")
    plan = [(name, SWEEPS[name].settings(jpeg_method=jpeg_method, interpolation=interpolation)) for name in sweeps]
    compare = bootstrap > 0 and len(models) > 1
    rows: list[dict[str, Any]] = []
    reference: dict[Degradation, tuple[Predictions, float]] = {}  # the first model's scores, per setting
    bar = tqdm(
        total=len(models) * sum(len(s) for _, s in plan), desc="robustness", disable=not progress, unit="setting"
    )
    for position, (model_name, loaded) in enumerate(models):
        scored: dict[Degradation, dict[str, Any]] = {}
        for sweep, settings in plan:
            for label, degradation in settings:
                key = Degradation() if degradation.is_identity else degradation
                if key not in scored:
                    bar.set_postfix_str(f"{model_name}: {sweep} {label}")
                    summary, preds = evaluate_model(
                        loaded,
                        samples,
                        device=device,
                        precision=precision,
                        batch_size=batch_size,
                        workers=workers,
                        patch=patch,
                        progress=progress,
                        desc=f"{sweep} {label}",
                        degradation=key,
                        allow_truncated=allow_truncated,
                        backend=backend,
                        max_pixels=max_pixels,
                    )
                    scored[key] = summary["pooled"] | {"n_unreadable": summary["n_unreadable"]}
                    if compare:
                        if position == 0:
                            reference[key] = (preds, summary["threshold"])
                            scored[key] |= dict.fromkeys(DIFFERENCE_FIELDS, math.nan)
                        else:
                            scored[key] |= _difference(
                                reference[key], (preds, summary["threshold"]), samples, bootstrap
                            )
                    log.info(
                        "%s, %s %s: acc %.3f AUC %.3f", model_name, sweep, label, scored[key]["acc"], scored[key]["auc"]
                    )
                pooled = scored[key]
                rows.append(
                    {
                        "model": model_name,
                        "degradation": sweep,
                        "setting": label,
                        "value": None if label == "none" else degradation.value,
                        "n_unreadable": pooled["n_unreadable"],
                        **{k: pooled[k] for k in ROBUSTNESS_METRICS},
                        **({"vs": models[0][0]} | {k: pooled[k] for k in DIFFERENCE_FIELDS} if compare else {}),
                    }
                )
                bar.update(1)
    bar.close()
    return rows


def robustness_report(
    weights: Sequence[str | Path],
    samples: Sequence[Sample],
    runtime: EvalRuntime,
    *,
    out: str | Path,
    names: Sequence[str] | None = None,
    model_name: str | None = None,
    sweeps: Sequence[str] = tuple(SWEEPS),
    jpeg_method: JpegMethod = "pil",
    interpolation: Interpolation = "bilinear",
    bootstrap: int = 0,
    data: str = "",
) -> list[Path]:
    """Load the checkpoints, run :func:`run_robustness` and write its tables and plots into ``out``
    (:func:`~ssp_detect.engine.report.write_robustness`); returns the files, ``robustness.md`` last.

    Args:
        weights: Checkpoints, in table order; the first is the reference of the comparisons.
        samples: Labelled images.
        runtime: How to run the evaluations (its ``decode`` is not used: degradations need the
            images decoded in the workers).
        out: Output folder.
        names: One name per checkpoint (default: :func:`default_names`).
        model_name: Architecture of foreign state dicts (default: inferred).
        sweeps, jpeg_method, interpolation, bootstrap: As for :func:`run_robustness`.
        data: The data, in words, for the report.

    Raises:
        ~ssp_detect.outputs.OutputError: ``out`` cannot be written (checked before any work).
    """
    from ssp_detect.engine.report import write_robustness
    from ssp_detect.engine.scoring import check_names
    from ssp_detect.models.loading import load_model

    check_names(names, weights)
    ensure_writable_folder(out, "--out")
    models = [load_model(w, model_name=model_name) for w in weights]
    names = list(names) if names else default_names(weights, models)
    rows = run_robustness(
        list(zip(names, models, strict=False)),
        samples,
        sweeps=sweeps,
        jpeg_method=jpeg_method,
        interpolation=interpolation,
        bootstrap=bootstrap,
        **runtime.keywords(),
    )
    notes = [f"{n}: {w} (threshold {m.threshold:g})" for n, w, m in zip(names, weights, models, strict=False)]
    notes.append(
        f"data: {data}; simple patch: {runtime.describe_patches(names, models)}; "
        f"JPEG by {jpeg_method}, rescaling by PIL {interpolation}; "
        "degradations applied to the whole image before patch selection"
    )
    with writing(out, "the results"):
        return write_robustness(rows, {k: SWEEPS[k].title for k in sweeps}, out, notes=notes)
