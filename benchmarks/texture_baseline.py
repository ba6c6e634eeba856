"""A zero-parameter reference detector: score = minus the simple patch's texture diversity.

    python -m benchmarks.texture_baseline --data data/demo --splits train val val_matched

Says how much of a data set's real/fake signal a single hand-made statistic of the simple patch
already carries (fakes tend to be smoother), so that a trained detector's AUC can be read against
it. Prints the AUC per subset and split.
"""

from __future__ import annotations

import argparse

import numpy as np

from ssp_detect.data.decode import load_rgb
from ssp_detect.data.layouts import load_samples
from ssp_detect.data.patch import select_simplest_patch
from ssp_detect.engine.metrics import binary_metrics


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/demo")
    ap.add_argument("--splits", nargs="+", default=["val", "val_matched"])
    args = ap.parse_args(argv)
    print(f"| {'split':<12} | {'subset':<16} | {'images':>6} | {'AUC of -texture':>15} |")
    print(f"|{'-' * 14}|{'-' * 18}|{'-' * 8}|{'-' * 17}|")
    for split in args.splits:
        samples = load_samples(args.data, split=split)
        scores = np.array([-select_simplest_patch(load_rgb(s.path), 32, "seeded").score for s in samples], dtype=float)
        labels = np.array([s.label for s in samples])
        subsets = np.array([s.subset for s in samples])
        for subset in sorted(set(subsets)):
            m = subsets == subset
            # Rank-based: min-max scaling keeps the order, so AUC is that of the raw score.
            p = (scores[m] - scores[m].min()) / max(np.ptp(scores[m]), 1.0)
            print(f"| {split:<12} | {subset:<16} | {int(m.sum()):>6} | {binary_metrics(labels[m], p)['auc']:15.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
