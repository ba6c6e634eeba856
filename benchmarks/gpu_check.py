"""Helpers of ``benchmarks/gpu_check.sh``: the generated data, and the one Markdown table of its results.

    python -m benchmarks.gpu_check make-tree ROOT --per-class 256 --val-per-class 64
    python -m benchmarks.gpu_check report STEPS_DIR

``make-tree`` writes a GenImage-like tree, ``ROOT/<subset>/{train,val}/{nature,ai}/``: real images as
JPEGs (500x375, quality 90-96, noisier), fakes as PNGs (512x512, smoother), as GenImage stores them,
made in parallel on every core.

``report`` reads what each step of the check left in ``STEPS_DIR`` (``<step>.status``: the exit status,
``<step>.seconds``, ``<step>.log``, and the step's own result files) and prints one Markdown table: the
step, its outcome, its numbers and its wall time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
from pathlib import Path

SUBSETS = ("imagenet_ai_0419_sdv4", "imagenet_ai_0508_adm")


def _write_image(job: tuple[str, int, bool]) -> None:
    import numpy as np
    from PIL import Image

    path, seed, real = job
    rng = np.random.default_rng(seed)
    h, w = (375, 500) if real else (512, 512)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(xx / (25 + seed % 11)) * np.cos(yy / (35 + seed % 7))
    noise = rng.normal(0, 6 + seed % 5 if real else 1.5, (h, w, 3))
    img = Image.fromarray(np.clip(base[..., None] + noise, 0, 255).astype(np.uint8))
    img.save(path, quality=90 + seed % 7) if real else img.save(path)


def make_tree(root: Path, per_class: int, val_per_class: int, subsets: tuple[str, ...] = SUBSETS) -> int:
    """Write the tree; returns the number of files."""
    jobs = []
    for s, subset in enumerate(subsets):
        for split, n in (("train", per_class), ("val", val_per_class)):
            for label, real in (("nature", True), ("ai", False)):
                folder = root / subset / split / label
                folder.mkdir(parents=True, exist_ok=True)
                ext = "JPEG" if real else "png"
                jobs += [(str(folder / f"{i:05d}.{ext}"), 100_000 * s + 2 * i + real, real) for i in range(n)]
    with mp.get_context("spawn").Pool(max(1, min(16, os.cpu_count() or 1))) as pool:
        pool.map(_write_image, jobs, chunksize=16)
    return len(jobs)


# ---------------------------------------------------------------- the report


def _read(path: Path) -> str | None:
    return path.read_text().strip() if path.is_file() else None


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _outcome(steps: Path, name: str) -> tuple[str, str]:
    """(outcome, seconds) of a step: ok, failed (exit N), timed out, or not run."""
    status, seconds = _read(steps / f"{name}.status"), _read(steps / f"{name}.seconds") or ""
    if status is None:
        return "not run", seconds
    if status == "skipped":
        return "skipped (out of time)", seconds
    code = int(status)
    if code == 0:
        return "ok", seconds
    return ("timed out" if code in (124, 137) else f"failed (exit {code})"), seconds


def _pytest_result(steps: Path) -> str:
    log = _read(steps / "cuda_tests.log") or ""
    found = re.findall(r"^[= ]*(\d+ \w+(?:, \d+ \w+)*) in [\d.]+s", log, re.MULTILINE)
    return found[-1] if found else "no summary"


def _speed_results(steps: Path) -> list[tuple[str, str]]:
    """(what, numbers) rows from speed.py's JSON."""
    data = _json(steps / "speed.json")
    if not data:
        return [("speed (benchmarks/speed.py)", "no results")]
    res, meta = data["results"], data["meta"]
    rows = []

    def rates(r: dict, ours: str) -> str:
        refs = {k: v for k, v in r.items() if k.startswith("reference")}
        best = max(refs, key=refs.get)
        against = ", ".join(f"{_ref_name(k)} {v:.1f} ({r[ours] / v:.1f}x)" for k, v in refs.items())
        return (
            f"ssp-detect {r[ours]:.1f} img/s; {against}; {r[ours] / refs[best]:.2f}x the stronger ({_ref_name(best)})"
        )

    n = meta["files"]
    if "decode" in res:
        rows.append(("decode ceiling, 1 process", f"{res['decode']['ours']:.1f} img/s"))
    if "eval" in res:
        r = res["eval"]
        rows.append((f"evaluation from {n} files, steady state (ssp test path)", rates(r, "ours")))
        rows.append(("  --decode device (JPEGs by nvJPEG), steady state", rates(r, "ours_device_decode")))
        rows.append(("  ssp predict path (Detector), steady state", rates(r, "ours_predict")))
        rows.append(("  model forward alone", f"{r['model_alone']:.1f} img/s"))
        if "decode" in res:
            workers = meta.get("our_workers") or 1
            ceiling = res["decode"]["ours"] * workers
            rows.append(
                (
                    "  share of the decode ceiling",
                    f"{r['ours'] / ceiling:.0%} of {ceiling:.0f} img/s (1-process decode x {workers} workers)",
                )
            )
    if "train" in res:
        rows.append(("training steps from files", rates(res["train"], "ours")))
    if "process" in res:
        p = res["process"]
        refs = {k: v for k, v in p.items() if k.startswith("reference")}
        best = min(refs, key=refs.get)
        rows.append(
            (
                f"whole process over {n} files (ssp predict)",
                f"ssp predict {p['ours']:.1f} s, "
                + ", ".join(f"{_ref_name(k)} {v:.1f} s" for k, v in refs.items())
                + f"; {refs[best] / p['ours']:.2f}x the stronger",
            )
        )
    return rows


def _ref_name(key: str) -> str:
    if key == "reference_single":
        return "official 1 process"
    return f"official {key.removeprefix('reference_w')} workers"


def _train_result(steps: Path) -> str:
    metrics = steps / "train_run" / "metrics.jsonl"
    if not metrics.is_file():
        return "no metrics"
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    epochs = [r for r in records if r.get("type") == "epoch"]
    if not epochs:
        return "no epoch finished"
    val = epochs[-1].get("val") or {}
    bits = [f"{len(epochs)} epochs of {_read(steps / 'train.images') or '?'} images"]
    if "acc" in val:
        bits.append(f"val acc {val['acc']:.3f}, AUC {val.get('auc', float('nan')):.3f}")
    bits.append(
        "seconds per epoch "
        + ", ".join(f"{e.get('time_s', float('nan')):.1f}" for e in epochs)
        + " (the first compiles)"
    )
    return "; ".join(bits)


def _decode_result(steps: Path, name: str) -> str:
    count, seconds = _read(steps / f"{name}.images"), _read(steps / f"{name}.seconds")
    if not count or not seconds:
        return ""
    return f"{count} images in {float(seconds):.1f} s, whole process: {int(count) / float(seconds):.1f} img/s"


def report(steps: Path) -> str:
    env = _json(steps / "env.json") or {}
    head = (
        f"GPU check, {env.get('date', '?')}: {env.get('device', '?')}, {env.get('cpus', '?')} CPU cores, "
        f"torch {env.get('torch', '?')}, mode {env.get('mode', '?')}, budget {env.get('budget_s', '?')} s"
    )
    rows: list[tuple[str, str, str, str]] = []

    def add(step: str, what: str, numbers: str) -> None:
        outcome, seconds = _outcome(steps, step)
        rows.append((what, outcome, numbers, seconds))

    add("warmup", "set-up: numba cache, .pyc files", "")
    add("cuda_tests", "CUDA tests (pytest -m gpu)", _pytest_result(steps))
    outcome, seconds = _outcome(steps, "speed")
    for i, (what, numbers) in enumerate(_speed_results(steps)):
        rows.append((what, outcome if i == 0 else "", numbers, seconds if i == 0 else ""))
    add(
        "tree", "generated GenImage-like tree", _read(steps / "tree.images") and f"{_read(steps / 'tree.images')} files"
    )
    add("train", "training, 2 epochs, bf16, channels-last, torch.compile (ssp train)", _train_result(steps))
    add("test_workers", "ssp test --decode workers", _decode_result(steps, "test_workers"))
    add("test_device", "ssp test --decode device", _decode_result(steps, "test_device"))
    lines = [head, "", "| check | outcome | result | s |", "|---|---|---|---|"]
    lines += [
        f"| {what} | {outcome} | {numbers or '-'} | {seconds or ''} |" for what, outcome, numbers, seconds in rows
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("make-tree", help="write a GenImage-like tree")
    t.add_argument("root")
    t.add_argument("--per-class", type=int, default=256, help="training images per class and subset")
    t.add_argument("--val-per-class", type=int, default=64, help="validation images per class and subset")
    t.add_argument("--subsets", type=int, default=len(SUBSETS), choices=range(1, len(SUBSETS) + 1))
    r = sub.add_parser("report", help="print the Markdown table of a check's steps")
    r.add_argument("steps")
    args = ap.parse_args(argv)
    if args.command == "make-tree":
        n = make_tree(Path(args.root), args.per_class, args.val_per_class, SUBSETS[: args.subsets])
        print(n)
    else:
        print(report(Path(args.steps)), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
