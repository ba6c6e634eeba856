"""Choosing a decision threshold on labelled data."""

from __future__ import annotations

import numpy as np

from ssp_detect.engine.metrics import best_threshold_accuracy


def threshold_for_fpr(labels: np.ndarray, p_fake: np.ndarray, target_fpr: float) -> float:
    """The lowest threshold whose false-positive rate on the real images is at most ``target_fpr``
    (real images called fake), so that as many fakes as possible are caught."""
    real = np.sort(np.asarray(p_fake)[np.asarray(labels) == 0])[::-1]
    if len(real) == 0:
        raise ValueError("Calibration for a false-positive rate needs real images.")
    allowed = int(np.floor(target_fpr * len(real)))  # real images that may score >= threshold
    if allowed >= len(real):
        return float(real[-1])
    # Strictly above the (allowed+1)-th highest real score, so at most `allowed` reals pass.
    return float(np.nextafter(real[allowed], np.inf))


def choose_threshold(labels: np.ndarray, p_fake: np.ndarray, *, target_fpr: float | None = None) -> float:
    """The threshold for ``target_fpr`` when given, else the one of best accuracy."""
    if target_fpr is not None:
        return threshold_for_fpr(labels, p_fake, target_fpr)
    return best_threshold_accuracy(np.asarray(labels), np.asarray(p_fake))[1]
