"""Choosing a decision threshold, and calibrating p_fake, on labelled data (0 real, 1 fake).

Thresholds. An image is called fake when ``p_fake >= threshold``. For a target false-positive
rate (FPR, the share of real images called fake), the threshold is the smallest value at which at
most ``target_fpr`` of the reals score at or above it: reals scoring exactly the threshold count as
called fake, so the threshold sits one floating-point step above the highest real score that must
be excluded (in the dtype of the scores given). Being the smallest such value, it catches as many
fakes as any threshold that keeps the FPR. The FPR it reaches on the calibration images comes with
its Clopper-Pearson 95% interval (:func:`~ssp_detect.engine.metrics.clopper_pearson`): on new real
images like these, the rate stays within that interval with at least 95% confidence.

Temperature. A model that is right but over-confident gives p_fake near 0 or 1 too often. Temperature
scaling divides the logit by one number T > 0 fitted on held-out labelled data, p_fake =
sigmoid(logit / T): T > 1 softens, T < 1 sharpens. It leaves the ranking, and so AUC and TPR at any
FPR, unchanged; only the probabilities, and the threshold that a given probability means, move.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from ssp_detect.engine.metrics import best_threshold_accuracy, clopper_pearson
from ssp_detect.errors import SSPError

log = logging.getLogger(__name__)

TEMPERATURE_RANGE = (0.05, 100.0)


class CalibrationError(SSPError, ValueError):
    """Labelled data or a setting that cannot give the requested threshold or temperature."""


def threshold_for_fpr(labels: np.ndarray, p_fake: np.ndarray, target_fpr: float) -> float:
    """The lowest threshold whose false-positive rate on the real images is at most ``target_fpr``
    (real images called fake), so that as many fakes as possible are caught."""
    if not 0 <= target_fpr <= 1:
        raise CalibrationError(f"The target false-positive rate must be in [0, 1]; got {target_fpr}.")
    real = np.sort(np.asarray(p_fake)[np.asarray(labels) == 0])[::-1]
    if len(real) == 0:
        raise CalibrationError("Calibration for a false-positive rate needs real images.")
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


@dataclass(frozen=True)
class ThresholdChoice:
    """A decision threshold and what it does on the labelled images it was chosen on.

    Attributes:
        threshold: Call an image fake when p_fake >= threshold; in [0, 1].
        target_fpr: The false-positive rate asked for; None when chosen for best accuracy.
        n_real: Real images it was chosen on.
        n_fake: Fake images it was chosen on.
        fpr: Share of those reals called fake at the threshold.
        fpr_low: Lower bound of the 95% Clopper-Pearson interval of ``fpr``.
        fpr_high: Upper bound of that interval: the false-positive rate to promise.
        tpr: Share of those fakes called fake (NaN without fakes).
        method: ``target-fpr`` or ``best-accuracy``.
    """

    threshold: float
    target_fpr: float | None
    n_real: int
    n_fake: int
    fpr: float
    fpr_low: float
    fpr_high: float
    tpr: float
    method: Literal["target-fpr", "best-accuracy"]

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for JSON or a checkpoint's ``calibration``)."""
        return asdict(self)


def _labelled_scores(labels: np.ndarray, p_fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and p_fake checked for calibration; p_fake keeps a float dtype it has (float32 stays
    float32), so that the threshold is one step above a score in the precision it is compared in."""
    labels, p_fake = np.asarray(labels), np.asarray(p_fake)
    if labels.ndim != 1 or labels.shape != p_fake.shape:
        raise CalibrationError(
            f"labels and p_fake must be 1-D and of one length; got shapes {labels.shape} and {p_fake.shape}."
        )
    if not np.isin(labels, (0, 1)).all():
        raise CalibrationError("labels must be 0 (real) or 1 (fake); convert other conventions before calibrating.")
    if not np.issubdtype(p_fake.dtype, np.floating):
        p_fake = p_fake.astype(np.float64)
    if not np.isfinite(p_fake).all() or (len(p_fake) and (p_fake.min() < 0 or p_fake.max() > 1)):
        raise CalibrationError(
            "p_fake must be probabilities in [0, 1] without NaN; pass sigmoid(logit), not the logit."
        )
    return labels.astype(np.int64), p_fake


def choose_threshold_for(labels: np.ndarray, p_fake: np.ndarray, *, target_fpr: float | None = None) -> ThresholdChoice:
    """Choose a threshold on labelled images, for a false-positive rate or for accuracy.

    Args:
        labels: 0 real, 1 fake, one per image.
        p_fake: Scores in [0, 1], one per image.
        target_fpr: The largest share of real images that may be called fake, in [0, 1): the
            threshold is the smallest at which at most that share of the reals score at or above it
            (see the module docstring). None: the threshold of best accuracy (needs both classes).

    Returns:
        The threshold with the FPR it reaches on these reals, that rate's 95% interval, and the
        share of fakes it catches.

    Raises:
        CalibrationError: A target outside (0, 1), missing real (or, for accuracy, fake) images,
            scores outside [0, 1], or no threshold in [0, 1] that gives the requested choice (reals
            at p_fake = 1).
    """
    labels, p_fake = _labelled_scores(labels, p_fake)
    real, fake = p_fake[labels == 0], p_fake[labels == 1]
    if target_fpr is not None:
        if not 0 <= target_fpr < 1:
            raise CalibrationError(
                "The target false-positive rate must be in [0, 1) (0.05 for 5%; 0 for no real "
                f"image called fake); got {target_fpr}."
            )
        threshold = threshold_for_fpr(labels, p_fake, target_fpr)
        if threshold > 1:
            raise CalibrationError(
                f"{int((real >= 1).sum())} of {len(real)} real images score p_fake = 1, more than a "
                f"false-positive rate of {target_fpr} allows at any threshold in [0, 1]; compute "
                "p_fake from the logits in float64 so that high scores are not rounded to 1, or "
                "use more real images."
            )
        method: Literal["target-fpr", "best-accuracy"] = "target-fpr"
    else:
        if len(real) == 0 or len(fake) == 0:
            raise CalibrationError(
                f"The threshold of best accuracy needs real and fake images; got {len(real)} real and {len(fake)} fake."
            )
        threshold = best_threshold_accuracy(labels, p_fake.astype(np.float64))[1]
        if threshold > 1:
            raise CalibrationError(
                "The most accurate threshold on these images calls nothing fake, and the top "
                "scores lie so close to 1 that it falls above 1; check the labels, or calibrate "
                "for a false-positive rate."
            )
        method = "best-accuracy"
    false_alarms = int((real >= threshold).sum())
    low, high = clopper_pearson(false_alarms, len(real))
    return ThresholdChoice(
        threshold=float(threshold),
        target_fpr=target_fpr,
        n_real=len(real),
        n_fake=len(fake),
        fpr=false_alarms / len(real),
        fpr_low=low,
        fpr_high=high,
        tpr=float((fake >= threshold).mean()) if len(fake) else math.nan,
        method=method,
    )


def _logits_and_labels(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    if logits.ndim != 1 or logits.shape != labels.shape or len(logits) == 0:
        raise CalibrationError(
            f"logits and labels must be 1-D, non-empty and of one length; got shapes {logits.shape} and {labels.shape}."
        )
    if not np.isin(labels, (0, 1)).all():
        raise CalibrationError("labels must be 0 (real) or 1 (fake); convert other conventions before calibrating.")
    if not np.isfinite(logits).all():
        bad = int((~np.isfinite(logits)).sum())
        raise CalibrationError(f"logits hold {bad} NaN or infinite values; drop those images first.")
    return logits, labels.astype(np.float64)


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean binary cross-entropy of sigmoid(logits / T): log(1 + e^s) - y s, computed stably."""
    s = logits / temperature
    return float(np.mean(np.logaddexp(0.0, s) - labels * s))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T > 0 that makes sigmoid(logits / T) most likely on labelled data.

    Minimises the mean binary negative log-likelihood over log T by golden-section search in
    [log 0.05, log 100] to a relative precision of about 1e-6. The likelihood is convex in 1/T (a
    one-feature logistic regression without intercept), so it has one minimum and the search finds
    it. Fit on held-out data, not on the training set, where a model is over-confident.

    When no finite T is best, T is clamped to the range [0.05, 100] (a warning is logged): data that
    the logits separate perfectly (including a single class whose logits all have the right sign)
    would want T -> 0, and logits that carry no information about the labels would want T -> inf.

    Args:
        logits: Logits (log-odds of fake), one per image, any real values.
        labels: 0 real, 1 fake.

    Returns:
        T; divide logits by it (:func:`apply_temperature`).
    """
    logits, labels = _logits_and_labels(logits, labels)
    lo, hi = math.log(TEMPERATURE_RANGE[0]), math.log(TEMPERATURE_RANGE[1])
    golden = (math.sqrt(5) - 1) / 2
    a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
    fa, fb = _nll(logits, labels, math.exp(a)), _nll(logits, labels, math.exp(b))
    while hi - lo > 1e-6:
        if fa <= fb:  # the minimum lies in [lo, b]
            hi, b, fb = b, a, fa
            a = hi - golden * (hi - lo)
            fa = _nll(logits, labels, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + golden * (hi - lo)
            fb = _nll(logits, labels, math.exp(b))
    temperature = math.exp((lo + hi) / 2)
    low, high = TEMPERATURE_RANGE
    if temperature < low * 1.001 or temperature > high / 1.001:
        temperature = low if temperature < 1 else high
        why = "the logits separate the labels" if temperature == low else "the logits carry little about the labels"
        log.warning("The best temperature lies at an end of [%g, %g] (%s); clamped to %g.", low, high, why, temperature)
    return temperature


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated probabilities: p_fake = sigmoid(logits / temperature), as float64.

    Args:
        logits: Logits, any shape.
        temperature: From :func:`fit_temperature`; must be positive and finite.
    """
    if not (math.isfinite(temperature) and temperature > 0):
        raise CalibrationError(f"The temperature must be a positive number; got {temperature}.")
    s = np.asarray(logits, dtype=np.float64) / temperature
    with np.errstate(under="ignore"):
        e = np.exp(-np.abs(s))  # never overflows
    return np.where(s >= 0, 1 / (1 + e), e / (1 + e))


@dataclass(frozen=True)
class Calibration:
    """A checkpoint's calibration: its temperature and the threshold chosen with it.

    Attributes:
        temperature: p_fake = sigmoid(logit / temperature).
        choice: The threshold on the calibrated p_fake and how it was chosen.
        data: What the calibration images were, in words.
        ece_before: Expected calibration error of the raw p_fake on those images.
        ece_after: The same after temperature scaling.
    """

    temperature: float
    choice: ThresholdChoice
    data: str
    ece_before: float
    ece_after: float

    def to_dict(self) -> dict[str, Any]:
        """Plain types, as stored in a checkpoint under ``calibration``."""
        return {
            "temperature": self.temperature,
            **self.choice.to_dict(),
            "data": self.data,
            "ece_before": self.ece_before,
            "ece_after": self.ece_after,
        }


def calibrate(
    labels: np.ndarray, logits: np.ndarray, *, target_fpr: float | None, data: str, fit: bool = True
) -> Calibration:
    """Fit a temperature on labelled logits (``fit``; else keep 1), then choose the threshold on the
    calibrated p_fake for ``target_fpr`` (None: the best accuracy).

    Data that the logits separate perfectly asks for T -> 0, a sharpening that a few held-out images
    cannot justify: then T stays 1.
    """
    from ssp_detect.engine.metrics import expected_calibration_error

    labels, logits = np.asarray(labels), np.asarray(logits, dtype=np.float64)
    temperature = fit_temperature(logits, labels) if fit else 1.0
    if temperature <= TEMPERATURE_RANGE[0]:
        log.info("The calibration images are separated perfectly; the temperature stays 1.")
        temperature = 1.0
    raw, calibrated = apply_temperature(logits, 1.0), apply_temperature(logits, temperature)
    choice = choose_threshold_for(labels, calibrated, target_fpr=target_fpr)
    return Calibration(
        temperature,
        choice,
        data,
        expected_calibration_error(labels, raw),
        expected_calibration_error(labels, calibrated),
    )
