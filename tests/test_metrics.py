import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ssp_detect.engine.calibrate import choose_threshold, threshold_for_fpr
from ssp_detect.engine.metrics import (
    auc_interval,
    best_threshold_accuracy,
    binary_metrics,
    equal_error_rate,
    paired_difference,
    weighted_auc,
)


def test_hand_computed_metrics():
    labels = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.4, 0.6, 0.3, 0.7, 0.9])
    m = binary_metrics(labels, p, 0.5)
    assert m["real_acc"] == pytest.approx(2 / 3) and m["fake_acc"] == pytest.approx(2 / 3) and m["acc"] == pytest.approx(4 / 6)
    assert m["auc"] == pytest.approx(roc_auc_score(labels, p)) == pytest.approx(7 / 9)
    assert m["eer"] == pytest.approx(1 / 3)
    assert m["best_acc"] == pytest.approx(5 / 6) and 0.6 < m["best_threshold"] <= 0.7  # call the top two fake


def test_best_threshold_separates_perfectly():
    labels = np.array([0, 0, 1, 1])
    p = np.array([0.61, 0.62, 0.8, 0.9])
    acc, t = best_threshold_accuracy(labels, p)
    assert acc == 1.0 and 0.62 < t <= 0.8
    assert binary_metrics(labels, p, 0.5)["acc"] == 0.5  # everything called fake at 0.5
    assert equal_error_rate(labels, p) == 0.0


def test_single_class_gives_nan_not_a_crash():
    m = binary_metrics(np.array([1, 1]), np.array([0.2, 0.9]))
    assert m["fake_acc"] == 0.5 and math.isnan(m["auc"]) and math.isnan(m["real_acc"])


def test_threshold_for_target_fpr():
    labels = np.array([0] * 10 + [1] * 5)
    p = np.concatenate([np.linspace(0.0, 0.9, 10), [0.95] * 5])
    t = threshold_for_fpr(labels, p, 0.2)  # at most 2 of 10 reals may score >= t
    assert ((p[:10] >= t).sum()) == 2 and (p[10:] >= t).all()
    t0 = threshold_for_fpr(labels, p, 0.0)
    assert (p[:10] >= t0).sum() == 0
    assert choose_threshold(labels, p) == pytest.approx((0.9 + 0.95) / 2)


def test_weighted_auc_is_the_auc_of_the_repeated_sample(rng):
    labels = rng.integers(0, 2, 200)
    p_fake = np.round(rng.random(200) + 0.3 * labels, 1)  # many ties
    weights = rng.integers(0, 4, (6, 200)).astype(float)
    expected = [roc_auc_score(np.repeat(labels, w.astype(int)), np.repeat(p_fake, w.astype(int))) for w in weights]
    np.testing.assert_allclose(weighted_auc(labels, p_fake, weights), expected, rtol=0, atol=1e-12)
    only_fakes = (labels == 1).astype(float)[None]
    assert np.isnan(weighted_auc(labels, p_fake, only_fakes)[0])


def test_auc_interval_resamples_groups_together(rng):
    labels = np.repeat([0, 1], 30)
    p_fake = rng.random(60) + 0.4 * labels
    low, high = auc_interval(labels, p_fake, seed=3)
    assert low < roc_auc_score(labels, p_fake) < high and high - low < 0.4
    assert auc_interval(labels, p_fake, seed=3) == (low, high)  # deterministic for a seed
    # Every image three times over: drawn as groups, the interval is the one of the original images
    # (the same draws, group for group); drawn one by one, it is falsely narrower.
    tripled = (np.repeat(labels, 3), np.repeat(p_fake, 3))
    assert auc_interval(*tripled, np.repeat(np.arange(60), 3), seed=3) == pytest.approx((low, high), abs=1e-12)
    narrow_low, narrow_high = auc_interval(*tripled, seed=3)
    assert narrow_high - narrow_low < 0.75 * (high - low)
    assert all(math.isnan(v) for v in auc_interval(np.zeros(5), rng.random(5)))


def test_paired_difference_cancels_what_both_detectors_share(rng):
    labels = np.repeat([0, 1], 40)
    p_a = rng.random(80) + 0.5 * labels
    p_b = p_a + rng.normal(0, 0.05, 80)  # nearly the same detector
    d = paired_difference(labels, p_a, p_b, 0.75, 0.75, seed=1)
    assert d["auc_diff"] == pytest.approx(roc_auc_score(labels, p_a) - roc_auc_score(labels, p_b))
    assert d["acc_diff"] == pytest.approx(((p_a >= 0.75) == labels).mean() - ((p_b >= 0.75) == labels).mean())
    assert d["auc_diff_low"] <= d["auc_diff"] <= d["auc_diff_high"] and d["acc_diff_low"] <= d["acc_diff"] <= d["acc_diff_high"]
    low, high = auc_interval(labels, p_a, seed=1)
    assert d["auc_diff_high"] - d["auc_diff_low"] < 0.5 * (high - low)  # narrower than either AUC's own interval
    same = paired_difference(labels, p_a, p_a, 0.5, 0.5)
    assert all(v == 0.0 for v in same.values())
    assert all(math.isnan(v) for v in paired_difference(np.ones(4), p_a[:4], p_b[:4], 0.5, 0.5).values())
