"""Does a verdict follow how a file was stored? Format sensitivity of checkpoints on labelled images.

    python -m benchmarks.format_sensitivity --weights runs/a/best.pt runs/b/best.pt --data data/demo

For each checkpoint and split: the AUC, the share of reals called fake and of fakes caught (``fake`` verdicts only:
``uncertain`` is not "fake"), and the mean and 95th percentile of |p_fake(pixels) - p_fake(the same pixels as JPEG
q95, 4:2:0)|, reals and fakes apart. Prints one Markdown table.
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.protocol import auc, format_sensitivity, scores
from ssp_detect.data.layouts import load_samples
from ssp_detect.detector import Detector


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", nargs="+", required=True)
    ap.add_argument("--data", default="data/demo")
    ap.add_argument("--subsets", nargs="+", default=["esrgan_x4plus"])
    ap.add_argument("--splits", nargs="+", default=["val", "val_matched"])
    args = ap.parse_args(argv)
    print(
        "| checkpoint | split | AUC | reals called fake | fakes caught | format real mean / p95 "
        "| format fake mean / p95 |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for weights in args.weights:
        detector = Detector.from_checkpoint(weights, device="cpu")
        for split in args.splits:
            samples = load_samples(args.data, split=split, subsets=args.subsets)
            labels = np.array([s.label for s in samples])
            p, fake = scores(detector, [s.path for s in samples])
            real_mean, real_p95 = format_sensitivity(detector, [s.path for s in samples if s.label == 0])
            fake_mean, fake_p95 = format_sensitivity(detector, [s.path for s in samples if s.label == 1])
            print(
                f"| {weights} | {split} | {auc(labels, p):.3f} | {fake[labels == 0].mean():.3f} | "
                f"{fake[labels == 1].mean():.3f} | {real_mean:.3f} / {real_p95:.3f} | "
                f"{fake_mean:.3f} / {fake_p95:.3f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
