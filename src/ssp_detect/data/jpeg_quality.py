"""A JPEG's history: its IJG (libjpeg) quality, estimated from the luminance quantisation table, and
its chroma subsampling."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, JpegImagePlugin, UnidentifiedImageError

from ssp_detect.data.decode import ImageDecodeError

SUBSAMPLING_NAMES = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}  # Pillow's get_sampling codes
DEFAULT_SUBSAMPLING = "4:2:0"  # what Pillow and OpenCV write unless told otherwise

# ITU-T T.81 Annex K, table K.1: the luminance table that libjpeg scales for a quality setting.
IJG_LUMINANCE_TABLE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.int64,
)


def ijg_luminance_table(quality: int) -> np.ndarray:
    """The 8x8 luminance table libjpeg writes for ``quality`` (1-100), baseline-clipped to [1, 255]."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality {quality} is outside 1-100; pass an integer from 1 to 100.")
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((IJG_LUMINANCE_TABLE * scale + 50) // 100, 1, 255)


@cache
def _all_tables() -> np.ndarray:
    return np.stack([ijg_luminance_table(q).ravel() for q in range(1, 101)])


def estimate_jpeg_quality(image: Image.Image | str | Path) -> int | None:
    """Estimate the IJG quality (1-100) a JPEG was saved with; None for anything that is not a JPEG.

    The image's luminance quantisation table (table 0, in the natural row order Pillow reports)
    is compared with the standard IJG table scaled for every quality; the quality with the smallest
    mean absolute difference wins (the lowest quality on a tie). Files written by libjpeg-based
    encoders (Pillow, OpenCV, most software) match one quality exactly; cameras and editors with
    their own tables get the nearest IJG equivalent.

    Args:
        image: An opened PIL image (its ``format`` must still be ``"JPEG"``, so pass it before any
            conversion) or the path of an image file.

    Returns:
        The estimated quality, or None when the image is not a JPEG or carries no luminance table.

    Raises:
        ImageDecodeError: a path that does not exist or is not a readable image (a ValueError).
    """
    if isinstance(image, Image.Image):
        return _quality_of(image)
    path = Path(image)
    try:
        with Image.open(path) as opened:
            return _quality_of(opened)
    except FileNotFoundError:
        raise ImageDecodeError(f"Image file {path} does not exist; check the path.") from None
    except (UnidentifiedImageError, OSError):
        raise ImageDecodeError(f"File {path} is not a readable image; check that it is an image file.") from None


def jpeg_subsampling(image: Image.Image) -> str | None:
    """Chroma subsampling (``"4:4:4"``, ``"4:2:2"``, ``"4:2:0"``) of an opened JPEG (before any
    conversion); None for other formats, greyscale JPEGs and unusual sampling factors."""
    if image.format != "JPEG":
        return None
    return SUBSAMPLING_NAMES.get(JpegImagePlugin.get_sampling(image))


def estimate_jpeg_history(path: str | Path) -> tuple[int, str] | None:
    """(estimated quality, chroma subsampling) of a JPEG file, the subsampling defaulting to
    :data:`DEFAULT_SUBSAMPLING` when it is not one of the three usual ones; None for other formats.

    Raises:
        ImageDecodeError: a path that does not exist or is not a readable image (a ValueError).
    """
    path = Path(path)
    try:
        with Image.open(path) as opened:
            quality = _quality_of(opened)
            return None if quality is None else (quality, jpeg_subsampling(opened) or DEFAULT_SUBSAMPLING)
    except FileNotFoundError:
        raise ImageDecodeError(f"Image file {path} does not exist; check the path.") from None
    except (UnidentifiedImageError, OSError):
        raise ImageDecodeError(f"File {path} is not a readable image; check that it is an image file.") from None


def _quality_of(image: Image.Image) -> int | None:
    tables = getattr(image, "quantization", None)
    if image.format != "JPEG" or not tables or 0 not in tables:
        return None
    luminance = np.asarray(tables[0], dtype=np.int64)
    if luminance.size != 64:
        return None
    distance = np.abs(_all_tables() - luminance).mean(axis=1)
    return int(np.argmin(distance)) + 1
