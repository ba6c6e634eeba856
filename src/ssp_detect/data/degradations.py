"""Image degradations, applied to the whole RGB uint8 image before patch selection.

Used for training augmentation (the official blur/JPEG options, format matching) and, in the
robustness sweeps, for evaluation (:class:`Degradation`). Every random choice comes from a
``numpy.random.Generator`` passed in, so a seed replays it.

The functions take and return ``(H, W, 3)`` uint8 arrays:

* :func:`jpeg_compress`: JPEG at a quality, with PIL or OpenCV (named, never guessed).
* :func:`webp_compress`: lossy WebP at a quality, with PIL (libwebp).
* :func:`gaussian_blur`: per-channel Gaussian blur at a sigma (scipy.ndimage, as the official code).
* :func:`rescale`: down- or up-scaling by a factor with a named PIL filter.
* :func:`center_crop`, :func:`random_crop`: a square crop of a given side.
* :func:`gaussian_noise`: additive Gaussian noise of a given std (in 0-255 units), rounded and clipped.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from ssp_detect.constants import JPEG_METHODS
from ssp_detect.errors import UsageError

JpegMethod = Literal["pil", "cv2"]
Interpolation = Literal["nearest", "bilinear", "bicubic", "lanczos", "box"]
INTERPOLATIONS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}


# OpenCV's constant for each chroma subsampling, by name: cv2 (and scipy, for the blur) are imported on
# first use, so that scoring without degradations (``ssp predict``) does not pay for them.
_CV2_SUBSAMPLING = {
    "4:4:4": "IMWRITE_JPEG_SAMPLING_FACTOR_444",
    "4:2:2": "IMWRITE_JPEG_SAMPLING_FACTOR_422",
    "4:2:0": "IMWRITE_JPEG_SAMPLING_FACTOR_420",
}


def jpeg_compress(
    img: np.ndarray, quality: int, method: JpegMethod = "pil", subsampling: str | None = None
) -> np.ndarray:
    """Encode as JPEG at ``quality`` (1-100) with PIL or OpenCV and decode again.

    ``subsampling`` (``"4:4:4"``, ``"4:2:2"``, ``"4:2:0"``) sets the chroma subsampling; None keeps
    the library's default (4:2:0 for both).
    """
    if subsampling is not None and subsampling not in _CV2_SUBSAMPLING:
        raise UsageError(f"Unknown chroma subsampling {subsampling!r}; choose one of {', '.join(_CV2_SUBSAMPLING)}.")
    if method == "cv2":
        import cv2

        params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
        if subsampling is not None:
            params += [int(cv2.IMWRITE_JPEG_SAMPLING_FACTOR), int(getattr(cv2, _CV2_SUBSAMPLING[subsampling]))]
        ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], params)
        if not ok:
            raise ValueError("OpenCV could not encode the image as JPEG.")
        return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
    if method != "pil":
        raise UsageError(f"Unknown JPEG method {method!r}; choose one of {', '.join(JPEG_METHODS)}.")
    out = io.BytesIO()
    options = {} if subsampling is None else {"subsampling": subsampling}
    Image.fromarray(img).save(out, format="JPEG", quality=int(quality), **options)
    return np.asarray(Image.open(out).convert("RGB"))


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of each channel (scipy.ndimage, as the official augmentation); sigma 0 is a no-op.

    As in the official code the filter writes into a uint8 array, so scipy truncates after each of
    its two 1-D passes: the result is within 2 levels of the exact blur, about 1 level darker.
    """
    if sigma <= 0:
        return img
    from scipy.ndimage import gaussian_filter

    out = np.empty_like(img)
    for c in range(img.shape[2]):
        gaussian_filter(img[:, :, c], sigma=sigma, output=out[:, :, c])
    return out


def webp_compress(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode as lossy WebP at ``quality`` (0-100) with PIL and decode again."""
    out = io.BytesIO()
    Image.fromarray(img).save(out, format="WEBP", quality=int(quality))
    return np.asarray(Image.open(out).convert("RGB"))


def rescale(img: np.ndarray, factor: float, interpolation: Interpolation = "bilinear") -> np.ndarray:
    """Resize by ``factor`` (< 1 down, > 1 up) with PIL's named filter; sides are rounded, at least 1.

    PIL's filters widen their support when downscaling, so ``bilinear`` and ``bicubic`` are
    antialiased; ``nearest`` is not.
    """
    if factor <= 0:
        raise UsageError(f"Scale factor must be positive, not {factor}.")
    if interpolation not in INTERPOLATIONS:
        raise UsageError(f"Unknown interpolation {interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}.")
    if factor == 1:
        return img
    h, w = img.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(img).resize(size, INTERPOLATIONS[interpolation]))


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """The central ``size x size`` crop (the whole side where the image is smaller)."""
    h, w = img.shape[:2]
    y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return img[y : y + size, x : x + size]


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``size x size`` crop at a uniform position (the whole side where the image is smaller)."""
    h, w = img.shape[:2]
    y = int(rng.integers(0, max(0, h - size) + 1))
    x = int(rng.integers(0, max(0, w - size) + 1))
    return img[y : y + size, x : x + size]


def gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add ``N(0, sigma^2)`` noise (0-255 units) drawn from ``rng``, round, clip to uint8."""
    if sigma <= 0:
        return img
    noisy = img.astype(np.float64) + rng.normal(0.0, sigma, img.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


DegradationKind = Literal["none", "jpeg", "webp", "blur", "scale", "noise", "center_crop", "random_crop"]
DEGRADATION_KINDS: tuple[str, ...] = ("none", "jpeg", "webp", "blur", "scale", "noise", "center_crop", "random_crop")


@dataclass(frozen=True)
class Degradation:
    """One fixed degradation, for evaluation: ``Degradation("jpeg", 75)(img, rng)``.

    Args:
        kind: ``none``, ``jpeg`` (value = quality), ``webp`` (quality), ``blur`` (sigma),
            ``scale`` (factor), ``noise`` (std in 0-255 units), ``center_crop`` or
            ``random_crop`` (side in pixels).
        value: The strength, as above (ignored for ``none``).
        jpeg_method: JPEG library for ``jpeg``.
        interpolation: PIL filter for ``scale``.
    """

    kind: DegradationKind = "none"
    value: float = 0.0
    jpeg_method: JpegMethod = "pil"
    interpolation: Interpolation = "bilinear"

    def __post_init__(self) -> None:
        if self.kind not in DEGRADATION_KINDS:
            raise UsageError(f"Unknown degradation {self.kind!r}; choose one of {', '.join(DEGRADATION_KINDS)}.")

    @property
    def is_identity(self) -> bool:
        """True when the degradation leaves every image unchanged."""
        return (
            self.kind == "none"
            or (self.kind in ("blur", "noise") and self.value <= 0)
            or (self.kind == "scale" and self.value == 1)
        )

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Degrade ``img``; ``rng`` is used by ``noise`` and ``random_crop`` only."""
        if self.is_identity:
            return img
        if self.kind == "jpeg":
            return jpeg_compress(img, int(self.value), self.jpeg_method)
        if self.kind == "webp":
            return webp_compress(img, int(self.value))
        if self.kind == "blur":
            return gaussian_blur(img, self.value)
        if self.kind == "scale":
            return rescale(img, self.value, self.interpolation)
        if self.kind == "noise":
            return gaussian_noise(img, self.value, rng)
        if self.kind == "center_crop":
            return center_crop(img, int(self.value))
        return random_crop(img, int(self.value), rng)


# The deliveries an image commonly meets between a camera (or a generator) and a detector, drawn at
# random for both classes alike in training (``TrainAugment.delivery_prob``), so that the storage
# format and compression history carry no class information by construction.
DELIVERY_KINDS = ("png", "jpeg", "webp", "resize")
DELIVERY_JPEG_QUALITY = (60, 100)
DELIVERY_SUBSAMPLINGS = ("4:4:4", "4:2:2", "4:2:0")
DELIVERY_WEBP_QUALITY = (60, 95)
DELIVERY_SCALE = (0.5, 0.9)


@dataclass(frozen=True)
class Delivery:
    """One random delivery: ``kind`` (:data:`DELIVERY_KINDS`) and its parameters."""

    kind: str
    quality: int = 0
    subsampling: str = "4:2:0"
    scale: float = 1.0

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Delivery:
        """A delivery drawn from ``rng`` with a fixed number of draws, whatever is drawn: the same
        generator state gives the same delivery to a real image and to a fake."""
        kind = DELIVERY_KINDS[int(rng.integers(len(DELIVERY_KINDS)))]
        jpeg_q = int(rng.integers(DELIVERY_JPEG_QUALITY[0], DELIVERY_JPEG_QUALITY[1] + 1))
        subsampling = DELIVERY_SUBSAMPLINGS[int(rng.integers(len(DELIVERY_SUBSAMPLINGS)))]
        webp_q = int(rng.integers(DELIVERY_WEBP_QUALITY[0], DELIVERY_WEBP_QUALITY[1] + 1))
        scale = float(rng.uniform(*DELIVERY_SCALE))
        quality = jpeg_q if kind == "jpeg" else webp_q if kind == "webp" else 0
        return cls(kind, quality, subsampling, scale if kind == "resize" else 1.0)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        if self.kind == "jpeg":
            return jpeg_compress(img, self.quality, "pil", self.subsampling)
        if self.kind == "webp":
            return webp_compress(img, self.quality)
        if self.kind == "resize":
            return rescale(img, self.scale, "bilinear")
        return img  # png: lossless, the pixels as they are


@dataclass(frozen=True)
class Augmented:
    """The result of :meth:`TrainAugment.apply`.

    Attributes:
        image: What the model sees.
        source: The image before blur and JPEG re-compression (after format matching, which
            stands for a storage history, not a degradation): the restoration target.
        blurred: A blur was applied.
        jpeg: A JPEG re-compression was applied.
    """

    image: np.ndarray
    source: np.ndarray
    blurred: bool
    jpeg: bool


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
            is JPEG-compressed with a history drawn from ``format_match_histories``. Chosen so
            that both classes reach the network with the same share of JPEG histories (no "JPEG
            or not" shortcut); see :func:`format_match_probabilities`.
        format_match_histories: (quality, chroma subsampling) pairs to draw from (those of the
            training JPEGs): the subsampling too, since 4:2:0 leaves colour structure that 4:4:4
            does not, a cue as telling as the quality.
        delivery_prob: Probability that an image, real or fake alike, goes through a random
            delivery (:class:`Delivery`: a PNG round trip, JPEG at quality 60-100 with any chroma
            subsampling, WebP at 60-95, or downscaling to 0.5-0.9), after format matching. The draw
            does not depend on the label, so after it storage format and compression history say
            nothing about the class.
    """

    blur_prob: float = 0.0
    blur_sig: tuple[float, float] = (0.0, 1.0)
    jpg_prob: float = 0.0
    jpg_method: tuple[str, ...] = ("pil", "cv2")
    jpg_qual: tuple[int, int] = (90, 100)
    format_match_probs: tuple[float, float] = (0.0, 0.0)
    format_match_histories: Sequence[tuple[int, str]] = ((90, "4:2:0"),)
    delivery_prob: float = 0.0

    @property
    def active(self) -> bool:
        """True when any augmentation can fire."""
        return self.blur_prob > 0 or self.jpg_prob > 0 or max(self.format_match_probs) > 0 or self.delivery_prob > 0

    def apply(self, img: np.ndarray, rng: np.random.Generator, *, label: int, stored_as_jpeg: bool) -> Augmented:
        """Augment ``img`` and say what was applied (the draws come from ``rng``, in a fixed order;
        the delivery is drawn first, so that it does not depend on the label)."""
        delivery = None
        if self.delivery_prob > 0:
            delivered = rng.random() < self.delivery_prob
            drawn = Delivery.draw(rng)
            delivery = drawn if delivered else None
        p_match = self.format_match_probs[label]
        if p_match > 0 and not stored_as_jpeg and rng.random() < p_match:
            quality, subsampling = self.format_match_histories[int(rng.integers(len(self.format_match_histories)))]
            img = jpeg_compress(img, int(quality), "pil", subsampling)
        if delivery is not None:
            img = delivery(img)
        source = out = img
        blurred = self.blur_prob > 0 and rng.random() < self.blur_prob
        if blurred:
            out = gaussian_blur(out, float(rng.uniform(*self.blur_sig)))
        jpeg = self.jpg_prob > 0 and rng.random() < self.jpg_prob
        if jpeg:
            method = str(rng.choice(list(self.jpg_method)))
            out = jpeg_compress(out, int(rng.integers(self.jpg_qual[0], self.jpg_qual[1] + 1)), method)  # type: ignore[arg-type]
        return Augmented(image=out, source=source, blurred=blurred, jpeg=jpeg)

    def __call__(self, img: np.ndarray, rng: np.random.Generator, *, label: int, stored_as_jpeg: bool) -> np.ndarray:
        """The augmented image alone (see :meth:`apply`)."""
        return self.apply(img, rng, label=label, stored_as_jpeg=stored_as_jpeg).image


def format_match_probabilities(jpeg_share_real: float, jpeg_share_fake: float) -> tuple[float, float]:
    """Per-class probabilities of compressing a non-JPEG image so both classes end with the same
    share of JPEG histories (the larger of the two): ``p = (target - s) / (1 - s)``."""
    target = max(jpeg_share_real, jpeg_share_fake)
    return tuple(0.0 if s >= target or s >= 1 else (target - s) / (1 - s) for s in (jpeg_share_real, jpeg_share_fake))  # type: ignore[return-value]
