import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from ssp_detect.engine.calibrate import choose_threshold, threshold_for_fpr
from ssp_detect.engine.metrics import (
    TRUST_METRIC_NAMES,
    auc_interval,
    best_threshold_accuracy,
    beta_quantile,
    binary_metrics,
    clopper_pearson,
    equal_error_rate,
    expected_calibration_error,
    paired_difference,
    regularized_beta,
    reliability_curve,
    selective_metrics,
    tpr_at_fpr,
    trust_metrics,
    weighted_auc,
)


def test_hand_computed_metrics():
    labels = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.4, 0.6, 0.3, 0.7, 0.9])
    m = binary_metrics(labels, p, 0.5)
    assert (
        m["real_acc"] == pytest.approx(2 / 3)
        and m["fake_acc"] == pytest.approx(2 / 3)
        and m["acc"] == pytest.approx(4 / 6)
    )
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
    assert (
        d["auc_diff_low"] <= d["auc_diff"] <= d["auc_diff_high"]
        and d["acc_diff_low"] <= d["acc_diff"] <= d["acc_diff_high"]
    )
    low, high = auc_interval(labels, p_a, seed=1)
    assert d["auc_diff_high"] - d["auc_diff_low"] < 0.5 * (high - low)  # narrower than either AUC's own interval
    same = paired_difference(labels, p_a, p_a, 0.5, 0.5)
    assert all(v == 0.0 for v in same.values())
    assert all(math.isnan(v) for v in paired_difference(np.ones(4), p_a[:4], p_b[:4], 0.5, 0.5).values())


def test_tpr_at_fpr_on_small_examples():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.8, 0.4, 0.7, 0.9, 0.95])
    assert tpr_at_fpr(labels, p, 0.0) == 0.5  # above the top real, 0.8: 0.9 and 0.95
    assert tpr_at_fpr(labels, p, 0.24) == 0.5
    assert tpr_at_fpr(labels, p, 0.25) == 1.0  # one real may pass: down to 0.4, above the next real, 0.3
    # A real and a fake tied at 0.5 cannot be separated: catching that fake costs the real too.
    tied = np.array([0, 0, 1, 1]), np.array([0.5, 0.1, 0.5, 0.9])
    assert tpr_at_fpr(*tied, 0.49) == 0.5 and tpr_at_fpr(*tied, 0.5) == 1.0
    assert tpr_at_fpr(np.array([0, 1]), np.array([0.9, 0.1]), 0.0) == 0.0  # calling nothing fake is always allowed
    assert math.isnan(tpr_at_fpr(np.array([1, 1]), np.array([0.2, 0.3]), 0.1))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        tpr_at_fpr(labels, p, 5)


def test_tpr_at_fpr_is_read_off_the_roc_curve(rng):
    labels = rng.integers(0, 2, 500)
    p_fake = np.round(rng.random(500) * 0.7 + 0.3 * labels, 2)  # many ties
    fpr, tpr, _ = roc_curve(labels, p_fake, drop_intermediate=False)
    for target in (0.0, 0.01, 0.05, 0.1, 0.37, 1.0):
        assert tpr_at_fpr(labels, p_fake, target) == tpr[fpr <= target].max()


def test_reliability_curve_and_ece_by_hand():
    labels = np.array([0, 0, 1, 1, 1])
    p = np.array([0.05, 0.15, 0.15, 0.95, 1.0])
    curve = reliability_curve(labels, p, bins=10)
    np.testing.assert_allclose(curve.centers, np.arange(0.05, 1, 0.1))
    assert curve.counts.tolist() == [1, 1 + 1, 0, 0, 0, 0, 0, 0, 0, 2]  # p_fake = 1 falls in the last bin
    assert curve.mean_predicted[1] == pytest.approx(0.15) and curve.observed[1] == 0.5 and curve.observed[9] == 1.0
    assert math.isnan(curve.mean_predicted[4]) and math.isnan(curve.observed[4])
    # Gaps 0.05 (1 image), 0.35 (2 images), 0.025 (2 images), weighted by count.
    assert expected_calibration_error(labels, p, bins=10) == pytest.approx((0.05 + 2 * 0.35 + 2 * 0.025) / 5)
    assert expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0
    assert math.isnan(expected_calibration_error(np.array([], dtype=int), np.array([])))
    with pytest.raises(ValueError, match="pass probabilities, not logits"):
        expected_calibration_error(labels, p * 3)


def test_ece_tells_calibrated_from_overconfident_scores(rng):
    p_true = rng.random(20_000)
    labels = (rng.random(20_000) < p_true).astype(int)
    assert expected_calibration_error(labels, p_true) < 0.015
    sharpened = np.where(p_true >= 0.5, 1 - (1 - p_true) ** 3 / 0.25, p_true**3 / 0.25)  # pushed towards 0 and 1
    assert expected_calibration_error(labels, sharpened) > 0.08


def test_selective_metrics_count_only_decided_images():
    labels = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.45, 0.9, 0.55, 0.8, 0.2])
    decided = np.array([True, False, True, False, True, True])
    m = selective_metrics(labels, p, decided, 0.5)
    assert m["coverage"] == pytest.approx(4 / 6)
    assert m["real_coverage"] == pytest.approx(2 / 3) and m["fake_coverage"] == pytest.approx(2 / 3)
    assert (m["n_decided"], m["n_uncertain"], m["n_real_decided"], m["n_fake_decided"]) == (4, 2, 2, 2)
    assert m["acc"] == 0.5 and m["real_acc"] == 0.5 and m["fake_acc"] == 0.5  # 0.1 and 0.8 right, 0.9 and 0.2 wrong
    everything = selective_metrics(labels, p, np.ones(6, dtype=bool), 0.5)
    binary = binary_metrics(labels, p, 0.5)
    assert all(everything[k] == binary[k] for k in ("acc", "real_acc", "fake_acc")) and everything["coverage"] == 1.0
    nothing = selective_metrics(labels, p, np.zeros(6, dtype=bool), 0.5)
    assert nothing["coverage"] == 0.0 and math.isnan(nothing["acc"]) and nothing["n_uncertain"] == 6
    with pytest.raises(ValueError, match="boolean mask"):
        selective_metrics(labels, p, np.ones(6), 0.5)
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]"):
        selective_metrics(labels, p, decided, 1.5)


def test_trust_metrics_names():
    labels, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9])
    m = trust_metrics(labels, p)
    assert tuple(m) == TRUST_METRIC_NAMES == ("tpr@fpr1", "tpr@fpr5", "tpr@fpr10", "ece")
    assert m["tpr@fpr5"] == 0.5 and m["ece"] == expected_calibration_error(labels, p, 15)


def test_clopper_pearson_known_values():
    assert clopper_pearson(5, 10) == pytest.approx((0.1870860, 0.8129140), abs=1e-7)  # R: binom.test(5, 10)$conf.int
    assert clopper_pearson(0, 10) == (0.0, pytest.approx(1 - 0.025 ** (1 / 10), rel=1e-12))  # (1 - high)^n = 0.025
    assert clopper_pearson(10, 10) == (pytest.approx(0.025 ** (1 / 10), rel=1e-12), 1.0)
    # The lower bound at k = 1 is a quantile of Beta(1, n), whose distribution function is 1 - (1 - x)^n.
    assert clopper_pearson(1, 1000, level=0.9)[0] == pytest.approx(1 - 0.95 ** (1 / 1000), rel=1e-10)
    assert all(math.isnan(v) for v in clopper_pearson(0, 0))
    with pytest.raises(ValueError, match="0 <= successes <= trials"):
        clopper_pearson(3, 2)
    assert regularized_beta(1, 1, 0.3) == pytest.approx(0.3, rel=1e-14)  # Beta(1, 1) is uniform
    # I_x(2, 3) = P(Binomial(4, x) >= 2) = 1 - 0.6^4 - 4 * 0.4 * 0.6^3 at x = 0.4.
    assert regularized_beta(2, 3, 0.4) == pytest.approx(0.5248, rel=1e-13)
    assert beta_quantile(0.5, 3.0, 3.0) == pytest.approx(0.5, abs=1e-15)


def test_incomplete_beta_matches_scipy():
    special = pytest.importorskip("scipy.special")
    for a, b in [(0.5, 0.5), (1, 20), (30, 970), (2.5, 1e4), (5000, 95000)]:
        for x in (1e-6, 0.01, 0.03, 0.05, 0.3, 0.5, 0.99):
            assert regularized_beta(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-9, abs=1e-300)
        for q in (0.025, 0.5, 0.975):
            assert beta_quantile(q, a, b) == pytest.approx(special.betaincinv(a, b, q), rel=1e-9)
