"""Detection metrics for labels (0 real, 1 fake) and scores p_fake."""

from __future__ import annotations

import math

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
    ids = np.arange(len(labels)) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    n_groups = int(ids.max()) + 1
    rng = np.random.default_rng(seed)
    aucs = []
    for first in range(0, resamples, 100):  # blocks of 100 resamples bound the memory: 100 x n weights
        draws = rng.integers(0, n_groups, size=(min(100, resamples - first), n_groups))
        rows = np.arange(len(draws))[:, None] * n_groups
        counts = np.bincount((rows + draws).ravel(), minlength=draws.size).reshape(draws.shape).astype(np.float64)
        aucs.append(weighted_auc(labels, p_fake, counts[:, ids]))
    values = np.concatenate(aucs)
    values = values[~np.isnan(values)]
    tail = 100 * (1 - level) / 2
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))
