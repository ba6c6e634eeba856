import errno
import io
import struct
import warnings
import zlib

import cv2
import numpy as np
import pytest
import simplejpeg
from PIL import Image, ImageOps, features

from ssp_detect.data import decode
from ssp_detect.data.decode import (
    DecodedImage,
    ImageDecodeError,
    TruncatedImageError,
    apply_orientation,
    decode_image,
    jpeg_data_loss,
    load_rgb,
    open_image,
    read_device_jpeg,
)
from tests.helpers import noisy_image

CUTS = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95)  # percent of the file kept
JPEG_END = b"\xff\xd9"


def _png_bytes(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


PNG_END = _chunk(b"IEND", b"")


def _png(pixels: np.ndarray, *, height: int | None = None, interlaced: bool = False) -> bytes:
    """An 8-bit RGB PNG written by hand (Adam7 when ``interlaced``), its header claiming ``height`` rows."""
    h, w = pixels.shape[:2]
    if interlaced:
        passes = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1))
        parts = [pixels[y0::dy, x0::dx] for y0, x0, dy, dx in passes]
    else:
        parts = [pixels]
    raw = b"".join(b"\0" + row.tobytes() for part in parts if part.shape[1] for row in part)
    ihdr = struct.pack(">IIBBBBB", w, height or h, 8, 2, 0, 0, int(interlaced))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw)) + PNG_END


def _encoded(kind: str, pixels: np.ndarray) -> tuple[bytes, bytes]:
    """(the file, its end marker) of a baseline or progressive JPEG or a PNG."""
    img = Image.fromarray(pixels)
    if kind == "png":
        return _png_bytes(img), PNG_END
    return _png_bytes(img, "JPEG", quality=90, progressive=kind == "progressive"), JPEG_END


def test_rgb_grey_alpha_palette_cmyk(rng):
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    np.testing.assert_array_equal(load_rgb(_png_bytes(Image.fromarray(rgb))), rgb)
    grey = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    out = load_rgb(_png_bytes(Image.fromarray(grey)))
    assert out.shape == (20, 30, 3) and (out == grey[..., None]).all()
    rgba = np.concatenate([rgb, np.full((20, 30, 1), 10, np.uint8)], axis=2)
    np.testing.assert_array_equal(
        load_rgb(_png_bytes(Image.fromarray(rgba, "RGBA"))), rgb
    )  # alpha ignored, colours kept
    pal = Image.fromarray(rgb).quantize(16)
    np.testing.assert_array_equal(load_rgb(_png_bytes(pal)), np.asarray(pal.convert("RGB")))
    cmyk = Image.fromarray(rgb).convert("CMYK")
    np.testing.assert_array_equal(load_rgb(_png_bytes(cmyk, "TIFF")), np.asarray(cmyk.convert("RGB")))


def test_sixteen_bit_keeps_the_top_byte(rng):
    v16 = rng.integers(0, 65536, (10, 12), dtype=np.uint16)
    img = Image.fromarray(v16)  # mode I;16
    out = load_rgb(_png_bytes(img))
    np.testing.assert_array_equal(out[..., 0], (v16 >> 8).astype(np.uint8))


@pytest.mark.parametrize(
    "data,match",
    [(b"", "empty"), (b"definitely not an image", "not an image format"), (None, "truncated or corrupt")],
)
def test_bad_bytes_raise_one_sentence(rng, data, match):
    if data is None:
        full = _png_bytes(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
        data = full[: len(full) // 2]
    with pytest.raises(ImageDecodeError, match=match):
        load_rgb(data)


def test_pixel_limit_and_missing_file(tmp_path):
    big = _png_bytes(Image.new("RGB", (200, 200)))
    with pytest.raises(ImageDecodeError, match=r"has 200x200 pixels, over the limit of 10,000; resize it first or"):
        load_rgb(big, max_pixels=10_000)
    with pytest.raises(ImageDecodeError, match="does not exist"):
        load_rgb(tmp_path / "nope.png")


# --- JPEG decoding: libjpeg-turbo through simplejpeg, bit-identical to Pillow ------------------


def _jpeg_variants(pixels: np.ndarray) -> dict[str, bytes]:
    img = Image.fromarray(pixels)
    out = {
        f"pil-{k}": _png_bytes(img, "JPEG", **kw)
        for k, kw in {
            "420": {},
            "444": {"subsampling": 0, "quality": 95},
            "422": {"subsampling": 1},
            "q30": {"quality": 30},
            "progressive": {"progressive": True},
            "optimized": {"optimize": True},
            "q100": {"quality": 100},
        }.items()
    }
    out["grey"] = _png_bytes(img.convert("L"), "JPEG")
    out["grey-progressive"] = _png_bytes(img.convert("L"), "JPEG", progressive=True)
    out["pil-rgb"] = _png_bytes(img, "JPEG", keep_rgb=True)  # Adobe RGB, no YCbCr transform
    out["cv2-restart"] = cv2.imencode(".jpg", pixels[..., ::-1], [cv2.IMWRITE_JPEG_RST_INTERVAL, 3])[1].tobytes()
    out["cv2-progressive"] = cv2.imencode(".jpg", pixels[..., ::-1], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    out["mpo"] = _png_bytes(img, "MPO", save_all=True, append_images=[img.transpose(Image.Transpose.ROTATE_180)])
    return out


@pytest.mark.parametrize("size", [(61, 83), (96, 128), (7, 300)])
def test_jpegs_decode_as_pillow_decodes_them(rng, size):
    # The detector's official-checkpoint numbers rest on Pillow's pixels: the faster decoder must give the same.
    for name, data in _jpeg_variants(noisy_image(rng, size, noise=20.0)).items():
        got = decode_image(data)
        want = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert not got.truncated and got.format in ("JPEG", "MPO") and got.orientation == 1, name
        np.testing.assert_array_equal(got.pixels, want, err_msg=name)


def test_a_harmless_libjpeg_warning_is_not_truncation(rng):
    data = _png_bytes(Image.fromarray(noisy_image(rng)), "JPEG")
    padded = data[:-2] + bytes(64) + JPEG_END  # every pixel is there, then junk before the end marker
    with pytest.raises(ValueError, match="extraneous bytes before marker 0xd9"):
        simplejpeg.decode_jpeg(padded)  # libjpeg warns, so the strict decoder stops
    assert jpeg_data_loss(padded) is None
    got = decode_image(padded)
    assert not got.truncated
    np.testing.assert_array_equal(got.pixels, load_rgb(data))


# --- Task 1: no verdict from pixels that are not in the file -----------------------------------


@pytest.mark.parametrize("kind", ["baseline", "progressive", "png"])
def test_cut_files_are_refused_unless_allowed(rng, kind):
    data, end = _encoded(kind, noisy_image(rng, (240, 320), noise=20.0))
    full = decode_image(data)
    assert not full.truncated
    for pct in CUTS:
        for tail in (b"", end):
            cut = data[: len(data) * pct // 100] + tail
            with pytest.raises(TruncatedImageError, match=r"^uploaded data is truncated or corrupt \(.*allow_trunc"):
                load_rgb(cut)
            with pytest.raises(TruncatedImageError):
                open_image(cut)
            got = decode_image(cut, allow_truncated=True)
            assert got.truncated and got.pixels.shape == full.pixels.shape and got.pixels.dtype == np.uint8, (pct, tail)
            np.testing.assert_array_equal(load_rgb(cut, allow_truncated=True), got.pixels)
            assert open_image(cut, allow_truncated=True).info["truncated"]
            if kind != "progressive" and pct >= 30:  # what the file holds is decoded as before the cut
                np.testing.assert_array_equal(got.pixels[:8], full.pixels[:8])


def test_a_cut_jpeg_is_filled_grey_and_that_grey_is_refused(rng):
    data = _png_bytes(Image.fromarray(noisy_image(rng, (240, 320), noise=20.0)), "JPEG", quality=90)
    cut = data[: len(data) * 6 // 10] + JPEG_END
    Image.open(io.BytesIO(cut)).load()  # Pillow alone decodes it without an error...
    filled = decode_image(cut, allow_truncated=True).pixels
    assert (filled[-16:] == 128).all()  # ...painting the missing rows grey
    with pytest.raises(TruncatedImageError, match="premature end of data segment"):
        load_rgb(cut)


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_a_progressive_jpeg_cut_between_scans_is_refused(rng, mode):
    # libjpeg draws the coarser image it has without a warning; the scan headers show what is missing.
    data = _png_bytes(Image.fromarray(noisy_image(rng, (96, 128), noise=20.0)).convert(mode), "JPEG", progressive=True)
    assert jpeg_data_loss(data) is None and not decode_image(data).truncated
    scans = [i for i in range(len(data) - 1) if data[i : i + 2] == b"\xff\xda"]
    assert len(scans) > 4
    for start in scans[1:]:
        cut = data[:start] + JPEG_END
        with pytest.raises(TruncatedImageError, match="its progressive scans stop before the image is complete"):
            load_rgb(cut)
        assert decode_image(cut, allow_truncated=True).truncated and jpeg_data_loss(cut)


def test_headers_that_promise_more_rows_than_the_data_hold(rng):
    pixels = noisy_image(rng, (40, 56), noise=20.0)
    jpeg = bytearray(_png_bytes(Image.fromarray(pixels), "JPEG"))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 7] = struct.pack(">H", 40 + 24)
    for data, h in [(bytes(jpeg), 64), (_png(pixels, height=50), 50), (_png(pixels, height=50, interlaced=True), 50)]:
        with pytest.raises(TruncatedImageError, match="truncated or corrupt"):
            load_rgb(data)
        got = decode_image(data, allow_truncated=True)
        assert got.truncated and got.pixels.shape == (h, 56, 3)
    # A hand-written PNG whose data are all there, plain and interlaced, decodes exactly; so does a
    # PNG whose last row is black (the cheap test for missing rows is only a first look).
    pixels[-1] = 0
    for data in (_png(pixels), _png(pixels, interlaced=True)):
        got = decode_image(data)
        assert not got.truncated
        np.testing.assert_array_equal(got.pixels, pixels)


def test_damaged_data_are_refused(rng):
    jpeg = bytearray(_png_bytes(Image.fromarray(noisy_image(rng, (120, 160), noise=20.0)), "JPEG"))
    start = jpeg.index(b"\xff\xda") + 20
    jpeg[start : start + 400] = b"\xff\xd5" * 200  # restart markers where the scan's data should be
    with pytest.raises(TruncatedImageError):
        load_rgb(bytes(jpeg))
    png = bytearray(_png_bytes(Image.fromarray(noisy_image(rng, (120, 160), noise=20.0))))
    png[len(png) // 2 : len(png) // 2 + 64] = bytes(64)
    with pytest.raises(TruncatedImageError):
        load_rgb(bytes(png))
    assert decode_image(bytes(png), allow_truncated=True).truncated


def test_device_reader_refuses_what_load_rgb_refuses(tmp_path, rng):
    for kind in ("baseline", "progressive"):
        data, end = _encoded(kind, noisy_image(rng, (120, 160), noise=20.0))
        path = tmp_path / f"{kind}.jpg"
        path.write_bytes(data)
        assert read_device_jpeg(path).data == data
        for pct in CUTS:
            path.write_bytes(data[: len(data) * pct // 100] + end)
            assert read_device_jpeg(path) is None  # left to load_rgb, which refuses it
            with pytest.raises(TruncatedImageError):
                load_rgb(path)
    path.write_bytes(_png_bytes(Image.new("RGB", (300, 300)), "JPEG"))
    with pytest.raises(ImageDecodeError, match="over the limit of 1,000"):
        read_device_jpeg(path, max_pixels=1000)


# --- Task 3: EXIF orientation ------------------------------------------------------------------


def _with_orientation(img: Image.Image, fmt: str, orientation: int, **kwargs) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _png_bytes(img, fmt, exif=exif.tobytes(), **kwargs)


def test_every_exif_orientation_is_applied_as_pillow_applies_it(rng):
    pixels = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    for orientation in range(1, 9):
        data = _with_orientation(Image.fromarray(pixels), "PNG", orientation)
        want = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
        got = decode_image(data)
        assert got.orientation == orientation and got.pixels.flags.c_contiguous
        np.testing.assert_array_equal(got.pixels, want)
        np.testing.assert_array_equal(apply_orientation(pixels, orientation), want)


def test_a_rotated_photo_decodes_to_what_a_viewer_shows(rng):
    pixels = noisy_image(rng, (48, 80), noise=20.0)
    upright = np.rot90(pixels, -1)  # orientation 6: turn 90 degrees clockwise to display
    # Lossless: a PNG with orientation 6 and the turned pixels saved without one.
    np.testing.assert_array_equal(
        load_rgb(_with_orientation(Image.fromarray(pixels), "PNG", 6)),
        load_rgb(_png_bytes(Image.fromarray(np.ascontiguousarray(upright)))),
    )
    # JPEG: the same file with and without its orientation differ by the turn exactly...
    plain = _png_bytes(Image.fromarray(pixels), "JPEG", quality=95)
    turned = _with_orientation(Image.fromarray(pixels), "JPEG", 6, quality=95)
    assert load_rgb(turned).shape == (80, 48, 3)
    np.testing.assert_array_equal(load_rgb(turned), np.rot90(load_rgb(plain), -1))
    # ...and the turned pixels saved as JPEG are within compression error of it.
    saved_upright = load_rgb(_png_bytes(Image.fromarray(np.ascontiguousarray(upright)), "JPEG", quality=95))
    assert np.abs(saved_upright.astype(int) - load_rgb(turned)).mean() < 3


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_a_damaged_exif_block_is_ignored(rng):
    pixels = noisy_image(rng)
    plain = _png_bytes(Image.fromarray(pixels), "JPEG")
    junk_exif = b"\xff\xe1" + struct.pack(">H", 2 + 6 + 12) + b"Exif\0\0" + b"MM\0*\0\0\0\x08\xff\xff\xff\xff"
    data = plain[:2] + junk_exif + plain[2:]
    got = decode_image(data)
    assert got.orientation == 1
    np.testing.assert_array_equal(got.pixels, load_rgb(plain))


# --- Task 2: HEIC and AVIF ---------------------------------------------------------------------


def test_heic_and_avif_decode(rng):
    pixels = noisy_image(rng, (64, 96), noise=4.0)
    heic = _png_bytes(Image.fromarray(pixels), "HEIF", quality=95)
    got = decode_image(heic)
    assert got.format == "HEIF" and got.pixels.shape == (64, 96, 3) and got.pixels.dtype == np.uint8
    assert np.abs(got.pixels.astype(int) - pixels).mean() < 4
    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF codec")
    avif = _png_bytes(Image.fromarray(pixels), "AVIF", quality=95)
    got = decode_image(avif)
    assert got.format == "AVIF" and got.pixels.shape == (64, 96, 3)
    assert np.abs(got.pixels.astype(int) - pixels).mean() < 4
    rotated = decode_image(_with_orientation(Image.fromarray(pixels), "AVIF", 6, quality=95))
    assert rotated.orientation == 6 and rotated.pixels.shape == (96, 64, 3)


# --- Task 4: pixel limits, permission, missing files -------------------------------------------


def _big_png(w: int, h: int, *, complete: bool = True) -> bytes:
    """A greyscale PNG of w x h black pixels (small when compressed); only its first row without ``complete``."""
    raw = zlib.compress(bytes((w + 1) * (h if complete else 1)), 9)
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + ihdr + _chunk(b"IDAT", raw) + PNG_END


def test_our_pixel_limit_replaces_pillows(monkeypatch):
    limit = Image.MAX_IMAGE_PIXELS
    data = _big_png(10_000, 9_000)  # 90 MP: over Pillow's own 89.5 MP warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        img = open_image(data, max_pixels=150_000_000, load=False)
        assert img.size == (10_000, 9_000)
        with pytest.raises(ImageDecodeError, match=r"has 10000x9000 pixels, over the limit of 80,000,000; .*max_pix"):
            open_image(data, max_pixels=80_000_000, load=False)
        bomb = _big_png(60_000, 60_000, complete=False)  # 3.6 GP promised: Pillow's own check would raise its error
        with pytest.raises(ImageDecodeError, match=r"has 60000x60000 pixels, over the limit of 100,000,000"):
            load_rgb(bomb)
    assert Image.MAX_IMAGE_PIXELS == limit  # Pillow's global is left alone


@pytest.mark.slow
def test_a_90_megapixel_image_decodes_under_a_raised_limit():
    pixels = load_rgb(_big_png(10_000, 9_000), max_pixels=150_000_000)
    assert pixels.shape == (9_000, 10_000, 3) and not pixels.any()


def test_unreadable_sources_are_named(tmp_path, monkeypatch):
    (tmp_path / "folder").mkdir()
    with pytest.raises(ImageDecodeError, match=r"folder is a folder, not an image file\.$"):
        load_rgb(tmp_path / "folder")
    with pytest.raises(ImageDecodeError, match=r"\*\.jpg matches no file\.$"):
        load_rgb(tmp_path / "*.jpg")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(ImageDecodeError, match=r"dangling\.jpg is a link to .*gone\.jpg, which does not exist\.$"):
        load_rgb(tmp_path / "dangling.jpg")
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    with pytest.raises(ImageDecodeError, match=r"loop\.jpg is a link that loops back on itself\.$"):
        load_rgb(tmp_path / "loop.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageDecodeError, match=r"empty\.jpg is empty \(0 bytes\)\.$"):
        load_rgb(tmp_path / "empty.jpg")
    # Permission denied, whoever runs the test (root reads any file, so the refusal is simulated).
    locked = tmp_path / "locked.jpg"
    locked.write_bytes(_png_bytes(Image.new("RGB", (8, 8)), "JPEG"))

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(decode, "open", refuse, raising=False)
    with pytest.raises(ImageDecodeError, match=r"locked\.jpg cannot be read: permission denied\.$"):
        load_rgb(locked)


def test_decoded_image_record_defaults():
    record = DecodedImage(np.zeros((2, 2, 3), np.uint8))
    assert not record.truncated and record.orientation == 1
