"""How trustworthy are a checkpoint's verdicts on unseen photos? False alarms, fakes caught, coverage.

    python -m benchmarks.verdicts --weights runs/demo/ssp-strata/best.pt --data data/demo --splits val val_matched

For each split (the demo benchmark's validation photos are photos the model never trained on) it
prints, for real and fake images apart:

* before: the raw output (temperature 1) at the threshold 0.5, as checkpoints were shipped before
  calibration;
* after: the checkpoint's stored temperature and threshold (chosen for a false-positive rate), with
  and without ``uncertain`` verdicts at the default band;
* how false alarms, fakes caught and accuracy change with coverage as the uncertainty band widens;
* the texture levels of the region the model reads, and how many images fall under the
  ``no-texture`` level.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from ssp_detect.data.layouts import load_samples
from ssp_detect.data.preprocess import NO_TEXTURE_LEVEL, PatchOptions
from ssp_detect.engine.calibrate import apply_temperature
from ssp_detect.engine.evaluate import Predictions, evaluate_model, uncertain_mask
from ssp_detect.models import load_model
from ssp_detect.verdict import DEFAULT_UNCERTAIN_BAND

BANDS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3)


def rates(
    labels: np.ndarray, p_fake: np.ndarray, threshold: float, decided: np.ndarray
) -> tuple[float, float, float, float]:
    """(false alarms on decided reals, fakes caught among decided fakes, accuracy on decided, coverage)."""
    calls = p_fake >= threshold
    real, fake = decided & (labels == 0), decided & (labels == 1)
    alarms = float(calls[real].mean()) if real.any() else float("nan")
    caught = float(calls[fake].mean()) if fake.any() else float("nan")
    acc = float((calls[decided] == labels[decided].astype(bool)).mean()) if decided.any() else float("nan")
    return alarms, caught, acc, float(decided.mean())


def row(name: str, values: tuple[float, ...]) -> str:
    return f"| {name} | " + " | ".join("-" if np.isnan(v) else f"{100 * v:.1f}" for v in values) + " |"


def report(split: str, preds: Predictions, threshold: float, temperature: float) -> list[str]:
    labels = preds.label
    raw = apply_temperature(preds.logit, 1.0)
    calibrated = apply_temperature(preds.logit, temperature)
    everyone = np.ones(len(labels), dtype=bool)
    lines = [
        f"### split `{split}`: {int((labels == 0).sum())} real, {int((labels == 1).sum())} fake",
        "",
        "| verdicts | reals called fake % | fakes caught % | accuracy % | decided % |",
        "|---|---:|---:|---:|---:|",
    ]
    lines.append(row("before: raw p_fake, threshold 0.5", rates(labels, raw, 0.5, everyone)))
    lines.append(
        row(
            f"after: T {temperature:.3g}, stored threshold {threshold:.3f}",
            rates(labels, calibrated, threshold, everyone),
        )
    )
    scored = Predictions(
        preds.index, labels, calibrated, preds.box, preds.score, preds.logit, preds.texture, preds.upscaled
    )
    decided = ~uncertain_mask(scored, threshold, DEFAULT_UNCERTAIN_BAND)
    lines.append(
        row(f"after, uncertain apart (band {DEFAULT_UNCERTAIN_BAND})", rates(labels, calibrated, threshold, decided))
    )
    lines += [
        "",
        "| band | reals called fake % | fakes caught % | accuracy % | decided % |",
        "|---:|---:|---:|---:|---:|",
    ]
    for band in BANDS:
        lines.append(row(f"{band:g}", rates(labels, calibrated, threshold, ~uncertain_mask(scored, threshold, band))))
    texture = preds.texture
    lines += [
        "",
        "| texture level (grey levels) | p5 | p50 | p95 | under the no-texture level |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, part in (("real", labels == 0), ("fake", labels == 1)):
        p5, p50, p95 = np.percentile(texture[part], [5, 50, 95])
        flat = int((texture[part] < NO_TEXTURE_LEVEL).sum())
        lines.append(f"| {name} | {p5:.2f} | {p50:.2f} | {p95:.2f} | {flat} of {int(part.sum())} |")
    lines.append(f"\nupscaled images: {int(preds.upscaled.sum())}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--data", default="data/demo")
    ap.add_argument("--subsets", nargs="+", default=["esrgan_x4plus"])
    ap.add_argument("--splits", nargs="+", default=["val", "val_matched"])
    args = ap.parse_args(argv)
    loaded = load_model(args.weights)
    print(
        f"`{args.weights}` ({loaded.name}): stored threshold {loaded.threshold:.4f}, temperature "
        f"{loaded.temperature:.3g}; "
        f"calibration: {loaded.meta.get('calibration', 'none')}\n"
    )
    for split in args.splits:
        samples = load_samples(args.data, split=split, subsets=args.subsets)
        _, preds = evaluate_model(
            loaded,
            samples,
            device=torch.device("cpu"),
            precision="fp32",
            batch_size=32,
            workers=0,
            patch=PatchOptions(),
            progress=False,
            uncertain_band=0.0,
        )
        print("\n".join(report(split, preds, loaded.threshold, loaded.temperature)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
