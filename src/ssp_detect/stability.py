"""The stability check: does a verdict survive the deliveries an image commonly meets?

Each image is scored again after seven deliveries: JPEG at quality 95, 85 and 75 (4:2:0, as cameras
and web sites save), WebP at quality 80, downscaling to 0.75 and 0.5 of its size (antialiased), and
a PNG round trip of its decoded pixels (lossless: any change it makes means the score follows how a
file is stored). The original and its seven deliveries go through the model as one batch of 8. The
result is the lowest and highest p_fake, the delivery that moved it most, and whether the verdict
holds; a verdict that flips becomes ``uncertain`` with the reason ``unstable``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from PIL import Image

from ssp_detect.data.degradations import jpeg_compress, rescale, webp_compress


def _png_round_trip(img: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return np.asarray(Image.open(buf).convert("RGB"))


DELIVERIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "jpeg-95": partial(jpeg_compress, quality=95, method="pil", subsampling="4:2:0"),
    "jpeg-85": partial(jpeg_compress, quality=85, method="pil", subsampling="4:2:0"),
    "jpeg-75": partial(jpeg_compress, quality=75, method="pil", subsampling="4:2:0"),
    "webp-80": partial(webp_compress, quality=80),
    "resize-0.75": partial(rescale, factor=0.75, interpolation="bilinear"),
    "resize-0.5": partial(rescale, factor=0.5, interpolation="bilinear"),
    "png": _png_round_trip,
}


def delivered(img: np.ndarray) -> list[np.ndarray]:
    """The image after each delivery of :data:`DELIVERIES`, in order."""
    return [deliver(img) for deliver in DELIVERIES.values()]


@dataclass(frozen=True)
class Stability:
    """How p_fake moved over the deliveries of :data:`DELIVERIES`.

    Attributes:
        p_min: Lowest p_fake, the original included.
        p_max: Highest p_fake, the original included.
        most_moved: The delivery whose p_fake lies farthest from the original's.
        holds: True when every delivery gives the original's side of the threshold.
        p_fake: p_fake after each delivery, by name.
    """

    p_min: float
    p_max: float
    most_moved: str
    holds: bool
    p_fake: dict[str, float]

    @classmethod
    def of(cls, p_original: float, p_delivered: list[float], threshold: float) -> Stability:
        """The stability of a verdict from the original's p_fake and each delivery's, in order."""
        scores = dict(zip(DELIVERIES, (float(p) for p in p_delivered), strict=True))
        most = max(scores, key=lambda name: abs(scores[name] - p_original))
        fake = p_original >= threshold
        holds = all((p >= threshold) == fake for p in scores.values())
        values = [p_original, *scores.values()]
        return cls(min(values), max(values), most, holds, scores)

    def to_dict(self) -> dict[str, Any]:
        return {
            "p_min": self.p_min,
            "p_max": self.p_max,
            "most_moved": self.most_moved,
            "holds": self.holds,
            "p_fake": dict(self.p_fake),
        }
