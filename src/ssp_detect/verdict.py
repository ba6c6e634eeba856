"""From p_fake to a verdict a user can act on: ``real``, ``fake`` or ``uncertain``, with the reasons.

A plain verdict compares p_fake with the threshold. It becomes ``uncertain`` when any reason says
the number should not be trusted on its own:

* ``no-texture``: the region the model reads is flat or saturated, so it holds no noise to judge
  (:data:`~ssp_detect.data.preprocess.NO_TEXTURE_LEVEL`).
* ``upscaled``: the image is smaller than the model's patch or crop and was interpolated up to it.
* ``near-threshold``: p_fake lies within the uncertainty band of the threshold.
* ``unstable``: the verdict flips after a common delivery of the image (JPEG, WebP, resizing); only
  when a stability check was asked for (:mod:`ssp_detect.stability`).
* ``truncated``: the file's image data ends early and the decoder invented the rest; only when such
  files are scored on request.

p_fake itself is always reported, and metrics such as AUC use it for every image.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ssp_detect.constants import DEFAULT_UNCERTAIN_BAND  # noqa: F401  (the library's name for it, re-exported)
from ssp_detect.errors import SSPError

LABELS = ("real", "fake", "uncertain")
REASONS = ("no-texture", "upscaled", "near-threshold", "unstable", "truncated")


class ScoreError(SSPError, ValueError):
    """A number that cannot be trusted: a non-finite score or an invalid threshold or band."""


def check_threshold(value: float, what: str = "threshold") -> float:
    """``value`` as a float in [0, 1]; anything else (NaN, inf, out of range) is a :class:`ScoreError`."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ScoreError(f"The {what} must be a number in [0, 1], not {value!r}.") from None
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise ScoreError(f"The {what} must lie in [0, 1], not {value!r}.")
    return number


def check_band(value: float) -> float:
    """An uncertainty band in [0, 0.5]."""
    band = check_threshold(value, "uncertainty band")
    if band > 0.5:
        raise ScoreError(f"The uncertainty band must lie in [0, 0.5], not {value!r}.")
    return band


def check_finite(p_fake: np.ndarray, where: str) -> np.ndarray:
    """``p_fake`` unchanged when every value is finite; else a :class:`ScoreError` naming ``where``."""
    bad = ~np.isfinite(p_fake)
    if bad.any():
        raise ScoreError(
            f"The model gave {int(bad.sum())} non-finite score(s) (NaN or infinity) with {where}; "
            "its weights are broken: retrain or use another checkpoint."
        )
    return p_fake


def decide(
    p_fake: float, threshold: float, *, band: float = 0.0, reasons: Iterable[str] = ()
) -> tuple[str, tuple[str, ...]]:
    """The label and the reasons of one verdict.

    Args:
        p_fake: Probability that the image is AI-generated.
        threshold: ``fake`` at or above it, ``real`` below.
        band: ``near-threshold`` when ``|p_fake - threshold| < band``.
        reasons: Reasons already known (from the input, the decoder or a stability check).

    Returns:
        (``real`` | ``fake`` | ``uncertain``, the reasons in :data:`REASONS` order).
    """
    found = set(reasons)
    if abs(p_fake - threshold) < band:
        found.add("near-threshold")
    ordered = tuple(r for r in REASONS if r in found)
    if ordered:
        return "uncertain", ordered
    return ("fake" if p_fake >= threshold else "real"), ()
