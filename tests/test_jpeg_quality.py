"""IJG quality estimation from JPEG quantisation tables."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from ssp_detect.data.jpeg_quality import (
    IJG_LUMINANCE_TABLE,
    estimate_jpeg_history,
    estimate_jpeg_quality,
    ijg_luminance_table,
)


@pytest.fixture(scope="module")
def photo_like() -> np.ndarray:
    rng = np.random.default_rng(0)
    base = np.linspace(30, 220, 96)[None, :, None] + np.linspace(0, 20, 80)[:, None, None]
    return np.clip(base + rng.normal(0, 10, (80, 96, 3)), 0, 255).astype(np.uint8)


def _pil_jpeg(pixels: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", **options)
    return buffer.getvalue()


@pytest.mark.parametrize("quality", [1, 5, 10, 25, 49, 50, 51, 75, 90, 95, 99, 100])
@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:0"])
def test_estimate_equals_pil_quality(photo_like, tmp_path: Path, quality: int, subsampling: str) -> None:
    data = _pil_jpeg(photo_like, quality=quality, subsampling=subsampling)
    assert estimate_jpeg_quality(Image.open(io.BytesIO(data))) == quality
    path = tmp_path / "image.jpg"
    path.write_bytes(data)
    assert estimate_jpeg_quality(path) == quality
    assert estimate_jpeg_quality(str(path)) == quality


def test_every_quality_is_recovered(photo_like) -> None:
    small = photo_like[:16, :16]
    estimates = [estimate_jpeg_quality(Image.open(io.BytesIO(_pil_jpeg(small, quality=q)))) for q in range(1, 101)]
    assert estimates == list(range(1, 101))


@pytest.mark.parametrize("quality", [30, 75, 95])
def test_estimate_equals_opencv_quality(photo_like, quality: int) -> None:
    ok, encoded = cv2.imencode(".jpg", photo_like, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    assert estimate_jpeg_quality(Image.open(io.BytesIO(encoded.tobytes()))) == quality


def test_custom_table_gets_nearest_quality(photo_like) -> None:
    table = ijg_luminance_table(80).ravel().tolist()
    table[0] += 1  # a camera-like table one step away from IJG q80
    data = _pil_jpeg(photo_like, qtables=[table, table])
    assert estimate_jpeg_quality(Image.open(io.BytesIO(data))) == 80


def test_non_jpeg_gives_none(photo_like, tmp_path: Path) -> None:
    png = tmp_path / "image.png"
    Image.fromarray(photo_like).save(png)
    assert estimate_jpeg_quality(png) is None
    assert estimate_jpeg_quality(Image.fromarray(photo_like)) is None
    decoded = Image.open(io.BytesIO(_pil_jpeg(photo_like, quality=70)))
    assert estimate_jpeg_quality(decoded.convert("L")) is None  # conversion drops the JPEG format


def test_ijg_table_scaling() -> None:
    np.testing.assert_array_equal(ijg_luminance_table(50), IJG_LUMINANCE_TABLE)
    assert (ijg_luminance_table(100) == 1).all()
    assert ijg_luminance_table(1).max() == 255
    assert ijg_luminance_table(75)[0, 0] == 8  # (16 * 50 + 50) // 100
    with pytest.raises(ValueError, match="outside 1-100"):
        ijg_luminance_table(0)


def test_unreadable_paths_raise_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        estimate_jpeg_quality(tmp_path / "missing.jpg")
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("not an image")
    with pytest.raises(ValueError, match="not a readable image"):
        estimate_jpeg_quality(not_image)


@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:2", "4:2:0"])
def test_history_is_the_quality_and_the_subsampling(photo_like, tmp_path: Path, subsampling: str) -> None:
    path = tmp_path / "image.jpg"
    path.write_bytes(_pil_jpeg(photo_like, quality=83, subsampling=subsampling))
    assert estimate_jpeg_history(path) == (83, subsampling)
    grey = tmp_path / "grey.jpg"
    grey.write_bytes(_pil_jpeg(photo_like[..., 0], quality=60))
    assert estimate_jpeg_history(grey) == (60, "4:2:0")  # one channel: no subsampling, the default stands in
    png = tmp_path / "image.png"
    Image.fromarray(photo_like).save(png)
    assert estimate_jpeg_history(png) is None
    with pytest.raises(ValueError, match="does not exist"):
        estimate_jpeg_history(tmp_path / "missing.jpg")
