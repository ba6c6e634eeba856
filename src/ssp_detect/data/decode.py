"""Decoding image files into RGB uint8 arrays, with one clear error for anything unreadable.

file or bytes -> header (format, size; the pixel limit is checked here, before any pixel is
decoded) -> pixels (8-bit YCbCr or greyscale JPEG: libjpeg-turbo through ``simplejpeg``, strict;
anything else: Pillow, HEIC through ``pillow-heif``) -> RGB uint8 (H, W, 3) -> EXIF orientation
applied, so the pixels are the image every photo viewer shows.

Parity: both decoders are libjpeg-turbo with the same settings (accurate integer IDCT, smooth chroma
upsampling), so a JPEG decodes to the array Pillow gives, bit for bit; an image without an EXIF
orientation decodes exactly as before.

Invented pixels. A decoder that runs out of data fills in the rest: libjpeg paints the missing
part of a JPEG grey (a file cut short and given an end marker, or whose header promises more rows
than its data hold, decodes in Pillow without an error), and Pillow leaves the missing rows of a PNG
whose header promises more rows black. A verdict on such pixels is a verdict on the decoder, so:

- JPEG: libjpeg's warnings that mean lost data (the data segment or the file ends early, a bad
  Huffman or arithmetic code, a missing restart marker, an inconsistent progression) are errors.
  Harmless warnings (extraneous bytes before a marker, an unknown JFIF revision, ...) are not; the
  strict decoder stops at the first warning, so data lost after a harmless warning goes unnoticed.
  A progressive JPEG cut between two scans (and given an end marker) draws no warning: libjpeg
  shows the coarser image it has. Its scan headers tell: every coefficient of every component must
  reach full precision (every encoder sends them all).
- PNG: Pillow refuses a stream that is cut or damaged. A stream that ends early but cleanly (a
  header that promises more rows) is found by inflating the data again; that is done only when the
  row decoded last came out all zero, as missing rows do (or the file is interlaced).

Such files raise :class:`TruncatedImageError`; ``allow_truncated=True`` decodes them anyway (the
missing part grey for JPEG, black for PNG) and says so (:attr:`DecodedImage.truncated`). Other
formats that are cut or damaged raise :class:`ImageDecodeError`: their decoders give no pixels.

Cost (``benchmarks/decode_check.py``): for a JPEG the check is the strict decode itself, which is
faster than Pillow's (0.3-0.75x of the time for baseline JPEGs of 0.5-12 MP, about 1x for
progressive ones); a PNG costs a look at one row, and a second inflate only when that row is black.

Pillow's own decompression-bomb check (a global, 89.5 million pixels) is not used: the size is read
from the header and ``max_pixels`` applied per call, so a caller may raise the limit per call.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import re
import stat
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pillow_heif
import simplejpeg
from PIL import Image, ImageFile, features

from ssp_detect.constants import DEFAULT_MAX_PIXELS
from ssp_detect.errors import SSPError

log = logging.getLogger(__name__)

pillow_heif.register_heif_opener()
if not features.check("avif"):  # Pillow >= 11.3 wheels read AVIF; older ones need the plugin
    try:
        import pillow_avif  # noqa: F401
    except ImportError:
        log.debug("this Pillow cannot read AVIF and pillow-avif-plugin is not installed")

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jfif", ".heic", ".heif", ".avif"}
)
GLOB_CHARS = "*?["
JPEG_FORMATS = frozenset({"JPEG", "MPO"})
ORIENTATION_TAG = 0x0112
# libjpeg's warnings that mean part of the image is not in the file (lower case, matched as parts).
JPEG_DATA_LOSS = (
    "premature end",
    "bad huffman code",
    "bad arithmetic code",
    "instead of rst",
    "inconsistent progression",
)
_JPEG_MARKER = re.compile(rb"\xff[\xc0-\xcf\xd8-\xfe]")  # ends entropy-coded data: not RSTn nor a stuffed 0xFF
_PROGRESSIVE_SOF = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_ALL_COEFFICIENTS = (1 << 64) - 1
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Adam7's passes as (first row, first column, row step, column step).
_ADAM7 = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1))


class ImageDecodeError(SSPError, ValueError):
    """An image that cannot be decoded; ``str()`` is one sentence naming the source."""


class TruncatedImageError(ImageDecodeError):
    """An image whose file lacks part of its pixel data (cut short, damaged, or a header that
    promises more than the data hold): the decoder would make that part up. ``allow_truncated=True``
    decodes it anyway."""


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image: ``pixels`` RGB uint8 (H, W, 3) as displayed (EXIF orientation applied);
    ``truncated`` True when part of them were made up by the decoder (only with
    ``allow_truncated``); ``format`` Pillow's name of the file format; ``orientation`` the EXIF
    orientation that was applied (1: none)."""

    pixels: np.ndarray
    truncated: bool = False
    format: str = ""
    orientation: int = 1


@dataclass(frozen=True)
class DeviceJpeg:
    """The bytes of a JPEG for a device decoder, and the EXIF ``orientation`` to apply after it."""

    data: bytes
    orientation: int = 1


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


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an (H, W, ...) array as EXIF ``orientation`` (1-8) says, as :func:`PIL.ImageOps.exif_transpose`
    does; 1 and unknown values leave it as it is (the same array)."""
    turned = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }.get(orientation)
    return pixels if turned is None else np.ascontiguousarray(turned(pixels))


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8) of an opened image; 1 when absent, invalid or unreadable (as
    photo viewers treat a broken EXIF block)."""
    try:
        value = img.getexif().get(ORIENTATION_TAG, 1)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError, struct.error) as exc:  # damaged EXIF
        log.debug("ignoring an unreadable EXIF block (%s)", exc)
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _name(source: str | Path | bytes) -> str:
    return "uploaded data" if isinstance(source, bytes) else str(source)


def _read_file(path: str | Path) -> bytes:
    """The bytes of an image file, or one sentence saying why they cannot be read."""
    name = str(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ImageDecodeError(f"{name} is a link to {os.readlink(path)}, which does not exist.") from None
        if any(ch in name for ch in GLOB_CHARS):
            raise ImageDecodeError(f"{name} matches no file.") from None
        raise ImageDecodeError(f"{name} does not exist.") from None
    except PermissionError:
        raise ImageDecodeError(f"{name} cannot be read: permission denied.") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageDecodeError(f"{name} is a link that loops back on itself.") from None
        raise ImageDecodeError(f"{name} cannot be read ({exc.strerror}).") from None
    if stat.S_ISDIR(info.st_mode):
        if not os.access(path, os.R_OK | os.X_OK):
            raise ImageDecodeError(f"{name} is a folder that cannot be listed: permission denied.")
        raise ImageDecodeError(f"{name} is a folder, not an image file.")
    if not stat.S_ISREG(info.st_mode):
        raise ImageDecodeError(f"{name} is not a regular file.")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except PermissionError:
        raise ImageDecodeError(f"{name} cannot be read: permission denied.") from None
    except OSError as exc:
        raise ImageDecodeError(f"{name} cannot be read ({exc.strerror}).") from None
    return data


def read_source(source: str | Path | bytes) -> bytes:
    """The encoded bytes of a path or of bytes; :class:`ImageDecodeError` when missing, not a
    file, unreadable (permission denied) or empty."""
    data = source if isinstance(source, bytes) else _read_file(source)
    if not data:
        raise ImageDecodeError(f"{_name(source)} is empty (0 bytes).")
    return data


def _identify(fp: io.BytesIO) -> ImageFile.ImageFile:
    """:func:`PIL.Image.open` without its decompression-bomb check, which reads Pillow's global
    ``MAX_IMAGE_PIXELS``: the caller applies its own limit to the size from the header."""
    prefix = fp.read(16)
    tried: set[str] = set()
    for load_plugins in (Image.preinit, Image.init):
        load_plugins()
        for fmt in [f for f in Image.ID if f not in tried]:
            tried.add(fmt)
            factory, accept = Image.OPEN[fmt]
            try:  # as Image.open: a check may read past the end of a file of a few bytes
                result = accept(prefix) if accept else True
                if not result or isinstance(result, str):
                    continue
                fp.seek(0)
                return factory(fp, "")
            except (SyntaxError, IndexError, TypeError, struct.error):
                continue
    raise Image.UnidentifiedImageError("cannot identify image file")


def _too_large(name: str, size: str, max_pixels: int) -> ImageDecodeError:
    return ImageDecodeError(
        f"{name} has {size} pixels, over the limit of {max_pixels:,}; resize it first or raise "
        "the pixel limit (max_pixels, --max-pixels)."
    )


def _corrupt(name: str, exc: BaseException) -> ImageDecodeError:
    return ImageDecodeError(f"{name} could not be decoded: it is truncated or corrupt ({exc}).")


def _header(data: bytes, name: str, max_pixels: int) -> ImageFile.ImageFile:
    """The opened (not decoded) image, its size checked against ``max_pixels``."""
    try:
        img = _identify(io.BytesIO(data))
    except Image.UnidentifiedImageError as exc:
        raise ImageDecodeError(f"{name} is not an image format that Pillow can read.") from exc
    except Image.DecompressionBombError as exc:  # a plugin's own check (e.g. GIF frames)
        raise _too_large(name, "too many", max_pixels) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise _corrupt(name, exc) from exc
    w, h = img.size
    if w * h > max_pixels:
        raise _too_large(name, f"{w}x{h}", max_pixels)
    return img


def _truncated(name: str, why: str) -> TruncatedImageError:
    return TruncatedImageError(
        f"{name} is truncated or corrupt ({why}): part of the image is not in the file, so the "
        "decoder would make it up; allow truncated images (allow_truncated, --allow-truncated) "
        "to score it anyway."
    )


def progression_gap(data: bytes) -> str | None:
    """For a progressive JPEG, a sentence part saying that its scans stop before every DCT
    coefficient of every component reached full precision (a file cut between two scans); None
    when they do not, and for any other JPEG. Reads the marker segments only."""
    pos, components, done = 2, [], {}
    while pos + 4 <= len(data):
        if data[pos] != 0xFF or data[pos + 1] in (0xFF, 0x01) or 0xD0 <= data[pos + 1] <= 0xD7:
            pos += 1  # fill bytes, stray bytes, markers without a segment
            continue
        marker, (length,) = data[pos + 1], struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker == 0xD9:
            break
        segment = data[pos + 4 : pos + 2 + length]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a frame header
            if marker not in _PROGRESSIVE_SOF:
                return None
            components = list(segment[6::3][: segment[5]]) if len(segment) > 5 else []
        elif marker == 0xDA and len(segment) >= 1 + 2 * segment[0] + 3:
            count = segment[0]
            first, last, approx = segment[1 + 2 * count : 4 + 2 * count]
            if approx & 0x0F == 0:  # this scan leaves its coefficients at full precision
                band = ((1 << (last + 1)) - 1) ^ ((1 << first) - 1)
                for c in segment[1 : 1 + 2 * count : 2]:
                    done[c] = done.get(c, 0) | band
            found = _JPEG_MARKER.search(data, pos + 2 + length)  # skip the scan's entropy-coded data
            if found is None:
                break
            pos = found.start()
            continue
        pos += 2 + length
    if components and any(done.get(c, 0) != _ALL_COEFFICIENTS for c in components):
        return "its progressive scans stop before the image is complete"
    return None


def jpeg_warning(data: bytes) -> tuple[str, bool] | None:
    """libjpeg's first warning on a JPEG and whether it means lost data (:data:`JPEG_DATA_LOSS`), or
    None when it draws none: a strict decode at 1/8 scale, so all of the entropy-coded data are read
    but hardly any pixel is computed. Raises ``ValueError`` when libjpeg-turbo cannot decode it at all."""
    space = "CMYK" if simplejpeg.decode_jpeg_header(data)[2] in ("CMYK", "YCCK") else "GRAY"
    try:
        simplejpeg.decode_jpeg(data, colorspace=space, fastdct=True, fastupsample=True, min_height=1, min_width=1)
    except ValueError as exc:
        if any(part in str(exc).lower() for part in JPEG_DATA_LOSS):
            return str(exc), True
        simplejpeg.decode_jpeg(data, colorspace=space, min_height=1, min_width=1, strict=False)  # fatal: raises
        return str(exc), False
    return None


def jpeg_data_loss(data: bytes) -> str | None:
    """Why part of a JPEG's image is not in ``data`` (libjpeg's warning, or
    :func:`progression_gap`), else None; see :func:`jpeg_warning`. Raises ``ValueError`` when
    libjpeg-turbo cannot decode it at all."""
    warning = jpeg_warning(data)
    if warning is not None and warning[1]:
        return warning[0]
    return progression_gap(data)


def _decode_jpeg(data: bytes, *, grey: bool, progressive: bool) -> tuple[np.ndarray, str | None]:
    """An 8-bit YCbCr or greyscale JPEG -> (RGB uint8 pixels, why part of them is not in the file,
    or None). Raises ``ValueError`` when libjpeg-turbo cannot decode it."""
    space = "GRAY" if grey else "RGB"
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace=space)
        problem = progression_gap(data) if progressive else None
    except ValueError as exc:  # a warning (strict mode) or a fatal error: decode again leniently
        pixels = simplejpeg.decode_jpeg(data, colorspace=space, strict=False)
        problem = str(exc) if any(part in str(exc).lower() for part in JPEG_DATA_LOSS) else None
        if problem is None:
            log.debug("ignoring a harmless libjpeg warning (%s)", exc)
    if grey:
        pixels = np.repeat(pixels.reshape(pixels.shape[0], pixels.shape[1], 1), 3, axis=2)
    return pixels, problem


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, payload) of a PNG's chunks in order, the last one possibly cut short; stops at IEND."""
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        yield kind, data[pos + 8 : pos + 8 + length]
        if kind == b"IEND":
            return
        pos += 12 + length


def _png_row_sizes(ihdr: bytes) -> Iterator[int]:
    """The size of each filtered scanline (a filter byte, then the row) of a PNG with this IHDR,
    in the order of its image data (Adam7's passes in turn when interlaced)."""
    w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", ihdr[:13])
    bits = depth * _PNG_CHANNELS.get(colour, 4)
    for y0, x0, dy, dx in _ADAM7 if interlace else ((0, 0, 1, 1),):
        rows, cols = (h - y0 + dy - 1) // dy, (w - x0 + dx - 1) // dx
        if cols > 0:
            yield from [1 + (cols * bits + 7) // 8] * max(rows, 0)


def _png_raw_size(ihdr: bytes) -> int:
    """Bytes of filtered scanlines that a PNG with this IHDR holds."""
    return sum(_png_row_sizes(ihdr))


def _png_inflate(data: bytes, limit: int, *, keep: bool = True) -> tuple[bytes, bytes | int]:
    """(IHDR payload, the image data inflated as far as they inflate, at most ``limit`` bytes; their
    number only when not ``keep``)."""
    ihdr, idat = b"", []
    for kind, payload in _png_chunks(data):
        if kind == b"IHDR":
            ihdr = payload
        elif kind == b"IDAT":
            idat.append(payload)
    stream, inflater, out, size = b"".join(idat), zlib.decompressobj(), [], 0
    step = 1 << 12 if keep else 1 << 16  # small pieces lose little of what inflated before damage
    try:
        for start in range(0, len(stream), step):
            pending = stream[start : start + step]
            while pending and size < limit and not inflater.eof:
                piece = inflater.decompress(pending, limit - size)
                pending = inflater.unconsumed_tail
                size += len(piece)
                if keep:
                    out.append(piece)
            if size >= limit or inflater.eof:
                break
    except zlib.error:
        pass
    return ihdr, b"".join(out) if keep else size


def _png_rows_missing(img: Image.Image, data: bytes) -> bool:
    """True when a PNG that Pillow decoded without an error holds fewer rows than its header says."""
    w, h = img.size
    if not img.info.get("interlace") and np.asarray(img.crop((0, h - 1, w, h))).any():
        return False  # the row decoded last is there
    ihdr = next((p for kind, p in _png_chunks(data) if kind == b"IHDR"), b"")
    if len(ihdr) < 13:
        return False
    expected = _png_raw_size(ihdr)
    return _png_inflate(data, expected, keep=False)[1] < expected


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _rebuilt_png(data: bytes, name: str) -> Image.Image | None:
    """The PNG rebuilt from the part of its image data that inflates, the rest zero (black); None
    when there is nothing to rebuild from or the result does not decode either."""
    ihdr = next((p for kind, p in _png_chunks(data) if kind == b"IHDR"), b"")
    if len(ihdr) < 13:
        return None
    size = _png_raw_size(ihdr)
    raw = _png_inflate(data, size)[1]
    end = 0  # keep the rows up to the first one whose filter type is not one (data past the cut)
    for row in _png_row_sizes(ihdr):
        if end >= len(raw) or raw[end] > 4:
            break
        end += row
    if not end:
        return None
    raw = raw[:end]
    before = []
    for kind, payload in _png_chunks(data):
        if kind in (b"IDAT", b"IEND"):
            break
        before.append(_chunk(kind, payload))
    rebuilt = (
        _PNG_SIGNATURE
        + b"".join(before)
        + _chunk(b"IDAT", zlib.compress(raw.ljust(size, b"\0"), 1))
        + _chunk(b"IEND", b"")
    )
    try:
        img = _identify(io.BytesIO(rebuilt))
        img.load()
    except (OSError, SyntaxError, ValueError, EOFError, Image.UnidentifiedImageError) as exc:
        log.debug("%s: the rebuilt PNG does not decode either (%s)", name, exc)
        return None
    return img


def _ended_jpeg(data: bytes, name: str) -> Image.Image | None:
    """A JPEG that Pillow refuses, decoded by Pillow with an end marker appended (libjpeg makes up
    what is missing); None when that does not decode either."""
    try:
        img = _identify(io.BytesIO(data + b"\xff\xd9"))
        img.load()
    except (OSError, SyntaxError, ValueError, EOFError, Image.UnidentifiedImageError) as exc:
        log.debug("%s: the JPEG does not decode with an end marker either (%s)", name, exc)
        return None
    return img


def _jpeg_checked(data: bytes) -> str | None:
    """:func:`jpeg_data_loss`, None when libjpeg-turbo cannot read the file at all."""
    try:
        return jpeg_data_loss(data)
    except ValueError:
        return None


def _load_with_pillow(
    img: ImageFile.ImageFile, data: bytes, name: str, max_pixels: int, allow_truncated: bool
) -> tuple[Image.Image, bool]:
    """Decode the pixels of an opened image with Pillow -> (image, truncated)."""
    try:
        img.load()
    except Image.DecompressionBombError as exc:  # a plugin's own check (e.g. TIFF tiles)
        raise _too_large(name, "too many", max_pixels) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if img.format in JPEG_FORMATS:
            rescued = _ended_jpeg(data, name)
        elif img.format == "PNG":
            rescued = _rebuilt_png(data, name)
        else:
            rescued = None
        if rescued is None:
            raise _corrupt(name, exc) from exc
        if not allow_truncated:
            raise _truncated(name, str(exc)) from exc
        return rescued, True
    if img.format in JPEG_FORMATS:
        problem = _jpeg_checked(data)
        if problem and not allow_truncated:
            raise _truncated(name, problem)
        return img, problem is not None
    if img.format == "PNG" and _png_rows_missing(img, data):
        if not allow_truncated:
            raise _truncated(name, "its header promises more rows than its data hold")
        return img, True
    return img, False


def decode_image(
    source: str | Path | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, allow_truncated: bool = False
) -> DecodedImage:
    """Decode a file or bytes to RGB uint8 pixels as displayed (EXIF orientation applied).

    Args:
        source: A path or the encoded bytes.
        max_pixels: Images with more pixels are refused from their header (decompression-bomb guard).
        allow_truncated: Decode a file that lacks part of its pixel data (the decoder fills the
            missing part) and mark it ``truncated``, instead of refusing it.

    Raises:
        TruncatedImageError: part of the image is not in the file (see the module docstring).
        ImageDecodeError: a missing, unreadable, empty, non-image, too large or undecodable input.
    """
    name = _name(source)
    data = read_source(source)
    img = _header(data, name, max_pixels)
    if img.format in JPEG_FORMATS and img.mode in ("RGB", "L"):
        orientation = exif_orientation(img)
        try:
            pixels, problem = _decode_jpeg(data, grey=img.mode == "L", progressive=bool(img.info.get("progressive")))
        except ValueError as exc:  # not for libjpeg-turbo (e.g. a lossless JPEG): Pillow decides
            log.debug("%s: libjpeg-turbo refuses it (%s); decoding with Pillow", name, exc)
        else:
            if problem and not allow_truncated:
                raise _truncated(name, problem)
            return DecodedImage(apply_orientation(pixels, orientation), problem is not None, img.format, orientation)
    img, truncated = _load_with_pillow(img, data, name, max_pixels, allow_truncated)
    try:
        pixels = to_rgb_array(img)
    except (OSError, ValueError) as exc:
        raise ImageDecodeError(f"{name} has an unsupported image mode {img.mode!r}.") from exc
    orientation = exif_orientation(img)
    return DecodedImage(apply_orientation(pixels, orientation), truncated, img.format or "", orientation)


def load_rgb(
    source: str | Path | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, allow_truncated: bool = False
) -> np.ndarray:
    """Decode a file or bytes to an RGB uint8 array (H, W, 3) as displayed; see :func:`decode_image`
    (use it to learn whether an image decoded with ``allow_truncated`` was truncated)."""
    return decode_image(source, max_pixels=max_pixels, allow_truncated=allow_truncated).pixels


def open_image(
    source: str | Path | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    load: bool = True,
    allow_truncated: bool = False,
) -> Image.Image:
    """Open an image with Pillow, checking its pixel count from the header, and decode it.

    The pixels are as stored (no EXIF orientation applied; see :func:`exif_orientation`). The
    file is read into memory, so nothing is left open.

    Args:
        source: A path or the encoded bytes.
        max_pixels: Images with more pixels are refused (decompression-bomb guard).
        load: False stops after the header checks (format, mode and size known, pixels not
            decoded); errors in the pixel data then go unnoticed.
        allow_truncated: As in :func:`decode_image`; a truncated image has ``info["truncated"]``.

    Raises:
        TruncatedImageError: part of the image is not in the file (only when loading).
        ImageDecodeError: empty, missing, unreadable, corrupt, non-image or too-large input.
    """
    name = _name(source)
    data = read_source(source)
    img = _header(data, name, max_pixels)
    if not load:
        return img
    img, truncated = _load_with_pillow(img, data, name, max_pixels, allow_truncated)
    if truncated:
        img.info["truncated"] = True
    return img


def read_device_jpeg(source: str | Path | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DeviceJpeg | None:
    """A JPEG's bytes for a device decoder, when every libjpeg decodes them to :func:`load_rgb`'s
    pixels (before orientation): an 8-bit YCbCr or greyscale JPEG, ending with its end marker,
    whose data are all there and draw no libjpeg warning at all (:func:`jpeg_warning` and
    :func:`progression_gap`, on the CPU; a device decoder's libjpeg would print even a harmless
    warning on the standard error). None for any other image: decode it with :func:`load_rgb`,
    which gives its pixels or its error.

    Raises:
        ImageDecodeError: the header errors of :func:`load_rgb` (missing, unreadable, empty,
            non-image, too large).
    """
    data = read_source(source)
    img = _header(data, _name(source), max_pixels)
    if img.format not in JPEG_FORMATS or img.mode not in ("RGB", "L") or not data.endswith(b"\xff\xd9"):
        return None
    try:
        if jpeg_warning(data) is not None or progression_gap(data):
            return None
    except ValueError:
        return None
    return DeviceJpeg(data, exif_orientation(img))
