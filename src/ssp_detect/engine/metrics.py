"""Detection metrics for labels (0 real, 1 fake) and scores p_fake."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

METRIC_NAMES = ("n_real", "n_fake", "real_acc", "fake_acc", "acc", "ap", "auc", "eer", "best_acc", "best_threshold")


def equal_error_rate(labels: np.ndarray, p_fake: np.ndarray) -> float:
    """The error rate where false-positive and false-negative rates meet: the mean of the two at
    the ROC point where they are closest."""
    fpr, tpr, _ = roc_curve(labels, p_fake, drop_intermediate=False)
    fnr = 1 - tpr
    i = int(np.argmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2)


def best_threshold_accuracy(labels: np.ndarray, p_fake: np.ndarray) -> tuple[float, float]:
    """The highest accuracy over all thresholds and the threshold (midpoint) achieving it."""
    order = np.argsort(-p_fake, kind="stable")
    s, y = p_fake[order], labels[order]
    n_real = int((labels == 0).sum())
    # Predict fake for the first k (k = 0..n): accuracy = (TP(k) + TN(k)) / n.
    tp = np.concatenate([[0], np.cumsum(y == 1)])
    fp = np.concatenate([[0], np.cumsum(y == 0)])
    valid = np.concatenate([[True], s[:-1] != s[1:], [True]])  # cut only between distinct scores
    acc = (tp + (n_real - fp)) / len(y)
    acc = np.where(valid, acc, -1)
    k = int(np.argmax(acc))
    if k == 0:
        thr = float(s[0]) + 1e-6
    elif k == len(s):
        thr = float(s[-1])
    else:
        thr = float((s[k - 1] + s[k]) / 2)
    return float(acc[k]), thr


def binary_metrics(labels: np.ndarray, p_fake: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy on real, on fake and overall at ``threshold`` (fake when p_fake >= threshold),
    average precision and ROC-AUC for fake as the positive class, equal error rate, and the best
    accuracy over thresholds with its threshold. Metrics that need both classes are NaN when one
    class is absent."""
    labels = np.asarray(labels, dtype=np.int64)
    p_fake = np.asarray(p_fake, dtype=np.float64)
    pred = p_fake >= threshold
    real, fake = labels == 0, labels == 1
    out: dict[str, float] = {
        "n_real": int(real.sum()),
        "n_fake": int(fake.sum()),
        "real_acc": float((~pred[real]).mean()) if real.any() else math.nan,
        "fake_acc": float(pred[fake].mean()) if fake.any() else math.nan,
        "acc": float((pred == fake).mean()) if len(labels) else math.nan,
    }
    if real.any() and fake.any():
        out["ap"] = float(average_precision_score(labels, p_fake))
        out["auc"] = float(roc_auc_score(labels, p_fake))
        out["eer"] = equal_error_rate(labels, p_fake)
        out["best_acc"], out["best_threshold"] = best_threshold_accuracy(labels, p_fake)
    else:
        out |= {"ap": math.nan, "auc": math.nan, "eer": math.nan, "best_acc": math.nan, "best_threshold": math.nan}
    return out


def weighted_auc(labels: np.ndarray, p_fake: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC-AUC of each row of ``weights`` (R, n): the AUC of the sample in which image i appears
    ``weights[r, i]`` times (ties count one half). NaN for a row without both classes."""
    order = np.argsort(p_fake, kind="stable")
    s, y, w = p_fake[order], labels[order] == 1, weights[:, order]
    start, end = np.searchsorted(s, s, "left"), np.searchsorted(s, s, "right")  # each score's tie block
    below = np.concatenate([np.zeros((len(w), 1)), np.cumsum(w * ~y, axis=1)], axis=1)
    beaten = below[:, start] + 0.5 * (below[:, end] - below[:, start])  # negatives under each image
    n_pos, n_neg = (w * y).sum(axis=1), (w * ~y).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), (w * y * beaten).sum(axis=1) / (n_pos * n_neg), np.nan)


def _resampled_weights(groups: np.ndarray | None, n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks of bootstrap weights (at most 100 resamples x n images): how many times each image
    is drawn when whole groups are drawn with replacement (every image its own group without
    ``groups``). Blocks bound the memory; the draws are fixed by the seed."""
    ids = np.arange(n) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    n_groups = int(ids.max()) + 1
    rng = np.random.default_rng(seed)
    for first in range(0, resamples, 100):
        draws = rng.integers(0, n_groups, size=(min(100, resamples - first), n_groups))
        rows = np.arange(len(draws))[:, None] * n_groups
        counts = np.bincount((rows + draws).ravel(), minlength=draws.size).reshape(draws.shape).astype(np.float64)
        yield counts[:, ids]


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    tail = 100 * (1 - level) / 2
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def auc_interval(
    labels: np.ndarray, p_fake: np.ndarray, groups: np.ndarray | None = None, *, resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the ROC-AUC.

    Resamples whole groups with replacement (a cluster bootstrap): images that are not independent,
    such as crops of one photo and the fakes made from them, share a group and are drawn together,
    so the interval is not made narrower by counting one photo many times. Without ``groups`` every
    image is its own group. Deterministic for a seed.

    Returns:
        (low, high), or NaNs when a class is absent.
    """
    labels = np.asarray(labels, dtype=np.int64)
    p_fake = np.asarray(p_fake, dtype=np.float64)
    if not ((labels == 0).any() and (labels == 1).any()):
        return math.nan, math.nan
    values = [weighted_auc(labels, p_fake, w) for w in _resampled_weights(groups, len(labels), resamples, seed)]
    return _percentiles(np.concatenate(values), level)


def paired_difference(
    labels: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, threshold_a: float, threshold_b: float, groups: np.ndarray | None = None, *,
    resamples: int = 1000, level: float = 0.95, seed: int = 0,
) -> dict[str, float]:
    """Detector A minus detector B on the same images, with paired bootstrap intervals.

    Both detectors are scored on each resample of the images (whole groups drawn together, as in
    :func:`auc_interval`), so what the images have in common cancels out and the interval is that
    of the difference itself.

    Returns:
        ``auc_diff``, ``auc_diff_low``, ``auc_diff_high``, ``acc_diff``, ``acc_diff_low``,
        ``acc_diff_high`` (accuracy at each detector's own threshold); NaNs when a class is absent.
    """
    labels = np.asarray(labels, dtype=np.int64)
    p_a, p_b = np.asarray(p_a, dtype=np.float64), np.asarray(p_b, dtype=np.float64)
    if not ((labels == 0).any() and (labels == 1).any()):
        return dict.fromkeys(("auc_diff", "auc_diff_low", "auc_diff_high", "acc_diff", "acc_diff_low", "acc_diff_high"), math.nan)
    right = ((p_a >= threshold_a) == (labels == 1)).astype(np.float64) - ((p_b >= threshold_b) == (labels == 1)).astype(np.float64)
    auc, acc = [], []
    for w in _resampled_weights(groups, len(labels), resamples, seed):
        auc.append(weighted_auc(labels, p_a, w) - weighted_auc(labels, p_b, w))
        acc.append(w @ right / w.sum(axis=1))
    out = {"auc_diff": float(roc_auc_score(labels, p_a) - roc_auc_score(labels, p_b)), "acc_diff": float(right.mean())}
    out["auc_diff_low"], out["auc_diff_high"] = _percentiles(np.concatenate(auc), level)
    out["acc_diff_low"], out["acc_diff_high"] = _percentiles(np.concatenate(acc), level)
    return out
