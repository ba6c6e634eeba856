"""Where in the image the real/fake signal lies once formats are matched: a linear probe.

    python -m benchmarks.feature_probe --data data/demo-medium

Pools the co-occurrence histograms of ``ssp-cooc`` over different parts of each image: the
simplest patch (SSP's choice, as ``ssp-cooc`` sees it), and the k simplest of the 64 32x32 tiles of
the centre 256x256 crop (ranked by SSP's texture diversity), pooled whole or in texture strata
(:data:`TILE_POOLINGS`; ``ssp-strata`` is one of them).
For each, a logistic regression (scikit-learn, standardised features, C=0.1) is fitted on the
``esrgan_x4plus`` training split of a demo benchmark (``ssp data build-demo``), where every training
fake is present twice: as made, and JPEG-compressed with the (quality, chroma subsampling) of a
random JPEG training real, weighted by the share of JPEG reals, so that "JPEG or not" cannot
separate the classes. Prints the AUC on ``val`` and ``val_matched`` (fakes given the reals' JPEG
histories) of both subsets: photos never seen in training. A few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ssp_detect.data.decode import load_rgb
from ssp_detect.data.degradations import jpeg_compress
from ssp_detect.data.patch import select_simplest_patch
from ssp_detect.data.preprocess import Preprocessor
from ssp_detect.models import get_spec
from ssp_detect.models.cooccurrence import cooccurrence_histograms
from ssp_detect.models.strata import ranked_tiles

TRAIN_SUBSET = "esrgan_x4plus"
# Name -> (how many of the 64 tiles, simplest first, are kept; in how many texture strata).
TILE_POOLINGS = {
    "8 simplest tiles": (8, 1),
    "16 simplest tiles": (16, 1),
    "32 simplest tiles": (32, 1),
    "48 simplest tiles": (48, 1),
    "all 64 tiles": (64, 1),
    "32 simplest tiles, 2 strata": (32, 2),
    "all 64 tiles, 2 strata": (64, 2),
    "all 64 tiles, 4 strata": (64, 4),
    "all 64 tiles, 8 strata": (64, 8),
}
POOLINGS = ("simplest patch", *TILE_POOLINGS)


def _chw(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))).float()[None]


def features(img: np.ndarray, crop: Preprocessor) -> dict[str, np.ndarray]:
    """Every pooling of one image's co-occurrence histograms (square roots, as the models use)."""
    simplest = cooccurrence_histograms(_chw(select_simplest_patch(img, 32, "seeded").patch))[0]
    ranked = cooccurrence_histograms(ranked_tiles(torch.from_numpy(crop(img).pixels).float()[None], 32)[0])
    pooled = {"simplest patch": simplest}
    for name, (keep, strata) in TILE_POOLINGS.items():
        pooled[name] = ranked[:keep].reshape(strata, keep // strata, -1).mean(1).reshape(-1)
    return {name: np.sqrt(h.numpy()) for name, h in pooled.items()}


def main(argv: list[str] | None = None) -> int:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/demo-medium", help="A demo benchmark folder (with manifest.json).")
    ap.add_argument("--seed", type=int, default=0, help="Seed of the JPEG histories given to the training fakes.")
    args = ap.parse_args(argv)
    root = Path(args.data)
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        print(
            f"{manifest_path} does not exist; build a benchmark with: ssp data build-demo --out {root} --size medium",
            file=sys.stderr,
        )
        return 2
    images = json.loads(manifest_path.read_text())["images"]
    crop = Preprocessor.for_model(get_spec("ssp-strata").feed)
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)

    train = [r for r in images if r["subset"] == TRAIN_SUBSET and r["split"] == "train"]
    histories = [
        (r["jpeg_quality"], r["jpeg_subsampling"] or "4:2:0")
        for r in train
        if r["label"] == "nature" and r["jpeg_quality"]
    ]
    share = len(histories) / sum(r["label"] == "nature" for r in train)
    rows, labels, weights = [], [], []
    for r in tqdm(train, desc="training features", unit="img"):
        img = load_rgb(root / r["path"])
        fake = r["label"] == "ai"
        rows.append(features(img, crop))
        labels.append(int(fake))
        weights.append(1 - share if fake else 1.0)
        if fake:
            quality, subsampling = histories[rng.integers(len(histories))]
            rows.append(features(jpeg_compress(img, quality, "pil", subsampling), crop))
            labels.append(1)
            weights.append(share)

    tests = {}
    for subset in sorted({r["subset"] for r in images}, key=lambda name: (name != TRAIN_SUBSET, name)):
        for split in ("val", "val_matched"):
            part = [r for r in images if r["subset"] == subset and r["split"] == split]
            feats = [
                features(load_rgb(root / r["path"]), crop) for r in tqdm(part, desc=f"{subset} {split}", unit="img")
            ]
            tests[subset, split] = (feats, np.array([int(r["label"] == "ai") for r in part]))

    print(
        f"\nLogistic regression (C=0.1) on {root} {TRAIN_SUBSET}/train ({len(train)} images, fakes also JPEG-matched); "
        "AUC on unseen photos:\n"
    )
    print("| pooling | features | " + " | ".join(f"{s} {sp}" for s, sp in tests) + " |")
    print("|---|---:|" + "---:|" * len(tests))
    for name in POOLINGS:
        x = np.stack([row[name] for row in rows])
        scaler = StandardScaler().fit(x)
        clf = LogisticRegression(C=0.1, max_iter=5000).fit(scaler.transform(x), labels, sample_weight=weights)
        cells = []
        for feats, y in tests.values():
            z = clf.decision_function(scaler.transform(np.stack([f[name] for f in feats])))
            cells.append(f"{roc_auc_score(y, z):.3f}")
        print(f"| {name} | {x.shape[1]} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
