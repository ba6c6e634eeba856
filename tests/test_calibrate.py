"""Thresholds for a false-positive rate, their intervals, and temperature scaling."""

import logging
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ssp_detect.engine.calibrate import (
    CalibrationError,
    ThresholdChoice,
    apply_temperature,
    choose_threshold,
    choose_threshold_for,
    fit_temperature,
    threshold_for_fpr,
)
from ssp_detect.engine.metrics import expected_calibration_error, tpr_at_fpr


def test_threshold_for_a_target_fpr_on_a_small_example():
    labels = np.array([0] * 10 + [1] * 5)
    p = np.concatenate([np.linspace(0.0, 0.9, 10), [0.65, 0.75, 0.85, 0.95, 0.95]])
    c = choose_threshold_for(labels, p, target_fpr=0.2)  # at most 2 of the 10 reals (0.8, 0.9) may be called fake
    assert c.threshold == np.nextafter(p[7], 1.0)  # the smallest value above the third-highest real, 0.7
    assert (c.method, c.target_fpr, c.n_real, c.n_fake) == ("target-fpr", 0.2, 10, 5)
    assert c.fpr == 0.2 and c.tpr == 0.8  # 0.65 is missed
    assert (c.fpr_low, c.fpr_high) == pytest.approx((0.02521073, 0.55609546), abs=1e-8)  # R: binom.test(2, 10)$conf.int
    assert c.threshold == choose_threshold(labels, p, target_fpr=0.2)
    d = c.to_dict()
    assert list(d) == ["threshold", "target_fpr", "n_real", "n_fake", "fpr", "fpr_low", "fpr_high", "tpr", "method"]
    assert d["fpr"] == 0.2
    with pytest.raises(AttributeError):
        c.threshold = 0.5  # frozen
    assert isinstance(c, ThresholdChoice)


def test_reals_tied_at_the_threshold_count_as_fake():
    labels = np.array([0, 0, 0, 0, 1])
    p = np.array([0.5, 0.5, 0.5, 0.1, 0.6])
    # Two of four reals may be called fake, but three share 0.5: the threshold must pass all three.
    c = choose_threshold_for(labels, p, target_fpr=0.5)
    assert c.threshold == np.nextafter(0.5, 1.0) and c.fpr == 0.0 and c.tpr == 1.0
    assert choose_threshold_for(labels, p, target_fpr=0.8).threshold == np.nextafter(0.1, 1.0)  # three may pass: 0.5 x3
    # float32 scores: the step is a float32 step, so it still separates the scores when compared in float32.
    p32 = np.array([0.3, 0.7, 0.2, 0.9], dtype=np.float32)
    t = choose_threshold_for(np.array([0, 0, 1, 1]), p32, target_fpr=0.5).threshold
    assert t == float(np.nextafter(np.float32(0.3), np.float32(1))) and not (p32[0] >= t) and (p32[1] >= t)


def test_best_accuracy_threshold():
    labels = np.array([0] * 10 + [1] * 5)
    p = np.concatenate([np.linspace(0.0, 0.9, 10), [0.95] * 5])
    c = choose_threshold_for(labels, p)
    assert c.method == "best-accuracy" and c.target_fpr is None
    assert c.threshold == pytest.approx((0.9 + 0.95) / 2) == choose_threshold(labels, p)
    assert c.fpr == 0.0 and c.tpr == 1.0 and c.fpr_low == 0.0 and c.fpr_high == pytest.approx(1 - 0.025 ** (1 / 10))


@pytest.mark.parametrize(
    ("labels", "p_fake", "target", "message"),
    [
        ([0, 1], [0.2, 0.8], 0.0, "between 0 and 1"),
        ([0, 1], [0.2, 0.8], 1.0, "between 0 and 1"),
        ([0, 1], [0.2, 0.8], 5, "between 0 and 1"),
        ([0, 1], [0.2, 1.3], 0.1, r"in \[0, 1\]"),
        ([0, 1], [0.2, math.nan], 0.1, r"in \[0, 1\]"),
        ([1, 1], [0.2, 0.8], 0.1, "needs real images"),
        ([0, 2], [0.2, 0.8], 0.1, "must be 0 .real. or 1"),
        ([0, 1, 0], [0.2, 0.8], 0.1, "of one length"),
        ([0, 0, 0, 1], [1.0, 1.0, 0.2, 0.9], 0.4, "2 of 3 real images score p_fake = 1"),
        ([0, 0], [0.2, 0.8], None, "needs real and fake images"),
        ([0, 1], [1.0, 0.5], None, "calls nothing fake"),
    ],
)
def test_impossible_requests_are_one_sentence(labels, p_fake, target, message):
    with pytest.raises(CalibrationError, match=message) as err:
        choose_threshold_for(np.array(labels), np.array(p_fake), target_fpr=target)
    assert isinstance(err.value, ValueError) and str(err.value).count(". ") == 0 and str(err.value).endswith(".")


def test_the_older_function_refuses_a_rate_outside_0_to_1():
    # threshold_for_fpr keeps accepting 0 (no real called fake), but 5 (meant as 5%?) is refused.
    with pytest.raises(CalibrationError, match=r"in \[0, 1\]; got 5"):
        threshold_for_fpr(np.array([0, 1]), np.array([0.2, 0.8]), 5)


def test_the_threshold_keeps_its_fpr_on_fresh_images():
    # Reals uniform on [0, 1]: a threshold t has a true FPR of 1 - t. Fakes uniform on [0.5, 1].
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 1000)
    p = np.concatenate([rng.random(1000), rng.uniform(0.5, 1.0, 1000)])
    c = choose_threshold_for(labels, p, target_fpr=0.05)
    assert c.fpr == 0.05 and 0.93 < c.threshold < 0.97
    assert c.fpr_low < 1 - c.threshold < c.fpr_high  # the true rate is inside the interval
    fresh = rng.random(200_000)
    assert c.fpr_low < (fresh >= c.threshold).mean() < c.fpr_high
    assert c.tpr == tpr_at_fpr(labels, p, 0.05)  # the smallest threshold keeping the rate catches the most fakes
    assert abs(c.tpr - 2 * (1 - c.threshold)) < 0.03  # the fakes' true rate above t, within sampling noise


def test_the_interval_covers_the_true_fpr_of_the_chosen_threshold():
    # Over many calibration sets of 200 reals, the true FPR of the chosen threshold (1 - t for
    # uniform reals) is inside the 95% interval at least 95% of the time, up to simulation noise.
    rng = np.random.default_rng(1)
    labels = np.concatenate([np.zeros(200, dtype=int), [1]])
    covered = []
    for _ in range(300):
        c = choose_threshold_for(labels, np.append(rng.random(200), 0.5), target_fpr=0.05)
        covered.append(c.fpr_low <= 1 - c.threshold <= c.fpr_high)
    assert np.mean(covered) >= 0.93


def overconfident(rng, n=20_000, scale=4.0):
    """Labels drawn from a logistic model with true logit z, and the logits a model that is
    ``scale`` times too sure would give."""
    z = rng.normal(0, 1.5, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return scale * z, labels


def test_temperature_undoes_overconfidence():
    logits, labels = overconfident(np.random.default_rng(2))
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(4.0, abs=0.3)
    before = expected_calibration_error(labels, apply_temperature(logits, 1.0))
    after = expected_calibration_error(labels, apply_temperature(logits, t))
    assert before > 0.08 and after < before / 5
    assert roc_auc_score(labels, apply_temperature(logits, t)) == roc_auc_score(labels, logits)  # ranking unchanged

    def nll(temperature):
        p = np.clip(apply_temperature(logits, temperature), 1e-12, 1 - 1e-12)
        return -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))

    assert nll(t) < nll(t * 1.01) and nll(t) < nll(t / 1.01)  # the minimum, not just near it


def test_calibrated_logits_keep_a_temperature_of_one():
    logits, labels = overconfident(np.random.default_rng(3), scale=1.0)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.08)


def test_temperature_is_clamped_when_no_finite_one_is_best(caplog):
    with caplog.at_level(logging.WARNING, logger="ssp_detect.engine.calibrate"):
        assert fit_temperature(np.array([-3.0, -2.0, 2.0, 3.0]), np.array([0, 0, 1, 1])) == 0.05  # separable
        assert fit_temperature(np.array([1.0, 2.0]), np.array([1, 1])) == 0.05  # one class, all on its side
        wrong_way = np.array([3.0, 1.0, -1.0, -3.0])
        assert fit_temperature(wrong_way, np.array([0, 0, 1, 1])) == 100.0
    assert caplog.text.count("clamped") == 3
    with pytest.raises(CalibrationError, match="NaN or infinite"):
        fit_temperature(np.array([0.0, math.inf]), np.array([0, 1]))
    with pytest.raises(CalibrationError, match="non-empty"):
        fit_temperature(np.array([]), np.array([]))


def test_apply_temperature():
    logits = np.array([[-1e4, -2.0], [0.0, 3.0], [1e4, 8.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # none at extreme logits
        p = apply_temperature(logits, 2.0)
    assert p.shape == (3, 2) and p.dtype == np.float64
    np.testing.assert_allclose(p[:, 1], 1 / (1 + np.exp(-logits[:, 1] / 2)), rtol=1e-15)
    assert p[0, 0] == 0.0 and p[2, 0] == 1.0 and p[1, 0] == 0.5
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(CalibrationError, match="positive number"):
            apply_temperature(logits, bad)
