"""Cross-generator evaluation, as in the paper: every checkpoint tested on every subset.

Rows are checkpoints, named by the subsets they were trained on (from the checkpoint's training
config, else the file name); columns are the test subsets, sorted. Each checkpoint's full summary
is written beside the matrix, under ``per_checkpoint/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ssp_detect.constants import CROSS_EVAL_METRICS
from ssp_detect.data.layouts import Sample
from ssp_detect.errors import UsageError
from ssp_detect.models.loading import LoadedModel, load_model
from ssp_detect.outputs import ensure_writable_folder, writing

if TYPE_CHECKING:  # scoring imports scikit-learn, which `ssp --help` need not load for the metric names
    from ssp_detect.engine.scoring import EvalRuntime


@dataclass(frozen=True)
class CrossEval:
    """A cross-evaluation matrix: ``matrix[i, j]`` is ``metric`` of checkpoint ``names[i]`` on test
    subset ``tests[j]`` (NaN where the subset has no readable images)."""

    matrix: np.ndarray
    names: list[str]
    tests: list[str]
    metric: str


def row_name(weights: str | Path, loaded: LoadedModel) -> str:
    """A checkpoint's row name: the subsets it was trained on, joined by ``+``, else the file stem."""
    trained_on = (loaded.meta.get("train_config") or {}).get("subsets")
    return "+".join(trained_on) if trained_on else Path(weights).stem


def run_cross_eval(
    weights: Sequence[str | Path],
    samples: Sequence[Sample],
    runtime: EvalRuntime,
    *,
    out: str | Path,
    names: Sequence[str] | None = None,
    metric: str = "acc",
    model_name: str | None = None,
) -> CrossEval:
    """Test every checkpoint on every subset of ``samples``.

    Writes ``<out>/per_checkpoint/<NN>_<name>.md/.csv/.json`` (each checkpoint's summary) and
    returns the matrix; :func:`~ssp_detect.engine.report.write_cross_eval` writes it.

    Args:
        weights: Checkpoints, in row order (loaded one at a time).
        samples: Labelled images of every test subset.
        runtime: How to run the evaluations.
        out: Output folder.
        names: Row names, one per checkpoint (default: :func:`row_name`).
        metric: One of :data:`CROSS_EVAL_METRICS`.
        model_name: Architecture of foreign state dicts (default: inferred).

    Raises:
        UsageError: a names count that is not the checkpoint count, or an unknown metric.
        ~ssp_detect.outputs.OutputError: ``out`` cannot be written (checked before any work).
    """
    from ssp_detect.engine.report import write_summary
    from ssp_detect.engine.scoring import check_names

    check_names(names, weights)
    if metric not in CROSS_EVAL_METRICS:
        raise UsageError(f"Unknown cross-evaluation metric {metric!r}; choose one of {', '.join(CROSS_EVAL_METRICS)}.")
    ensure_writable_folder(out, "--out")
    tests = sorted({s.subset for s in samples})
    rows, row_names = [], []
    for i, w in enumerate(weights):
        loaded = load_model(w, model_name=model_name)
        summary, _ = runtime.evaluate(loaded, samples, desc=Path(w).stem)
        row_names.append(names[i] if names else row_name(w, loaded))
        rows.append([summary["subsets"].get(t, {}).get(metric, np.nan) for t in tests])
        with writing(out, "the results"):
            write_summary(
                summary, Path(out) / "per_checkpoint", stem=f"{i:02d}_{row_names[-1]}", title=f"{w} on all subsets"
            )
    return CrossEval(np.array(rows, dtype=float), row_names, tests, metric)
