"""Writing results as Markdown, CSV and JSON tables, and the cross-generator heatmap."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

COLUMNS = ("n_real", "n_fake", "real_acc", "fake_acc", "acc", "ap", "auc", "eer", "best_acc", "best_threshold")
_PERCENT = {"real_acc", "fake_acc", "acc", "ap", "auc", "eer", "best_acc"}
_HEADERS = {
    "n_real": "real", "n_fake": "fake", "real_acc": "real acc %", "fake_acc": "fake acc %", "acc": "acc@t %",
    "ap": "AP %", "auc": "AUC %", "eer": "EER %", "best_acc": "best acc %", "best_threshold": "best t",
}
_INTERVAL = ("auc_low", "auc_high")
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
    """The table's columns: the AUC interval's bounds only when the summary has them."""
    return COLUMNS + _INTERVAL if "auc_interval" in summary else COLUMNS


def _interval_cell(m: dict[str, float]) -> str:
    low, high = m.get("auc_low", math.nan), m.get("auc_high", math.nan)
    return "-" if math.isnan(low) else f"{100 * low:.1f}-{100 * high:.1f}"


def markdown_table(summary: dict[str, Any]) -> str:
    """The per-subset table as Markdown (percentages with one decimal), with a column for the AUC's
    95% interval when the summary has one."""
    interval = "auc_interval" in summary
    head = "| subset | " + " | ".join(_HEADERS[c] for c in COLUMNS) + (" | AUC 95% interval |" if interval else " |")
    sep = "|---|" + "---:|" * (len(COLUMNS) + interval)
    lines = [head, sep]
    for name, m in summary_rows(summary):
        cells = [_fmt(c, m.get(c, math.nan)) for c in COLUMNS] + ([_interval_cell(m)] if interval else [])
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


def write_summary(summary: dict[str, Any], out_dir: str | Path, *, stem: str = "results", title: str = "", notes: Sequence[str] = ()) -> list[Path]:
    """Write ``<stem>.md``, ``<stem>.csv`` and ``<stem>.json`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = [f"# {title}" if title else "# Results", "", markdown_table(summary), ""]
    md.append(f"Threshold t = {summary['threshold']:.3f}; {summary['n_images']} images, {summary['n_unreadable']} unreadable (skipped).")
    if "auc_interval" in summary:
        iv = summary["auc_interval"]
        md.append(f"AUC 95% interval: percentile bootstrap, {iv['resamples']} resamples of the {iv['resampled']} (each drawn with all its images).")
    md += [""] + [f"- {n}" for n in notes]
    if summary["unreadable"]:
        md += ["", "Unreadable images (skipped, not replaced):", ""] + [f"- `{u['path']}`: {u['error']}" for u in summary["unreadable"]]
    (out / f"{stem}.md").write_text("\n".join(md) + "\n")
    with (out / f"{stem}.csv").open("w", newline="") as f:
        w = csv.writer(f)
        columns = _columns(summary)
        w.writerow(["subset", *columns])
        for name, m in summary_rows(summary):
            w.writerow([name, *("" if (v := to_jsonable(m.get(c, math.nan))) is None else v for c in columns)])
    write_json(out / f"{stem}.json", summary)
    return [out / f"{stem}.{ext}" for ext in ("md", "csv", "json")]


def write_cross_eval(matrix: np.ndarray, train_names: Sequence[str], test_names: Sequence[str], out_dir: str | Path, *, metric: str = "acc", stem: str = "cross_eval") -> list[Path]:
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
    for name, row, mean in zip(train_names, matrix, means):
        lines.append(f"| {name} | " + " | ".join(_fmt(metric, v) for v in row) + f" | {_fmt(metric, mean)} |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    with (out / f"{stem}.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trained_on", *test_names, "mean"])
        for name, row, mean in zip(train_names, matrix, means):
            w.writerow([name, *(f"{v:.6f}" for v in row), f"{mean:.6f}"])
    write_json(out / f"{stem}.json", {"metric": metric, "train": list(train_names), "test": list(test_names), "matrix": matrix.tolist(), "mean": means.tolist()})
    full = np.concatenate([matrix, means[:, None]], axis=1) * 100
    fig, ax = plt.subplots(figsize=(1.1 * (len(test_names) + 1) + 2.5, 0.6 * len(train_names) + 2))
    im = ax.imshow(full, cmap="viridis", vmin=np.nanmin([50.0, np.nanmin(full)]), vmax=100.0, aspect="auto")
    ax.set_xticks(range(len(test_names) + 1), [*test_names, "mean"], rotation=35, ha="right")
    ax.set_yticks(range(len(train_names)), list(train_names))
    ax.set_xlabel("tested on")
    ax.set_ylabel("trained on")
    for i in range(full.shape[0]):
        for j in range(full.shape[1]):
            ax.text(j, i, "-" if np.isnan(full[i, j]) else f"{full[i, j]:.1f}", ha="center", va="center", color="white" if full[i, j] < 80 else "black", fontsize=9)
    fig.colorbar(im, ax=ax, label=f"{metric} %")
    fig.tight_layout()
    fig.savefig(out / f"{stem}.png", dpi=120)
    plt.close(fig)
    return [out / f"{stem}.{e}" for e in ("md", "csv", "json", "png")]


_ROBUSTNESS_COLUMNS = ("acc", "real_acc", "fake_acc", "ap", "auc")


def _robustness_table(rows: Sequence[dict[str, Any]], title: str) -> str:
    """One degradation as Markdown: a row per setting, each metric with the models side by side."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    by_key = {(r["model"], r["setting"]): r for r in rows}
    head = f"| {title} | " + " | ".join(f"{_HEADERS[c]} {m}" for c in _ROBUSTNESS_COLUMNS for m in models) + " |"
    lines = [head, "|---|" + "---:|" * (len(models) * len(_ROBUSTNESS_COLUMNS))]
    for s in settings:
        lines.append(f"| {s} | " + " | ".join(_fmt(c, by_key[(m, s)].get(c, math.nan)) for c in _ROBUSTNESS_COLUMNS for m in models) + " |")
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

    head = f"| {title} | " + " | ".join(f"{name} {m} - {reference}" for name, metric in (("acc@t", "acc"), ("AUC", "auc")) for m in others) + " |"
    lines = [head, "|---|" + "---:|" * (2 * len(others))]
    for s in settings:
        lines.append(f"| {s} | " + " | ".join(cell(by_key[(m, s)], metric) for metric in ("acc", "auc") for m in others) + " |")
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
    for ax, metric in zip(axes, ("acc", "auc")):
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


def write_robustness(rows: Sequence[dict[str, Any]], titles: dict[str, str], out_dir: str | Path, *, notes: Sequence[str] = ()) -> list[Path]:
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
            table += (f"\n\nDifferences against {part[0]['vs']} on the same images, in points, with paired 95% bootstrap intervals:\n\n"
                      + _difference_table(part, titles.get(name, name)))
        (out / f"{name}.md").write_text(f"# {titles.get(name, name)}\n\n{table}\n" + "".join(f"\n- {n}" for n in notes) + "\n")
        write_rows(name, part)
        _robustness_plot(part, titles.get(name, name), out / f"{name}.png")
        written.extend([out / f"{name}.md", out / f"{name}.png"])
        sections += [f"## {titles.get(name, name)}", "", table, ""]
    sections += [f"- {n}" for n in notes]
    (out / "robustness.md").write_text("\n".join(sections) + "\n")
    write_rows("robustness", rows)
    written.append(out / "robustness.md")
    return written
