"""Image degradations, applied to the whole RGB uint8 image before patch selection.

Used for training augmentation (the official blur/JPEG options, format matching) and, in the
robustness sweeps, for evaluation. Every random choice comes from a ``numpy.random.Generator``
passed in, so a seed replays it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

JpegMethod = Literal["pil", "cv2"]


def jpeg_compress(img: np.ndarray, quality: int, method: JpegMethod = "pil") -> np.ndarray:
    """Encode as JPEG at ``quality`` (1-100) with PIL or OpenCV and decode again."""
    if method == "cv2":
        ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
        if not ok:
            raise ValueError("OpenCV could not encode the image as JPEG.")
        return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
    if method != "pil":
        raise ValueError(f"Unknown JPEG method {method!r}; choose pil or cv2.")
    out = io.BytesIO()
    Image.fromarray(img).save(out, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(out).convert("RGB"))


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of each channel (scipy.ndimage, as the official augmentation); sigma 0 is a no-op."""
    if sigma <= 0:
        return img
    out = np.empty_like(img)
    for c in range(img.shape[2]):
        gaussian_filter(img[:, :, c], sigma=sigma, output=out[:, :, c])
    return out


@dataclass(frozen=True)
class TrainAugment:
    """The official training augmentation, plus format matching.

    Args:
        blur_prob: Probability of a Gaussian blur, sigma uniform in ``blur_sig``.
        blur_sig: (low, high) sigma range; the official default is (0, 1) — CNNSpot-style
            robustness training uses (0, 3).
        jpg_prob: Probability of JPEG re-compression at a quality uniform in ``jpg_qual``.
        jpg_method: JPEG libraries to draw from (``pil``, ``cv2``), official: both.
        jpg_qual: (low, high) inclusive JPEG quality range; official (90, 100), CNNSpot (30, 100).
        format_match_probs: (for real, for fake) probability that an image *not stored as JPEG*
            is JPEG-compressed at a quality drawn from ``format_match_qualities``. Chosen so that
            both classes reach the network with the same share of JPEG histories (no "JPEG or
            not" shortcut); see :func:`format_match_probabilities`.
        format_match_qualities: Qualities to draw from (estimated from the training JPEGs).
    """

    blur_prob: float = 0.0
    blur_sig: tuple[float, float] = (0.0, 1.0)
    jpg_prob: float = 0.0
    jpg_method: tuple[str, ...] = ("pil", "cv2")
    jpg_qual: tuple[int, int] = (90, 100)
    format_match_probs: tuple[float, float] = (0.0, 0.0)
    format_match_qualities: Sequence[int] = (90,)

    @property
    def active(self) -> bool:
        """True when any augmentation can fire."""
        return self.blur_prob > 0 or self.jpg_prob > 0 or max(self.format_match_probs) > 0

    def __call__(self, img: np.ndarray, rng: np.random.Generator, *, label: int, stored_as_jpeg: bool) -> np.ndarray:
        p_match = self.format_match_probs[label]
        if p_match > 0 and not stored_as_jpeg and rng.random() < p_match:
            img = jpeg_compress(img, int(rng.choice(np.asarray(self.format_match_qualities))), "pil")
        if self.blur_prob > 0 and rng.random() < self.blur_prob:
            img = gaussian_blur(img, float(rng.uniform(*self.blur_sig)))
        if self.jpg_prob > 0 and rng.random() < self.jpg_prob:
            method = str(rng.choice(list(self.jpg_method)))
            img = jpeg_compress(img, int(rng.integers(self.jpg_qual[0], self.jpg_qual[1] + 1)), method)  # type: ignore[arg-type]
        return img


def format_match_probabilities(jpeg_share_real: float, jpeg_share_fake: float) -> tuple[float, float]:
    """Per-class probabilities of compressing a non-JPEG image so both classes end with the same
    share of JPEG histories (the larger of the two): ``p = (target - s) / (1 - s)``."""
    target = max(jpeg_share_real, jpeg_share_fake)
    return tuple(0.0 if s >= target or s >= 1 else (target - s) / (1 - s) for s in (jpeg_share_real, jpeg_share_fake))  # type: ignore[return-value]
