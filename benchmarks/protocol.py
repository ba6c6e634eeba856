"""A validation protocol that predicts what users meet: photos and generators never trained on.

    python -m benchmarks.protocol --data data/demo --train-subsets esrgan_x4plus \\
        --set model=ssp-strata epochs=12 batch_size=32 lr=0.1 repeats=8 select_metric=auc val_fraction=0.2

On a benchmark built by ``ssp data build-demo`` (its ``manifest.json`` records each image's photo
package, subset and split), it trains the given recipe once per fold and reports:

(a) leave-one-source-out: for each photo package, train on the photos of the other packages and
    test on the held-out package's photos and the fakes made from them: AUC as stored and with the
    reals' JPEG histories on the fakes (``val_matched``), and (c) the share of those unseen-source
    reals called fake at the shipped threshold (``uncertain`` verdicts are not "fake");
(b) leave-one-family-out: train on one generator family, test on every subset, as a matrix like the
    paper's cross-generator table;
(d) format sensitivity: mean and 95th percentile of |p_fake(pixels) - p_fake(the same pixels as JPEG
    q95)| over the test images, reals and fakes apart.

Folds are trees of links into the benchmark with a filtered manifest, so format matching reads the
same JPEG histories as a plain run. Writes ``protocol.md`` and ``protocol.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ssp_detect.config import build_config
from ssp_detect.data.degradations import jpeg_compress
from ssp_detect.data.layouts import load_samples
from ssp_detect.detector import Detector
from ssp_detect.engine.metrics import binary_metrics
from ssp_detect.engine.train import train

TEST_SPLITS = ("train", "val")


def read_manifest(root: Path) -> list[dict[str, Any]]:
    """The benchmark's image records, each with its photo ``package``."""
    records = json.loads((root / "manifest.json").read_text())["images"]
    for r in records:
        r["package"] = (r.get("source") or {}).get("package", "unknown")
    return records


def make_fold(root: Path, records: Sequence[dict[str, Any]], fold: Path) -> Path:
    """A GenImage-layout tree of links to ``records`` under ``fold``, with their manifest."""
    for r in records:
        link = fold / r["path"]
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            os.symlink((root / r["path"]).resolve(), link)
    (fold / "manifest.json").write_text(json.dumps({"images": list(records)}))
    return fold


def train_fold(fold: Path, subsets: Sequence[str], overrides: dict[str, Any], out: Path) -> Path:
    """Train the recipe on the fold's ``train`` split of ``subsets``; returns best.pt."""
    cfg = build_config(
        None,
        {
            **overrides,
            "data": str(fold),
            "layout": "genimage",
            "subsets": list(subsets),
            "out": str(out),
            "progress": False,
        },
    )
    return Path(train(cfg)["best"])


def scores(detector: Detector, paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """p_fake of each file, and whether its verdict is ``fake`` (not ``uncertain``)."""
    found = detector.predict(list(paths), batch_size=32)
    return np.array([d.p_fake for d in found]), np.array([d.label == "fake" for d in found])


def auc(labels: np.ndarray, p: np.ndarray) -> float:
    return binary_metrics(labels, p)["auc"] if len(set(labels.tolist())) == 2 else float("nan")


def format_sensitivity(detector: Detector, paths: Sequence[str]) -> tuple[float, float]:
    """Mean and 95th percentile of |p_fake(pixels) - p_fake(pixels as JPEG q95)|."""
    images = [detector.decode(p) for p in paths]
    plain = np.array([d.p_fake for d in detector.predict(images)])
    jpeg = np.array([d.p_fake for d in detector.predict([jpeg_compress(i, 95, "pil", "4:2:0") for i in images])])
    delta = np.abs(plain - jpeg)
    return float(delta.mean()), float(np.percentile(delta, 95))


def leave_one_source_out(
    root: Path,
    records: list[dict[str, Any]],
    subsets: Sequence[str],
    overrides: dict[str, Any],
    out: Path,
    only: Sequence[str] | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per held-out package: the fold's row, and every scored image (for the pooled summary).

    Besides the trained subsets' fakes of the held-out photos, each other subset of the benchmark
    is scored against the same held-out reals: a generator never trained on, on photos never
    trained on (``auc_<subset>_stored`` and ``_jpeg_histories``, ``caught_<subset>``).
    """
    rows, scored = [], []
    packages = sorted({r["package"] for r in records if r["label"] == "nature"})
    other_subsets = sorted({r["subset"] for r in records} - set(subsets))
    for held in only or packages:
        trained_on = [r for r in records if r["split"] == "train" and r["package"] != held and r["subset"] in subsets]
        fold = make_fold(root, trained_on, out / "folds" / f"loso-{held}")
        detector = Detector.from_checkpoint(
            train_fold(fold, subsets, overrides, out / "runs" / f"loso-{held}"), device="cpu"
        )
        test = [r for r in records if r["package"] == held and r["split"] in TEST_SPLITS and r["subset"] in subsets]
        matched = [
            r for r in records if r["package"] == held and r["split"] == "val_matched" and r["subset"] in subsets
        ]
        row: dict[str, Any] = {
            "held_out": held,
            "n_train": len(trained_on),
            "n_real": sum(r["label"] == "nature" for r in test),
        }
        for name, part in (("stored", test), ("jpeg_histories", matched)):
            if part:
                labels = np.array([int(r["label"] == "ai") for r in part])
                p, fake = scores(detector, [str(root / r["path"]) for r in part])
                scored += [
                    {
                        "fold": held,
                        "path": r["path"],
                        "subset": r["subset"],
                        "split": r["split"],
                        "label": int(y),
                        "p_fake": float(q),
                        "called_fake": bool(f),
                        "trained_subset": True,
                    }
                    for r, y, q, f in zip(part, labels, p, fake, strict=True)
                ]
                row[f"auc_{name}"] = auc(labels, p)
                if name == "stored":
                    row["reals_called_fake"] = float(fake[labels == 0].mean()) if (labels == 0).any() else float("nan")
                    row["fakes_caught"] = float(fake[labels == 1].mean()) if (labels == 1).any() else float("nan")
                    reals = [str(root / r["path"]) for r in part if r["label"] == "nature"]
                    fakes = [str(root / r["path"]) for r in part if r["label"] == "ai"]
                    row["format_real_mean"], row["format_real_p95"] = format_sensitivity(detector, reals)
                    row["format_fake_mean"], row["format_fake_p95"] = format_sensitivity(detector, fakes)
        for subset in other_subsets:
            for name, splits in (("stored", TEST_SPLITS), ("jpeg_histories", ("val_matched",))):
                fakes = [
                    r
                    for r in records
                    if r["package"] == held and r["split"] in splits and r["subset"] == subset and r["label"] == "ai"
                ]
                if not fakes:
                    continue
                p, fake = scores(detector, [str(root / r["path"]) for r in fakes])
                scored += [
                    {
                        "fold": held,
                        "path": r["path"],
                        "subset": subset,
                        "split": r["split"],
                        "label": 1,
                        "p_fake": float(q),
                        "called_fake": bool(f),
                        "trained_subset": False,
                    }
                    for r, q, f in zip(fakes, p, fake, strict=True)
                ]
                reals = np.array(
                    [
                        s["p_fake"]
                        for s in scored
                        if s["fold"] == held and s["label"] == 0 and s["split"] in splits and s["trained_subset"]
                    ]
                )
                row[f"auc_{subset}_{name}"] = auc(np.r_[np.zeros(len(reals)), np.ones(len(p))], np.r_[reals, p])
                if name == "stored":
                    row[f"caught_{subset}"] = float(fake.mean())
        row["threshold"] = detector.threshold
        rows.append(row)
    return rows, scored


def pooled(scored: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Over every fold together (each real photo is scored by the one model that never saw its
    package): per fake subset, AUC as stored and with the reals' JPEG histories, fakes caught, and
    the share of reals called fake at each fold's shipped threshold."""
    summary: dict[str, dict[str, float]] = {}
    reals = [s for s in scored if s["label"] == 0]
    for subset in sorted({s["subset"] for s in scored if s["label"] == 1}):
        fakes = [s for s in scored if s["label"] == 1 and s["subset"] == subset]
        row: dict[str, float] = {"trained": float(fakes[0]["trained_subset"])}
        for name, splits in (("stored", TEST_SPLITS), ("jpeg_histories", ("val_matched",))):
            r = [s["p_fake"] for s in reals if s["split"] in splits]
            f = [s["p_fake"] for s in fakes if s["split"] in splits]
            if r and f:
                row[f"auc_{name}"] = auc(np.r_[np.zeros(len(r)), np.ones(len(f))], np.r_[r, f])
        stored = [s for s in fakes if s["split"] in TEST_SPLITS]
        row["fakes_caught"] = float(np.mean([s["called_fake"] for s in stored])) if stored else float("nan")
        summary[subset] = row
    stored_reals = [s for s in reals if s["split"] in TEST_SPLITS]
    summary["reals"] = {
        "n": float(len(stored_reals)),
        "called_fake": float(np.mean([s["called_fake"] for s in stored_reals])) if stored_reals else float("nan"),
    }
    return summary


def leave_one_family_out(
    root: Path, records: list[dict[str, Any]], families: dict[str, list[str]], overrides: dict[str, Any], out: Path
) -> dict[str, dict[str, float]]:
    matrix: dict[str, dict[str, float]] = {}
    all_subsets = sorted({r["subset"] for r in records})
    for family, subsets in families.items():
        trained_on = [r for r in records if r["split"] == "train" and r["subset"] in subsets]
        fold = make_fold(root, trained_on, out / "folds" / f"family-{family}")
        detector = Detector.from_checkpoint(
            train_fold(fold, subsets, overrides, out / "runs" / f"family-{family}"), device="cpu"
        )
        matrix[family] = {}
        for subset in all_subsets:
            for split in ("val", "val_matched"):
                samples = load_samples(root, layout="genimage", split=split, subsets=[subset])
                p, _ = scores(detector, [s.path for s in samples])
                matrix[family][f"{subset}/{split}"] = auc(np.array([s.label for s in samples]), p)
    return matrix


def ensemble(runs: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The scores of several protocol runs (same benchmark and folds) as one detector: p_fake from the
    mean of the members' logits; called fake only when every member calls it fake at its own shipped
    threshold (an image any member calls real or uncertain is not a false alarm of the ensemble)."""
    keyed = [{(s["fold"], s["path"]): s for s in run} for run in runs]
    common = [k for k in keyed[0] if all(k in other for other in keyed[1:])]
    out = []
    for k in common:
        members = [run[k] for run in keyed]
        p = np.clip([m["p_fake"] for m in members], 1e-7, 1 - 1e-7)
        logit = float(np.mean(np.log(p) - np.log1p(-p)))
        out.append(
            {**members[0], "p_fake": 1 / (1 + np.exp(-logit)), "called_fake": all(m["called_fake"] for m in members)}
        )
    return out


def _pct(v: float | None) -> str:
    return "-" if v is None or np.isnan(v) else f"{100 * v:.1f}"


def markdown(
    loso: list[dict[str, Any]], lofo: dict[str, dict[str, float]], summary: dict[str, dict[str, float]]
) -> str:
    lines: list[str] = []
    if loso:
        lines += [
            "## Leave one photo source out",
            "",
            "Each row: trained without the held-out package's photos; tested on them and the trained generators' fakes "
            "of them. Other columns: AUC % of each generator never trained on against the same held-out reals "
            "(stored / with the reals' JPEG histories).",
            "",
        ]
        others = sorted(
            {k[4 : -len("_stored")] for r in loso for k in r if k.startswith("auc_") and k.endswith("_stored")} - {""}
        )
        head = (
            "| held-out package | reals | reals called fake % | fakes caught % | AUC stored % | AUC JPEG histories % "
            "| format mean / p95 real | format mean / p95 fake |"
        )
        lines += [head + "".join(f" {o} |" for o in others), "|---|" + "---:|" * (7 + len(others))]
        for r in loso:
            lines.append(
                f"| {r['held_out']} | {r['n_real']} | {_pct(r.get('reals_called_fake'))} "
                f"| {_pct(r.get('fakes_caught'))} "
                f"| {_pct(r.get('auc_stored'))} | {_pct(r.get('auc_jpeg_histories'))} "
                f"| {r.get('format_real_mean', float('nan')):.3f} / {r.get('format_real_p95', float('nan')):.3f} "
                f"| {r.get('format_fake_mean', float('nan')):.3f} / {r.get('format_fake_p95', float('nan')):.3f} |"
                + "".join(
                    f" {_pct(r.get(f'auc_{o}_stored'))} / {_pct(r.get(f'auc_{o}_jpeg_histories'))} |" for o in others
                )
            )
    if summary:
        reals = summary["reals"]
        lines += [
            "",
            "## All folds pooled (every real scored by the model that never saw its package)",
            "",
            f"Unseen-source reals: {int(reals['n'])}, called fake at the shipped threshold: "
            f"{_pct(reals['called_fake'])} % (target <= 5 %).",
            "",
            "| fakes | trained on | AUC stored % | AUC JPEG histories % | drop | fakes caught % |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for subset, row in summary.items():
            if subset == "reals":
                continue
            drop = row.get("auc_stored", float("nan")) - row.get("auc_jpeg_histories", float("nan"))
            lines.append(
                f"| {subset} | {'yes' if row['trained'] else 'no'} | {_pct(row.get('auc_stored'))} "
                f"| {_pct(row.get('auc_jpeg_histories'))} | {'-' if np.isnan(drop) else f'{100 * drop:+.1f}'} "
                f"| {_pct(row['fakes_caught'])} |"
            )
        lines += [
            "",
            "Targets: AUC >= 95 % on an unseen super-resolution network and >= 90 % on an unseen family (stored), "
            "within 3 points with the reals' JPEG histories; >= 80 % of fakes caught with <= 5 % of reals called "
            "fake; format sensitivity mean < 0.05.",
        ]
    if lofo:
        columns = list(next(iter(lofo.values())))
        lines += [
            "",
            "## Leave one generator family out (AUC %, rows: trained on)",
            "",
            "| trained on | " + " | ".join(columns) + " |",
            "|---|" + "---:|" * len(columns),
        ]
        lines += [f"| {f} | " + " | ".join(_pct(v) for v in row.values()) + " |" for f, row in lofo.items()]
    return "\n".join(lines) + "\n"


def parse_sets(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` training overrides, values read as YAML (numbers, lists, booleans)."""
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key.replace("-", "_")] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/demo", help="A benchmark built by ssp data build-demo.")
    ap.add_argument("--train-subsets", nargs="+", default=["esrgan_x4plus"], help="Subsets trained on in (a).")
    ap.add_argument("--packages", nargs="+", help="Held-out packages of (a) (default: every package).")
    ap.add_argument(
        "--family",
        action="append",
        default=[],
        metavar="NAME=SUBSET[,SUBSET]",
        help="A generator family of (b); repeat (default: none, (b) skipped).",
    )
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="Training options (TrainConfig keys).")
    ap.add_argument("--out", default="runs/protocol")
    ap.add_argument(
        "--combine",
        nargs="+",
        metavar="RUN",
        help="Train nothing: pool the scores of earlier runs' --out folders as one ensemble (mean logit; "
        "fake only when every member says fake) and report it.",
    )
    args = ap.parse_args(argv)
    root, out = Path(args.data), Path(args.out)
    if args.combine:
        runs = [json.loads((Path(r) / "protocol.json").read_text()) for r in args.combine]
        summary = pooled(ensemble([r["scored"] for r in runs]))
        report = f"Ensemble of {', '.join(args.combine)}\n\n" + markdown([], {}, summary)
        out.mkdir(parents=True, exist_ok=True)
        (out / "protocol.md").write_text(report)
        (out / "protocol.json").write_text(json.dumps({"combine": args.combine, "pooled": summary}, indent=1))
        print(report)
        return 0
    records = read_manifest(root)
    overrides = parse_sets(args.set)
    families = {name: subsets.split(",") for name, _, subsets in (f.partition("=") for f in args.family)}
    loso, scored = leave_one_source_out(root, records, args.train_subsets, overrides, out, args.packages)
    summary = pooled(scored)
    lofo = leave_one_family_out(root, records, families, overrides, out) if families else {}
    report = markdown(loso, lofo, summary)
    out.mkdir(parents=True, exist_ok=True)
    (out / "protocol.md").write_text(report)
    (out / "protocol.json").write_text(
        json.dumps({"loso": loso, "pooled": summary, "lofo": lofo, "overrides": overrides, "scored": scored}, indent=1)
    )
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
