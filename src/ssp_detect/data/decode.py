"""Decoding image files into RGB uint8 arrays, with one clear error for anything unreadable."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from ssp_detect.errors import SSPError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jfif"})
DEFAULT_MAX_PIXELS = 100_000_000


class ImageDecodeError(SSPError, ValueError):
    """An image that cannot be decoded; ``str()`` is one sentence naming the source."""


def is_image_file(path: str | Path) -> bool:
    """True when the file name has a known image extension (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def to_rgb_array(img: Image.Image) -> np.ndarray:
    """Convert a PIL image of any mode to an RGB uint8 array of shape (H, W, 3).

    16-bit and 32-bit integer greyscale keep their top 8 bits (PIL's own conversion clips them to
    white); float images are clipped to [0, 255]; alpha is ignored, as in the official loader;
    palette images are expanded; CMYK and YCbCr use PIL's conversion.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.int64)
        if arr.size and arr.max() > 255:
            arr = arr >> 8
        arr = np.clip(arr, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode == "F":
        arr = np.clip(np.asarray(img), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def open_image(source: str | Path | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, load: bool = True) -> Image.Image:
    """Open and fully decode an image, checking its pixel count before decoding.

    Args:
        source: A path or the encoded bytes.
        max_pixels: Images with more pixels are refused (decompression-bomb guard).
        load: False stops after the header checks (format, mode and size known, pixels not
            decoded, the file left open: close the image); errors in the pixel data then go
            unnoticed.

    Raises:
        ImageDecodeError: empty, missing, truncated, corrupt, non-image or too-large input.
    """
    name = "uploaded data" if isinstance(source, bytes) else str(source)
    if isinstance(source, bytes):
        if not source:
            raise ImageDecodeError(f"{name} is empty (0 bytes).")
        fp: io.BytesIO | str | Path = io.BytesIO(source)
    else:
        if not Path(source).is_file():
            raise ImageDecodeError(f"{name} does not exist or is not a file.")
        if Path(source).stat().st_size == 0:
            raise ImageDecodeError(f"{name} is empty (0 bytes).")
        fp = source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp)
            w, h = img.size
            if w * h > max_pixels:
                raise ImageDecodeError(f"{name} has {w}x{h} pixels, over the limit of {max_pixels:,}; resize it first or raise the pixel limit.")
            if load:
                img.load()
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"{name} is too large to decode safely ({exc}).") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageDecodeError(f"{name} is not an image format that Pillow can read.") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"{name} could not be decoded: it is truncated or corrupt ({exc}).") from exc
    return img


def load_rgb(source: str | Path | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a file or bytes to an RGB uint8 array (H, W, 3); see :func:`open_image`."""
    img = open_image(source, max_pixels=max_pixels)
    try:
        return to_rgb_array(img)
    except (OSError, ValueError) as exc:
        raise ImageDecodeError(f"{source if not isinstance(source, bytes) else 'uploaded data'} has an unsupported image mode {img.mode!r}.") from exc
