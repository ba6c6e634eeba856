import io

import numpy as np
import pytest
from PIL import Image

from ssp_detect.data.decode import ImageDecodeError, load_rgb


def _png_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def test_rgb_grey_alpha_palette_cmyk(rng):
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    np.testing.assert_array_equal(load_rgb(_png_bytes(Image.fromarray(rgb))), rgb)
    grey = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    out = load_rgb(_png_bytes(Image.fromarray(grey)))
    assert out.shape == (20, 30, 3) and (out == grey[..., None]).all()
    rgba = np.concatenate([rgb, np.full((20, 30, 1), 10, np.uint8)], axis=2)
    np.testing.assert_array_equal(load_rgb(_png_bytes(Image.fromarray(rgba, "RGBA"))), rgb)  # alpha ignored, colours kept
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
    with pytest.raises(ImageDecodeError, match="over the limit"):
        load_rgb(big, max_pixels=10_000)
    with pytest.raises(ImageDecodeError, match="does not exist"):
        load_rgb(tmp_path / "nope.png")
