"""Writing results as Markdown, CSV and JSON tables, the reliability diagram and the cross-generator
heatmap."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

COLUMNS = ("n_real", "n_fake", "real_acc", "fake_acc", "acc", "ap", "auc", "eer", "best_acc", "best_threshold")
TRUST_COLUMNS = ("tpr@fpr1", "tpr@fpr5", "tpr@fpr10", "ece")
# The Markdown table leads with what a user meets at the threshold: reals passed, fakes caught.
MARKDOWN_COLUMNS = (
    "real_acc",
    "fake_acc",
    "auc",
    "tpr@fpr5",
    "acc",
    "ap",
    "eer",
    "tpr@fpr1",
    "tpr@fpr10",
    "ece",
    "best_acc",
    "best_threshold",
    "n_real",
    "n_fake",
)
# With verdicts that may be "uncertain": the share decided and the accuracies on the decided images.
SELECTIVE_COLUMNS = ("coverage", "decided_real_acc", "decided_fake_acc", "decided_acc", "n_uncertain")
_PERCENT = {"real_acc", "fake_acc", "acc", "ap", "auc", "eer", "best_acc", *TRUST_COLUMNS, *SELECTIVE_COLUMNS[:-1]}
_HEADERS = {
    "n_real": "real",
    "n_fake": "fake",
    "real_acc": "real acc %",
    "fake_acc": "fake acc %",
    "acc": "acc@t %",
    "ap": "AP %",
    "auc": "AUC %",
    "eer": "EER %",
    "best_acc": "best acc %",
    "best_threshold": "best t",
    "tpr@fpr1": "TPR@FPR1 %",
    "tpr@fpr5": "TPR@FPR5 %",
    "tpr@fpr10": "TPR@FPR10 %",
    "ece": "ECE %",
    "coverage": "decided %",
    "decided_real_acc": "real acc decided %",
    "decided_fake_acc": "fake acc decided %",
    "decided_acc": "acc decided %",
    "n_uncertain": "uncertain",
}
_INTERVAL = ("auc_low", "auc_high")
_LEGEND = (
    "real acc: share of real images called real at t (100 minus the false-alarm rate); fake acc: share of fakes "
    "caught at t; TPR@FPRx: share of fakes caught at the threshold, chosen on these same images, that calls at "
    "most x% of the reals fake (a ranking measure like the AUC, not a promise at t); ECE: expected calibration "
    "error of p_fake in 15 bins (0 when p_fake matches the observed share of fakes). decided: share of images "
    "given a real or fake verdict rather than uncertain (no texture, upscaled, or p_fake near t); the decided "
    "columns are the accuracies on those images only."
)
MEAN_ROW, POOLED_ROW = "mean over subsets", "pooled (all images)"


def _fmt(key: str, value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key.startswith("n_"):
        return str(int(value))
    if key in _PERCENT:
        return f"{100 * value:.1f}"
    return f"{value:.3f}"


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, dict[str, float]]]:
    """(row name, metrics) for every subset, then the mean over subsets, then pooled."""
    rows = list(summary["subsets"].items())
    if len(rows) > 1:
        rows.append((MEAN_ROW, summary["mean_over_subsets"]))
    rows.append((POOLED_ROW, summary["pooled"]))
    return rows


def _columns(summary: dict[str, Any]) -> tuple[str, ...]:
    """The CSV's columns: the first ones in their historical order, then the operating-point and
    calibration metrics, then the AUC interval's bounds only when the summary has them."""
    return COLUMNS + TRUST_COLUMNS + _selective(summary) + (_INTERVAL if "auc_interval" in summary else ())


def _selective(summary: dict[str, Any]) -> tuple[str, ...]:
    """The coverage columns when the summary counted uncertain verdicts."""
    return SELECTIVE_COLUMNS if "coverage" in summary["pooled"] else ()


def _interval_cell(m: dict[str, float]) -> str:
    low, high = m.get("auc_low", math.nan), m.get("auc_high", math.nan)
    return "-" if math.isnan(low) else f"{100 * low:.1f}-{100 * high:.1f}"


def markdown_table(summary: dict[str, Any]) -> str:
    """The per-subset table as Markdown (percentages with one decimal) in :data:`MARKDOWN_COLUMNS`
    order, with a column for the AUC's 95% interval after the AUC when the summary has one; a metric
    the summary lacks shows as ``-``."""
    interval = "auc_interval" in summary
    columns = MARKDOWN_COLUMNS[:2] + _selective(summary) + MARKDOWN_COLUMNS[2:]
    headers = [_HEADERS[c] for c in columns]
    if interval:
        headers.insert(columns.index("auc") + 1, "AUC 95% interval")
    lines = ["| subset | " + " | ".join(headers) + " |", "|---|" + "---:|" * len(headers)]
    for name, m in summary_rows(summary):
        cells = [_fmt(c, m.get(c, math.nan)) for c in columns]
        if interval:
            cells.insert(columns.index("auc") + 1, _interval_cell(m))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def write_json(path: Path, obj: Any) -> None:
    """JSON with NaN written as null."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(obj), indent=2) + "\n")


def reliability_path(out_dir: str | Path, stem: str = "results") -> Path:
    """Where :func:`write_summary` puts the reliability diagram: ``reliability.png`` beside
    ``results.md``, ``<stem>_reliability.png`` for another stem (several summaries in one folder)."""
    return Path(out_dir) / ("reliability.png" if stem == "results" else f"{stem}_reliability.png")


def plot_reliability(
    labels: np.ndarray, p_fake: np.ndarray, path: str | Path, *, title: str = "Reliability of p_fake", bins: int = 15
) -> Path:
    """Write a reliability diagram as a PNG: the share of fakes against p_fake in ``bins``
    equal-width bins (the diagonal is perfect calibration), the image count of each bin below, and
    the expected calibration error in the title.

    Drawn on a bare matplotlib ``Figure`` (the Agg renderer), so no pyplot backend is chosen or
    changed. See :func:`~ssp_detect.engine.metrics.reliability_curve` for the bins.

    Returns:
        ``path``.
    """
    from matplotlib.figure import Figure

    # Imported here, so that importing this module does not load scikit-learn.
    from ssp_detect.engine.metrics import expected_calibration_error, reliability_curve

    curve = reliability_curve(labels, p_fake, bins)
    ece = expected_calibration_error(labels, p_fake, bins)
    full = curve.counts > 0
    fig = Figure(figsize=(5, 6))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="calibrated")
    top.bar(
        curve.centers[full],
        curve.observed[full],
        width=1 / bins,
        color="tab:blue",
        alpha=0.35,
        edgecolor="tab:blue",
        label="share of fakes in the bin",
    )
    top.plot(
        curve.mean_predicted[full], curve.observed[full], marker="o", color="tab:blue", label="at the bin's mean p_fake"
    )
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("share of fakes")
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    ece_text = "-" if math.isnan(ece) else f"{100 * ece:.1f}%"
    top.set_title(f"{title}\nECE {ece_text}, {int(curve.counts.sum())} images, {bins} bins")
    bottom.bar(curve.centers, curve.counts, width=1 / bins, color="grey", edgecolor="black", linewidth=0.5)
    bottom.set_xlabel("p_fake")
    bottom.set_ylabel("images")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def write_summary(
    summary: dict[str, Any],
    out_dir: str | Path,
    *,
    stem: str = "results",
    title: str = "",
    notes: Sequence[str] = (),
    reliability: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[Path]:
    """Write ``<stem>.md``, ``<stem>.csv`` and ``<stem>.json`` into ``out_dir``.

    Args:
        reliability: (labels, p_fake) of the images summarised: also write their reliability
            diagram (:func:`plot_reliability`) at :func:`reliability_path` and name it in the
            Markdown.

    Returns:
        The paths written: Markdown, CSV, JSON, then the diagram when drawn.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = [f"# {title}" if title else "# Results", "", markdown_table(summary), ""]
    md.append(
        f"Threshold t = {summary['threshold']:.3f}; {summary['n_images']} images, {summary['n_unreadable']} "
        "unreadable (skipped)."
    )
    if "auc_interval" in summary:
        iv = summary["auc_interval"]
        md.append(
            f"AUC 95% interval: percentile bootstrap, {iv['resamples']} resamples of the {iv['resampled']} (each "
            "drawn with all its images)."
        )
    md += ["", _LEGEND]
    written = []
    if reliability is not None:
        diagram = plot_reliability(*reliability, reliability_path(out, stem), title=title or "Reliability of p_fake")
        md += ["", f"Reliability diagram (share of fakes against p_fake, all images summarised): `{diagram.name}`."]
        written.append(diagram)
    md += [""] + [f"- {n}" for n in notes]
    if summary["unreadable"]:
        md += ["", "Unreadable images (skipped, not replaced):", ""] + [
            f"- `{u['path']}`: {u['error']}" for u in summary["unreadable"]
        ]
    (out / f"{stem}.md").write_text("\n".join(md) + "\n")
    with (out / f"{stem}.csv").open("w", newline="") as f:
        w = csv.writer(f)
        columns = _columns(summary)
        w.writerow(["subset", *columns])
        for name, m in summary_rows(summary):
            w.writerow([name, *("" if (v := to_jsonable(m.get(c, math.nan))) is None else v for c in columns)])
    write_json(out / f"{stem}.json", summary)
    return [out / f"{stem}.{ext}" for ext in ("md", "csv", "json")] + written


def write_cross_eval(
    matrix: np.ndarray,
    train_names: Sequence[str],
    test_names: Sequence[str],
    out_dir: str | Path,
    *,
    metric: str = "acc",
    stem: str = "cross_eval",
) -> list[Path]:
    """The train-subset x test-subset matrix (rows: checkpoints) as Markdown, CSV, JSON and a
    heatmap PNG, with a mean column as in the paper."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    means = np.nanmean(matrix, axis=1) if matrix.size else np.zeros(0)
    head = f"| trained on \\ tested on ({metric} %) | " + " | ".join(test_names) + " | mean |"
    lines = [head, "|---|" + "---:|" * (len(test_names) + 1)]
    for name, row, mean in zip(train_names, matrix, means, strict=False):
        lines.append(f"| {name} | " + " | ".join(_fmt(metric, v) for v in row) + f" | {_fmt(metric, mean)} |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    with (out / f"{stem}.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trained_on", *test_names, "mean"])
        for name, row, mean in zip(train_names, matrix, means, strict=False):
            w.writerow([name, *(f"{v:.6f}" for v in row), f"{mean:.6f}"])
    write_json(
        out / f"{stem}.json",
        {
            "metric": metric,
            "train": list(train_names),
            "test": list(test_names),
            "matrix": matrix.tolist(),
            "mean": means.tolist(),
        },
    )
    full = np.concatenate([matrix, means[:, None]], axis=1) * 100
    fig, ax = plt.subplots(figsize=(1.1 * (len(test_names) + 1) + 2.5, 0.6 * len(train_names) + 2))
    im = ax.imshow(full, cmap="viridis", vmin=np.nanmin([50.0, np.nanmin(full)]), vmax=100.0, aspect="auto")
    ax.set_xticks(range(len(test_names) + 1), [*test_names, "mean"], rotation=35, ha="right")
    ax.set_yticks(range(len(train_names)), list(train_names))
    ax.set_xlabel("tested on")
    ax.set_ylabel("trained on")
    for i in range(full.shape[0]):
        for j in range(full.shape[1]):
            ax.text(
                j,
                i,
                "-" if np.isnan(full[i, j]) else f"{full[i, j]:.1f}",
                ha="center",
                va="center",
                color="white" if full[i, j] < 80 else "black",
                fontsize=9,
            )
    fig.colorbar(im, ax=ax, label=f"{metric} %")
    fig.tight_layout()
    fig.savefig(out / f"{stem}.png", dpi=120)
    plt.close(fig)
    return [out / f"{stem}.{e}" for e in ("md", "csv", "json", "png")]


_ROBUSTNESS_COLUMNS = ("acc", "real_acc", "fake_acc", "ap", "auc", "tpr@fpr5")


def _robustness_table(rows: Sequence[dict[str, Any]], title: str) -> str:
    """One degradation as Markdown: a row per setting, each metric with the models side by side."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    by_key = {(r["model"], r["setting"]): r for r in rows}
    head = f"| {title} | " + " | ".join(f"{_HEADERS[c]} {m}" for c in _ROBUSTNESS_COLUMNS for m in models) + " |"
    lines = [head, "|---|" + "---:|" * (len(models) * len(_ROBUSTNESS_COLUMNS))]
    for s in settings:
        lines.append(
            f"| {s} | "
            + " | ".join(_fmt(c, by_key[(m, s)].get(c, math.nan)) for c in _ROBUSTNESS_COLUMNS for m in models)
            + " |"
        )
    return "\n".join(lines)


def _difference_table(rows: Sequence[dict[str, Any]], title: str) -> str:
    """Each later model minus the first, per setting: accuracy and AUC differences in points with
    their paired 95% intervals."""
    reference = rows[0]["vs"]
    others = [m for m in dict.fromkeys(r["model"] for r in rows) if m != reference]
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    by_key = {(r["model"], r["setting"]): r for r in rows}

    def cell(r: dict[str, Any], metric: str) -> str:
        d, low, high = (100 * r[f"{metric}_diff{part}"] for part in ("", "_low", "_high"))
        return "-" if math.isnan(d) else f"{d:+.1f} [{low:+.1f}, {high:+.1f}]"

    head = (
        f"| {title} | "
        + " | ".join(f"{name} {m} - {reference}" for name, metric in (("acc@t", "acc"), ("AUC", "auc")) for m in others)
        + " |"
    )
    lines = [head, "|---|" + "---:|" * (2 * len(others))]
    for s in settings:
        lines.append(
            f"| {s} | " + " | ".join(cell(by_key[(m, s)], metric) for metric in ("acc", "auc") for m in others) + " |"
        )
    return "\n".join(lines)


def _robustness_plot(rows: Sequence[dict[str, Any]], title: str, path: Path) -> None:
    """Accuracy and AUC against the setting, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    by_key = {(r["model"], r["setting"]): r for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for ax, metric in zip(axes, ("acc", "auc"), strict=False):
        for m in models:
            values = [100 * by_key[(m, s)][metric] for s in settings]
            ax.plot(range(len(settings)), values, marker="o", label=m)
        ax.set_xticks(range(len(settings)), settings)
        ax.set_xlabel(title)
        ax.set_ylabel(_HEADERS[metric])
        ax.set_ylim(0, 100)
        ax.axhline(50, color="grey", linewidth=0.8, linestyle=":")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_robustness(
    rows: Sequence[dict[str, Any]], titles: dict[str, str], out_dir: str | Path, *, notes: Sequence[str] = ()
) -> list[Path]:
    """Write the robustness sweep results.

    Per degradation ``d``: ``d.md`` (settings x metrics, models side by side), ``d.csv`` and
    ``d.json`` (one row per model and setting) and ``d.png`` (accuracy and AUC against the
    setting, a line per model); and ``robustness.md``, ``robustness.csv``, ``robustness.json``
    with every degradation.

    Args:
        rows: :func:`~ssp_detect.engine.robustness.run_robustness`'s rows.
        titles: Degradation name -> axis title (e.g. ``jpeg`` -> ``JPEG quality``).
        out_dir: Output folder.
        notes: Lines added under the Markdown tables.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fields = list(rows[0]) if rows else []
    written: list[Path] = []

    def write_rows(stem: str, part: Sequence[dict[str, Any]]) -> None:
        with (out / f"{stem}.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows({k: "" if v is None else v for k, v in to_jsonable(dict(r)).items()} for r in part)
        write_json(out / f"{stem}.json", {"rows": list(part), "notes": list(notes)})
        written.extend([out / f"{stem}.csv", out / f"{stem}.json"])

    sections = ["# Robustness", ""]
    for name in dict.fromkeys(r["degradation"] for r in rows):
        part = [r for r in rows if r["degradation"] == name]
        table = _robustness_table(part, titles.get(name, name))
        if "vs" in part[0]:
            table += (
                f"\n\nDifferences against {part[0]['vs']} on the same images, in points, with paired 95% "
                "bootstrap intervals:\n\n" + _difference_table(part, titles.get(name, name))
            )
        (out / f"{name}.md").write_text(
            f"# {titles.get(name, name)}\n\n{table}\n" + "".join(f"\n- {n}" for n in notes) + "\n"
        )
        write_rows(name, part)
        _robustness_plot(part, titles.get(name, name), out / f"{name}.png")
        written.extend([out / f"{name}.md", out / f"{name}.png"])
        sections += [f"## {titles.get(name, name)}", "", table, ""]
    sections += [f"- {n}" for n in notes]
    (out / "robustness.md").write_text("\n".join(sections) + "\n")
    write_rows("robustness", rows)
    written.append(out / "robustness.md")
    return written
