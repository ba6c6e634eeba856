"""Can knowing the degradation help ``ssp-strata`` under blur and JPEG? A probe of ESSP's two ideas.

    python -m benchmarks.essp_feature_probe --data data/demo-medium

ESSP puts a perception module (is the image blurred? JPEG-compressed?) and an enhancement module
(restore it) in front of an SSP detector. This probe asks, on the features of ``ssp-strata`` and
with closed-form fits (scikit-learn, seconds each), whether either idea can beat the same detector
trained on degraded images, before anything is built into the training loop:

- ``robust head``: one logistic regression on the features of every training copy (SSP trained
  with the ``robust`` preset);
- ``experts by perception``: a head per condition (undegraded, blurred, JPEG-compressed copies),
  mixed by a perception classifier on the same features;
- ``feature restoration``: per degradation, a ridge map from degraded to clean features (the clean
  features of the same image before the augmentation), applied with the perception's weights,
  then a head trained on restored features: an enhancement module that restores what the
  detector reads, the noise counts, instead of pixels;
- ``JPEG restoration, oracle``: the JPEG map applied to every JPEG-75 image (the perception
  replaced by the truth), then the head trained on clean images;
- ``pixel deblur, oracle sigma``: the least-squares 7x7 filter that undoes a sigma-1 blur on the
  training images, then the head trained on clean images: the enhancement the paper describes.

Training: every ``esrgan_x4plus`` training image of a demo benchmark ``--copies`` times through the
``robust`` augmentation (blur p 0.5, sigma 0-3; JPEG p 0.5, quality 30-100) after format matching
(training fakes get the JPEG histories of the training reals), as ``ssp train --config robust``
does. Test: ``val`` and ``val_matched`` (fakes with the reals' JPEG histories), clean, JPEG 75
and Gaussian blur sigma 1, as ``ssp robustness`` applies them. Prints accuracy at 0.5 / AUC (%).
Two or three minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ssp_detect.data.decode import load_rgb
from ssp_detect.data.degradations import Degradation, TrainAugment, format_match_probabilities, gaussian_blur
from ssp_detect.data.layouts import has_jpeg_history, load_samples
from ssp_detect.engine.train import jpeg_histories
from ssp_detect.models.strata import strata_features

TRAIN_SUBSET = "esrgan_x4plus"
TESTS = {"clean": Degradation(), "JPEG 75": Degradation("jpeg", 75), "blur 1": Degradation("blur", 1.0)}
DEBLUR_TAPS = 7


def features(images: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """``ssp-strata``'s features of 256x256 RGB images, in batches."""
    out = [
        strata_features(torch.from_numpy(np.stack(images[i : i + 64])).permute(0, 3, 1, 2).float()).numpy()
        for i in range(0, len(images), 64)
    ]
    return np.concatenate(out)


def deblur_filter(sharp: np.ndarray, blurred: np.ndarray) -> torch.Tensor:
    """The DEBLUR_TAPS x DEBLUR_TAPS filter (one for every channel) that maps ``blurred`` to
    ``sharp`` in least squares (ridge 1e-3), from every pixel of (N, H, W, 3) images."""
    k, m = DEBLUR_TAPS, DEBLUR_TAPS // 2
    gram = 1e-3 * torch.eye(k * k, dtype=torch.float64)
    rhs = torch.zeros(k * k, dtype=torch.float64)

    def planes(images: np.ndarray, start: int) -> torch.Tensor:
        """Images start to start + 7 (fewer at the end), one float64 plane per channel: (n * 3, 1, H, W)."""
        chunk = torch.from_numpy(images[start : start + 8].astype(np.float64))
        return chunk.permute(0, 3, 1, 2).reshape(-1, 1, *images.shape[1:3])

    for i in range(0, len(sharp), 8):  # normal equations, accumulated a few images at a time
        columns = F.unfold(planes(blurred, i), k).permute(0, 2, 1).reshape(-1, k * k)
        target = planes(sharp, i)[..., m:-m, m:-m].reshape(-1)
        gram += columns.T @ columns
        rhs += columns.T @ target
    return torch.linalg.solve(gram, rhs).float().reshape(1, 1, k, k)


def apply_filter(images: np.ndarray, weights: torch.Tensor) -> np.ndarray:
    """Filter each channel of (N, H, W, 3) images (reflect padding), clipped to 0-255."""
    x = torch.from_numpy(images.astype(np.float32)).permute(0, 3, 1, 2)
    n, c, h, w = x.shape
    out = F.conv2d(F.pad(x.reshape(-1, 1, h, w), (DEBLUR_TAPS // 2,) * 4, mode="reflect"), weights).reshape(n, c, h, w)
    return out.clamp(0, 255).permute(0, 2, 3, 1).numpy()


def main(argv: list[str] | None = None) -> int:
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import roc_auc_score

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/demo-medium", help="A demo benchmark folder (ssp data build-demo).")
    ap.add_argument("--copies", type=int, default=4, help="Augmented copies of each training image.")
    ap.add_argument("--seed", type=int, default=0, help="Seed of the augmentation draws.")
    args = ap.parse_args(argv)
    if not (Path(args.data) / "manifest.json").is_file():
        print(
            f"{args.data} is not a demo benchmark; build one with: ssp data build-demo --out {args.data} --size medium",
            file=sys.stderr,
        )
        return 2
    rng = np.random.default_rng(args.seed)

    train = load_samples(args.data, layout="auto", split="train", subsets=[TRAIN_SUBSET])
    shares = [np.mean([has_jpeg_history(s) for s in train if s.label == label]) for label in (0, 1)]
    augment = TrainAugment(
        blur_prob=0.5,
        blur_sig=(0.0, 3.0),
        jpg_prob=0.5,
        jpg_qual=(30, 100),
        format_match_probs=format_match_probabilities(*shares),
        format_match_histories=tuple(jpeg_histories(train)),
    )
    degraded, clean, labels, applied = [], [], [], []
    for sample in train:
        img = load_rgb(sample.path)
        for _ in range(args.copies):
            a = augment.apply(img, rng, label=sample.label, stored_as_jpeg=has_jpeg_history(sample))
            degraded.append(a.image)
            clean.append(a.source)
            labels.append(sample.label)
            applied.append((a.blurred, a.jpeg))
    x_train, c_train, y, applied = features(degraded), features(clean), np.array(labels), np.array(applied)
    undegraded = applied.sum(1) == 0
    blurred = applied[:, 0] == 1
    jpeg_only = (applied[:, 1] == 1) & ~blurred

    tests: dict[str, tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]] = {}
    for split in ("val", "val_matched"):
        samples = load_samples(args.data, layout="auto", split=split, subsets=[TRAIN_SUBSET])
        images = [load_rgb(s.path) for s in samples]
        pixels = {name: np.stack([d(img, rng) for img in images]) for name, d in TESTS.items()}
        tests[split] = (
            np.array([s.label for s in samples]),
            {name: features(p) for name, p in pixels.items()},
            pixels["blur 1"],
        )
        if split == "val":
            val_clean, val_blurred = pixels["clean"], pixels["blur 1"]

    head = lambda x, t: LogisticRegression(C=10, max_iter=5000).fit(x, t)  # noqa: E731
    perception = [head(x_train, applied[:, k]) for k in (0, 1)]

    def perceive(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return perception[0].predict_proba(x)[:, 1], perception[1].predict_proba(x)[:, 1]

    robust = head(x_train, y)
    experts = {
        "clean": head(x_train[undegraded], y[undegraded]),
        "blur": head(x_train[blurred], y[blurred]),
        "jpeg": head(x_train[jpeg_only], y[jpeg_only]),
    }

    def mixture(x: np.ndarray) -> np.ndarray:
        p_blur, p_jpeg = perceive(x)
        weights = {"clean": (1 - p_blur) * (1 - p_jpeg), "blur": p_blur, "jpeg": (1 - p_blur) * p_jpeg}
        logit = sum(w * experts[k].decision_function(x) for k, w in weights.items()) / sum(weights.values())
        return 1 / (1 + np.exp(-logit))

    restore_blur = Ridge(alpha=1.0).fit(x_train[blurred], c_train[blurred])
    restore_jpeg = Ridge(alpha=1.0).fit(x_train[jpeg_only], c_train[jpeg_only])

    def restore(x: np.ndarray) -> np.ndarray:
        p_blur, p_jpeg = perceive(x)
        return (
            x
            + p_blur[:, None] * (restore_blur.predict(x) - x)
            + ((1 - p_blur) * p_jpeg)[:, None] * (restore_jpeg.predict(x) - x)
        )

    on_restored = head(restore(x_train), y)
    on_clean = head(c_train, y)
    sources = np.stack(clean[:: args.copies])
    deblur = deblur_filter(sources, np.stack([gaussian_blur(img, 1.0) for img in sources]))

    # Title -> (predict from features and the blurred pixels, the one test it applies to or None).
    rows = {
        "robust head (SSP, robust preset)": (lambda x, _: robust.predict_proba(x)[:, 1], None),
        "experts by perception": (lambda x, _: mixture(x), None),
        "feature restoration": (lambda x, _: on_restored.predict_proba(restore(x))[:, 1], None),
        "JPEG restoration, oracle": (lambda x, _: on_clean.predict_proba(restore_jpeg.predict(x))[:, 1], "JPEG 75"),
        "pixel deblur, oracle sigma": (
            lambda x, blur_pixels: on_clean.predict_proba(features(apply_filter(blur_pixels, deblur)))[:, 1],
            "blur 1",
        ),
    }
    columns = [(split, name) for split in tests for name in TESTS]
    print(f"| model | {' | '.join(f'{split} {name}' for split, name in columns)} |")
    print(f"|---|{'---|' * len(columns)}")
    for title, (predict, only) in rows.items():
        cells = []
        for split, name in columns:
            y_test, x_test, blur_pixels = tests[split]
            if only not in (None, name):
                cells.append("")
                continue
            p = predict(x_test[name], blur_pixels)
            cells.append(f"{100 * np.mean((p > 0.5) == y_test):.1f} / {100 * roc_auc_score(y_test, p):.1f}")
        print(f"| {title} | {' | '.join(cells)} |")
    p_blur, p_jpeg = zip(*(perceive(tests["val"][1][name]) for name in TESTS), strict=True)
    error = lambda a: np.abs(a.astype(np.float64) - val_clean).mean()  # noqa: E731
    print(
        f"\npixel deblur on val blur 1: mean absolute error to the clean image {error(val_blurred):.2f} grey levels "
        f"blurred, {error(apply_filter(val_blurred, deblur)):.2f} deblurred"
    )
    print(
        "perception on val, mean p(blurred) / p(JPEG): "
        + ", ".join(f"{name} {b.mean():.2f} / {j.mean():.2f}" for name, b, j in zip(TESTS, p_blur, p_jpeg, strict=True))
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
