"""Detection metrics for labels (0 real, 1 fake) and scores p_fake.

An image is called fake when ``p_fake >= threshold``. Besides the threshold-free ranking metrics
(AP, ROC-AUC, EER) and the accuracies at one threshold, this module measures what a user of the
detector meets:

- the operating point: :func:`tpr_at_fpr`, the share of fakes caught when at most a given share of
  real images may be called fake;
- calibration: :func:`reliability_curve` and :func:`expected_calibration_error`, whether p_fake
  means what it says (of the images given p_fake near 0.8, about 80% fake);
- abstention: :func:`selective_metrics`, accuracy on the images the detector decided, and how many
  it decided;
- uncertainty of a rate: :func:`clopper_pearson`, the exact binomial interval of a proportion.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

METRIC_NAMES = ("n_real", "n_fake", "real_acc", "fake_acc", "acc", "ap", "auc", "eer", "best_acc", "best_threshold")
FPR_POINTS = {"tpr@fpr1": 0.01, "tpr@fpr5": 0.05, "tpr@fpr10": 0.10}  # name -> false-positive rate
TRUST_METRIC_NAMES = (*FPR_POINTS, "ece")
ECE_BINS = 15


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
    labels: np.ndarray,
    p_fake: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
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
    labels: np.ndarray,
    p_a: np.ndarray,
    p_b: np.ndarray,
    threshold_a: float,
    threshold_b: float,
    groups: np.ndarray | None = None,
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
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
        return dict.fromkeys(
            ("auc_diff", "auc_diff_low", "auc_diff_high", "acc_diff", "acc_diff_low", "acc_diff_high"), math.nan
        )
    right = ((p_a >= threshold_a) == (labels == 1)).astype(np.float64) - ((p_b >= threshold_b) == (labels == 1)).astype(
        np.float64
    )
    auc, acc = [], []
    for w in _resampled_weights(groups, len(labels), resamples, seed):
        auc.append(weighted_auc(labels, p_a, w) - weighted_auc(labels, p_b, w))
        acc.append(w @ right / w.sum(axis=1))
    out = {"auc_diff": float(roc_auc_score(labels, p_a) - roc_auc_score(labels, p_b)), "acc_diff": float(right.mean())}
    out["auc_diff_low"], out["auc_diff_high"] = _percentiles(np.concatenate(auc), level)
    out["acc_diff_low"], out["acc_diff_high"] = _percentiles(np.concatenate(acc), level)
    return out


def _checked(labels: np.ndarray, p_fake: np.ndarray, *, probabilities: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Labels as int64 and scores as float64, both 1-D, checked: one-sentence ValueErrors."""
    labels, p_fake = np.asarray(labels), np.asarray(p_fake, dtype=np.float64)
    if labels.ndim != 1 or labels.shape != p_fake.shape:
        raise ValueError(
            f"labels and p_fake must be 1-D and of one length; got shapes {labels.shape} and {p_fake.shape}."
        )
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake); convert other conventions before scoring.")
    if not np.isfinite(p_fake).all():
        bad = int((~np.isfinite(p_fake)).sum())
        raise ValueError(f"p_fake holds {bad} NaN or infinite values; drop those images first.")
    if probabilities and len(p_fake) and (p_fake.min() < 0 or p_fake.max() > 1):
        raise ValueError(
            f"p_fake must lie in [0, 1] (it spans {p_fake.min():g} to {p_fake.max():g}); pass "
            "probabilities, not logits."
        )
    return labels.astype(np.int64), p_fake


def tpr_at_fpr(labels: np.ndarray, p_fake: np.ndarray, fpr: float) -> float:
    """The share of fakes caught at the best threshold that calls at most ``fpr`` of the reals fake.

    Exact on the empirical ROC: over every threshold (fake when p_fake >= threshold), the highest
    true-positive rate among those whose false-positive rate is <= ``fpr``. A threshold cannot
    split equal scores, so a real and a fake with the same p_fake are called fake together; calling
    nothing fake (rate 0) is always allowed.

    Returns:
        The true-positive rate in [0, 1]; NaN when a class is absent.
    """
    labels, p_fake = _checked(labels, p_fake)
    if not 0 <= fpr <= 1:
        raise ValueError(f"The false-positive rate must be in [0, 1]; got {fpr}.")
    n_real, n_fake = int((labels == 0).sum()), int((labels == 1).sum())
    if not (n_real and n_fake):
        return math.nan
    order = np.argsort(-p_fake, kind="stable")
    s, y = p_fake[order], labels[order]
    cut = np.concatenate([s[:-1] != s[1:], [True]])  # after image i when the next score is lower
    tp, fp = np.cumsum(y == 1)[cut], np.cumsum(y == 0)[cut]
    allowed = fp / n_real <= fpr
    return float(tp[allowed].max() / n_fake) if allowed.any() else 0.0


class ReliabilityCurve(NamedTuple):
    """p_fake against the observed share of fakes, in equal-width bins over [0, 1].

    Empty bins have count 0 and NaN means.
    """

    centers: np.ndarray  # (bins,) bin centres
    mean_predicted: np.ndarray  # (bins,) mean p_fake of the images in each bin
    observed: np.ndarray  # (bins,) share of fakes among them
    counts: np.ndarray  # (bins,) int64, images in each bin


def reliability_curve(labels: np.ndarray, p_fake: np.ndarray, bins: int = ECE_BINS) -> ReliabilityCurve:
    """The reliability curve of p_fake in ``bins`` equal-width bins.

    Bin i holds i/bins <= p_fake < (i+1)/bins (edges up to rounding); p_fake = 1 falls in the last
    bin. Calibration is that of p_fake itself (the predicted chance of fake against the observed
    share of fakes), not of the confidence max(p_fake, 1 - p_fake).

    Raises:
        ValueError: ``bins`` < 1, or p_fake outside [0, 1].
    """
    labels, p_fake = _checked(labels, p_fake, probabilities=True)
    if bins < 1:
        raise ValueError(f"The reliability curve needs at least one bin; got {bins}.")
    index = np.minimum((p_fake * bins).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.bincount(index, weights=p_fake, minlength=bins) / counts
        observed = np.bincount(index, weights=labels.astype(np.float64), minlength=bins) / counts
    return ReliabilityCurve((np.arange(bins) + 0.5) / bins, mean_predicted, observed, counts)


def expected_calibration_error(labels: np.ndarray, p_fake: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of p_fake: the gap between mean p_fake and the share of fakes in
    each bin of :func:`reliability_curve`, averaged over bins weighted by their image counts.

    Returns:
        ECE in [0, 1] (0: calibrated); NaN without images.
    """
    curve = reliability_curve(labels, p_fake, bins)
    n = int(curve.counts.sum())
    if n == 0:
        return math.nan
    full = curve.counts > 0
    return float((curve.counts[full] * np.abs(curve.mean_predicted[full] - curve.observed[full])).sum() / n)


def selective_metrics(
    labels: np.ndarray, p_fake: np.ndarray, decided: np.ndarray, threshold: float
) -> dict[str, float]:
    """Accuracy on the images the detector decided, and how many it decided.

    For a detector that may answer ``uncertain``: ``decided`` marks the images that got a verdict
    (real or fake, by ``p_fake >= threshold``); the others are left out of the accuracies.

    Returns:
        ``coverage`` (share of images decided), ``real_coverage`` and ``fake_coverage`` (of the
        reals, of the fakes), ``n_decided``, ``n_uncertain``, ``n_real_decided``,
        ``n_fake_decided``, and on the decided images ``acc``, ``real_acc`` (reals called real),
        ``fake_acc`` (fakes called fake). A rate without images is NaN.
    """
    labels, p_fake = _checked(labels, p_fake)
    decided = np.asarray(decided)
    if decided.dtype != np.bool_ or decided.shape != labels.shape:
        raise ValueError(
            f"decided must be a boolean mask with one entry per image; got {decided.dtype} of shape {decided.shape}."
        )
    if not 0 <= threshold <= 1:
        raise ValueError(f"The threshold must be in [0, 1]; got {threshold}.")
    real, fake, fake_call = labels == 0, labels == 1, p_fake >= threshold
    right = fake_call == fake

    def share(part: np.ndarray, of: np.ndarray) -> float:
        return float(part[of].mean()) if of.any() else math.nan

    return {
        "coverage": share(decided, np.ones_like(decided)),
        "real_coverage": share(decided, real),
        "fake_coverage": share(decided, fake),
        "n_decided": int(decided.sum()),
        "n_uncertain": int((~decided).sum()),
        "n_real_decided": int((decided & real).sum()),
        "n_fake_decided": int((decided & fake).sum()),
        "acc": share(right, decided),
        "real_acc": share(right, decided & real),
        "fake_acc": share(right, decided & fake),
    }


def trust_metrics(labels: np.ndarray, p_fake: np.ndarray) -> dict[str, float]:
    """:data:`TRUST_METRIC_NAMES`: the true-positive rate at each false-positive rate of
    :data:`FPR_POINTS` (NaN when a class is absent) and the ECE in :data:`ECE_BINS` bins."""
    out = {name: tpr_at_fpr(labels, p_fake, fpr) for name, fpr in FPR_POINTS.items()}
    out["ece"] = expected_calibration_error(labels, p_fake, ECE_BINS)
    return out


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes
    6.4); it converges fast for x < (a + 1) / (a + b + 2), in about sqrt(max(a, b)) steps."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1_000_000):
        even = m * (b - m) * x / ((a - 1 + 2 * m) * (a + 2 * m))
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 1 + 2 * m))
        for aa in (even, odd):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            return h
    raise ArithmeticError(f"The incomplete beta function did not converge for a={a}, b={b}, x={x}.")


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function (the Beta(a, b) distribution function at
    x), for a, b > 0 and x in [0, 1]; relative accuracy about 1e-13."""
    if not (a > 0 and b > 0):
        raise ValueError(f"The beta function needs a > 0 and b > 0; got a={a}, b={b}.")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def beta_quantile(q: float, a: float, b: float) -> float:
    """The q-quantile of Beta(a, b): the x with I_x(a, b) = q, by bisection to 2^-64 (absolute)."""
    lo, hi = 0.0, 1.0
    for _ in range(64):
        mid = (lo + hi) / 2
        if regularized_beta(a, b, mid) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def clopper_pearson(successes: int, trials: int, *, level: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) binomial interval of a proportion ``successes / trials``.

    Its bounds are the Beta(k, n - k + 1) and Beta(k + 1, n - k) quantiles at (1 - level) / 2 and
    (1 + level) / 2 (0 and 1 at k = 0 and k = n). It covers the true proportion with a probability of
    at least ``level`` whatever that proportion, so it is conservative (often wider than needed).

    Returns:
        (low, high); NaNs when ``trials`` is 0.
    """
    k, n = int(successes), int(trials)
    if not 0 <= k <= n:
        raise ValueError(f"A proportion needs 0 <= successes <= trials; got {k} of {n}.")
    if not 0 < level < 1:
        raise ValueError(f"The interval's level must be in (0, 1); got {level}.")
    if n == 0:
        return math.nan, math.nan
    tail = (1 - level) / 2
    low = 0.0 if k == 0 else beta_quantile(tail, k, n - k + 1)
    high = 1.0 if k == n else beta_quantile(1 - tail, k + 1, n - k)
    return low, high
