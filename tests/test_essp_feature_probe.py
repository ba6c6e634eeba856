"""The pixel deblur filter of benchmarks/essp_feature_probe.py, against known answers."""

import numpy as np

from benchmarks.essp_feature_probe import DEBLUR_TAPS, apply_filter, deblur_filter
from ssp_detect.data.degradations import gaussian_blur


def _noise_images(n: int = 4, side: int = 48) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.clip(128 + 20 * rng.standard_normal((n, side, side, 3)), 0, 255).astype(np.uint8)


def test_unblurred_input_gives_the_identity_filter():
    sharp = _noise_images()
    weights = deblur_filter(sharp, sharp).numpy()[0, 0]
    expected = np.zeros((DEBLUR_TAPS, DEBLUR_TAPS))
    expected[DEBLUR_TAPS // 2, DEBLUR_TAPS // 2] = 1
    np.testing.assert_allclose(weights, expected, atol=1e-4)


def test_fitted_filter_undoes_most_of_a_blur():
    sharp = _noise_images()
    blurred = np.stack([gaussian_blur(img, 1.0) for img in sharp])
    restored = apply_filter(blurred, deblur_filter(sharp, blurred))
    error = lambda a: np.abs(a.astype(np.float64) - sharp)[:, 4:-4, 4:-4].mean()  # noqa: E731
    assert error(restored) < 0.8 * error(blurred)  # white noise: 14 -> 9 grey levels; 8-bit rounding limits the rest
