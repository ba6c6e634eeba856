"""A corpus of awkward and hostile inputs, each made in the test: every one decodes to RGB uint8
pixels as displayed, or is refused with one sentence naming the file (never a made-up image)."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from ssp_detect.data.decode import ImageDecodeError, TruncatedImageError, decode_image, load_rgb
from tests.helpers import noisy_image

H, W = 48, 64
PIXELS = noisy_image(np.random.default_rng(7), (H, W), noise=20.0)


def _save(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _big_photo() -> np.ndarray:
    return noisy_image(np.random.default_rng(8), (240, 320), noise=20.0)


def _cut(data: bytes, pct: int, end: bytes) -> bytes:
    return data[: len(data) * pct // 100] + end


def _png_header(w: int, h: int) -> bytes:
    """A PNG whose header promises w x h pixels, followed by one row of data."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    row = _chunk(b"IDAT", zlib.compress(bytes(3 * w + 1)))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + row + _chunk(b"IEND", b"")


def _jpeg_header(w: int, h: int) -> bytes:
    data = bytearray(_save(Image.fromarray(PIXELS), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", h, w)
    return bytes(data)


def _pillow_rgb(data: bytes) -> np.ndarray:
    """What Pillow (or the pillow-heif plugin) itself decodes: the same codec, so the same pixels."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _between_scans() -> bytes:
    data = _save(Image.fromarray(PIXELS), "JPEG", progressive=True)
    return data[: data.index(b"\xff\xda", data.index(b"\xff\xda") + 2)] + b"\xff\xd9"  # the first scan only


def _animated_gif() -> bytes:
    frames = [Image.fromarray(PIXELS).quantize(64), Image.fromarray(255 - PIXELS).quantize(64)]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(Image.fromarray(PIXELS), "JPEG", exif=exif.tobytes())


def _palette_with_transparency() -> bytes:
    img = Image.fromarray(PIXELS).quantize(16)
    img.info["transparency"] = 0
    return _save(img, "PNG", transparency=0)


# name -> (file name, bytes maker, expected pixels from the bytes)
DECODED: dict[str, tuple[str, Callable[[], bytes], Callable[[bytes], np.ndarray]]] = {
    "png named .jpg": ("png.jpg", lambda: _save(Image.fromarray(PIXELS), "PNG"), lambda _: PIXELS),
    "jpeg named .png": ("jpeg.png", lambda: _save(Image.fromarray(PIXELS), "JPEG"), _pillow_rgb),
    "1-bit png": (
        "bilevel.png",
        lambda: _save(Image.fromarray(PIXELS[..., 0] > 128), "PNG"),
        lambda _: np.repeat(np.where(PIXELS[..., :1] > 128, 255, 0).astype(np.uint8), 3, axis=2),
    ),
    "16-bit png": (
        "deep.png",
        lambda: _save(Image.fromarray(PIXELS[..., 0].astype(np.uint16) * 257), "PNG"),
        lambda _: np.repeat(PIXELS[..., :1], 3, axis=2),
    ),
    "cmyk jpeg": ("cmyk.jpg", lambda: _save(Image.fromarray(PIXELS).convert("CMYK"), "JPEG"), _pillow_rgb),
    "palette png with transparency": (
        "palette.png",
        _palette_with_transparency,
        lambda _: np.asarray(Image.fromarray(PIXELS).quantize(16).convert("RGB")),
    ),
    "greyscale jpeg": ("grey.jpg", lambda: _save(Image.fromarray(PIXELS[..., 1]), "JPEG"), _pillow_rgb),
    "greyscale png": (
        "grey.png",
        lambda: _save(Image.fromarray(PIXELS[..., 1]), "PNG"),
        lambda _: np.repeat(PIXELS[..., 1:2], 3, axis=2),
    ),
    "animated gif": (
        "anim.gif",
        _animated_gif,
        lambda _: np.asarray(Image.fromarray(PIXELS).quantize(64).convert("RGB")),
    ),  # the first frame
    "heic": ("phone.heic", lambda: _save(Image.fromarray(PIXELS), "HEIF", quality=90), _pillow_rgb),
    "avif": ("phone.avif", lambda: _save(Image.fromarray(PIXELS), "AVIF", quality=90), _pillow_rgb),
    "exif-rotated jpeg": (
        "rotated.jpg",
        _rotated_jpeg,
        lambda data: np.ascontiguousarray(np.rot90(_pillow_rgb(data), -1)),
    ),
}

# name -> (file name, bytes maker, error class, message after the file's path)
REFUSED: dict[str, tuple[str, Callable[[], bytes], type[ImageDecodeError], str]] = {
    "zero bytes": ("zero.jpg", lambda: b"", ImageDecodeError, r"is empty \(0 bytes\)\."),
    "empty jpeg (no image)": (
        "empty.jpg",
        lambda: b"\xff\xd8\xff\xd9",
        ImageDecodeError,
        r"is not an image format that Pillow can read\.",
    ),
    "text named .jpg": (
        "notes.jpg",
        lambda: b"shopping list: eggs, milk\n" * 20,
        ImageDecodeError,
        r"is not an image format that Pillow can read\.",
    ),
    "png bomb header": (
        "bomb.png",
        lambda: _png_header(100_000, 100_000),
        ImageDecodeError,
        r"has 100000x100000 pixels, over the limit of 100,000,000; resize it first or raise the "
        r"pixel limit",
    ),
    "jpeg bomb header": (
        "bomb.jpg",
        lambda: _jpeg_header(65_000, 65_000),
        ImageDecodeError,
        r"has 65000x65000 pixels, over the limit of 100,000,000",
    ),
    "jpeg promising more rows": (
        "tall.jpg",
        lambda: _jpeg_header(W, H + 32),
        TruncatedImageError,
        r"is truncated or corrupt \(Corrupt JPEG data: premature end of data segment\)",
    ),
    "progressive jpeg cut between scans": (
        "scans.jpg",
        lambda: _between_scans(),
        TruncatedImageError,
        r"is truncated or corrupt \(its progressive scans stop before the image "
        r"is complete\)",
    ),
    "three bytes": ("tiny.jpg", lambda: b"hi\n", ImageDecodeError, r"is not an image format that Pillow can read\."),
    "one byte of a bmp": ("tiny.bmp", lambda: b"B", ImageDecodeError, r"is not an image format that Pillow can read\."),
    "png header cut": (
        "header.png",
        lambda: _save(Image.fromarray(PIXELS), "PNG")[:20],
        ImageDecodeError,
        r"could not be decoded: it is truncated or corrupt \(Truncated File Read\)\.",
    ),
}
for _pct in (25, 50, 75):
    for _end, _label in ((b"", ""), (b"\xff\xd9", " + end marker")):
        REFUSED[f"baseline jpeg cut at {_pct}%{_label}"] = (
            f"cut{_pct}{len(_end)}.jpg",
            lambda p=_pct, e=_end: _cut(_save(Image.fromarray(_big_photo()), "JPEG"), p, e),
            TruncatedImageError,
            r"is truncated or corrupt \(",
        )
        REFUSED[f"progressive jpeg cut at {_pct}%{_label}"] = (
            f"prog{_pct}{len(_end)}.jpg",
            lambda p=_pct, e=_end: _cut(_save(Image.fromarray(_big_photo()), "JPEG", progressive=True), p, e),
            TruncatedImageError,
            r"is truncated or corrupt \(",
        )
    for _end, _label in ((b"", ""), (_chunk(b"IEND", b""), " + IEND")):
        REFUSED[f"png cut at {_pct}%{_label}"] = (
            f"cut{_pct}{len(_end)}.png",
            lambda p=_pct, e=_end: _cut(_save(Image.fromarray(_big_photo()), "PNG"), p, e),
            TruncatedImageError,
            r"is truncated or corrupt \(",
        )


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", list(DECODED))
def test_decoded(tmp_path, case):
    name, make, expected = DECODED[case]
    if name.endswith(".avif") and not features.check("avif"):
        pytest.skip("this Pillow has no AVIF codec")
    data = make()
    got = decode_image(_write(tmp_path, name, data))
    shape = (W, H, 3) if "rotated" in case else (H, W, 3)
    assert got.pixels.shape == shape and got.pixels.dtype == np.uint8 and not got.truncated
    np.testing.assert_array_equal(got.pixels, expected(data))


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_in_one_sentence(tmp_path, case):
    name, make, error, message = REFUSED[case]
    path = _write(tmp_path, name, make())
    with pytest.raises(error) as refused:
        load_rgb(path)
    text = str(refused.value)
    assert re.match(re.escape(str(path)) + " " + message, text), text
    assert text.endswith(".") and text.count(". ") == 0 and "\n" not in text  # one sentence
    if error is TruncatedImageError:
        assert decode_image(path, allow_truncated=True).truncated


def test_permission_denied(tmp_path):
    path = _write(tmp_path, "locked.jpg", _save(Image.fromarray(PIXELS), "JPEG"))
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("this user reads files whatever their mode (root)")
        with pytest.raises(ImageDecodeError, match=re.escape(str(path)) + r" cannot be read: permission denied\.$"):
            load_rgb(path)
    finally:
        path.chmod(0o644)


# --- the same corpus through the commands ------------------------------------------------------

CLI_REFUSED = ("zero bytes", "three bytes", "text named .jpg", "png bomb header", "baseline jpeg cut at 50%")
CLI_REFUSED += ("png cut at 50%",)
CLI_DECODED = ("heic", "avif", "exif-rotated jpeg")


def _cli_corpus(folder: Path) -> dict[str, str | None]:
    """Good images and every bad case in ``folder``; returns each file name and the pattern of its
    error after its path (None: it must be scored)."""
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str | None] = {}
    for case in CLI_REFUSED:
        name, make, _, message = REFUSED[case]
        _write(folder, name, make())
        expected[name] = message
    for case in CLI_DECODED:
        name, make, _ = DECODED[case]
        if name.endswith(".avif") and not features.check("avif"):
            continue
        _write(folder, name, make())
        expected[name] = None
    for name, pixels in (("good.png", PIXELS), ("two\nlines.png", 255 - PIXELS)):
        _write(folder, name, _save(Image.fromarray(pixels), "PNG"))
        expected[name] = None
    _write(folder, "good.jpg", _save(Image.fromarray(PIXELS[::-1]), "JPEG", quality=92))
    expected["good.jpg"] = None
    (folder / "broken.jpg").symlink_to("gone.jpg")
    expected["broken.jpg"] = r"is a link to gone\.jpg, which does not exist\."
    (folder / "loop1.jpg").symlink_to("loop2.jpg")
    (folder / "loop2.jpg").symlink_to("loop1.jpg")
    expected["loop1.jpg"] = expected["loop2.jpg"] = r"is a link that loops back on itself\."
    return expected


def _check_error(path: str, error: str, pattern: str) -> None:
    assert re.match(re.escape(path) + " " + pattern, error), error
    assert error.endswith(".") and "\n" not in error and ". " not in error.removeprefix(path), error  # one sentence


def test_predict_reports_each_bad_file_in_one_line_and_scores_the_others(tmp_path, checkpoint_path, capsys):
    from ssp_detect.cli import main

    folder = tmp_path / "photos"
    expected = _cli_corpus(folder)
    assert main(["predict", str(folder), "--weights", str(checkpoint_path), "--format", "jsonl"]) == 0
    rows = {Path(r["path"]).name: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(rows) == set(expected)
    for name, pattern in expected.items():
        if pattern is None:
            assert rows[name]["error"] is None and 0 <= rows[name]["p_fake"] <= 1, name
        else:
            assert rows[name]["p_fake"] is None, name
            _check_error(rows[name]["path"], rows[name]["error"], pattern)
    # The table: a header and one line per file, the newline in a name escaped; --strict exits 1.
    assert main(["predict", str(folder), "--weights", str(checkpoint_path), "--strict"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + len(expected)
    assert sum(line.startswith("ERROR") for line in lines) == sum(p is not None for p in expected.values())
    assert any(line.endswith(str(folder / "two\\nlines.png")) for line in lines)
    # Nothing readable: exit 1, as documented.
    bad = [str(folder / n) for n, p in expected.items() if p is not None]
    assert main(["predict", *bad, "--weights", str(checkpoint_path)]) == 1


def test_test_lists_each_bad_file_once_and_scores_the_others(tmp_path, checkpoint_path, capsys):
    from ssp_detect.cli import main

    root = tmp_path / "data"
    expected = {}
    for label in ("nature", "ai"):
        folder = root / "phones" / "val" / label
        expected |= {str(folder / n): p for n, p in _cli_corpus(folder).items()}
    argv = ["test", "--weights", str(checkpoint_path), "--data", str(root), "--workers", "0", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "t")]) == 0
    report = json.loads((tmp_path / "t" / "results.json").read_text())
    errors = {u["path"]: u["error"] for u in report["unreadable"]}
    assert set(errors) == {p for p, pattern in expected.items() if pattern is not None}
    assert len(report["unreadable"]) == len(errors)  # each once
    for path, error in errors.items():
        _check_error(path, error, expected[path])
    good = sum(pattern is None for pattern in expected.values()) // 2
    assert report["pooled"]["n_real"] == report["pooled"]["n_fake"] == good
    assert report["n_images"] == len(expected)
    capsys.readouterr()
    assert main([*argv, "--strict", "--out", str(tmp_path / "s")]) == 2
    assert re.search(r"ssp test: error: \d+ image\(s\) could not be read", capsys.readouterr().err)


def test_an_exif_rotated_jpeg_scores_as_its_pixels_turned(tmp_path, checkpoint_path, capsys):
    """The same p_fake and box through ``ssp predict`` as the displayed pixels saved without an
    orientation (a lossless PNG); the stored pixels, unturned, give another box."""
    from ssp_detect.cli import main

    data = _rotated_jpeg()
    stored = _pillow_rgb(data)
    files = {
        "rotated": _write(tmp_path, "rotated.jpg", data),
        "turned": _write(tmp_path, "turned.png", _save(Image.fromarray(np.rot90(stored, -1).copy()), "PNG")),
        "stored": _write(tmp_path, "stored.png", _save(Image.fromarray(stored), "PNG")),
    }
    rows = {}
    for key, path in files.items():
        assert main(["predict", str(path), "--weights", str(checkpoint_path), "--format", "jsonl"]) == 0
        rows[key] = json.loads(capsys.readouterr().out)
    box = {k: (r["x"], r["y"], r["w"], r["h"]) for k, r in rows.items()}
    assert rows["rotated"]["p_fake"] == rows["turned"]["p_fake"] and box["rotated"] == box["turned"]
    assert box["stored"] != box["rotated"]


def test_the_pixel_limit_is_an_option_of_every_command_that_scores(tmp_path, checkpoint_path, capsys):
    """The refusal names --max-pixels, so predict, explain and test have it (serve has its own)."""
    from ssp_detect.cli import main

    (tmp_path / "data" / "x" / "val" / "ai").mkdir(parents=True)
    image = _write(tmp_path / "data" / "x" / "val" / "ai", "big.png", _save(Image.fromarray(PIXELS), "PNG"))
    weights = ["--weights", str(checkpoint_path)]
    assert main(["predict", str(image), *weights, "--format", "jsonl", "--max-pixels", str(H * W - 1)]) == 1
    row = json.loads(capsys.readouterr().out)
    assert row["error"] == (
        f"{image} has {W}x{H} pixels, over the limit of {H * W - 1:,}; resize it first or raise the pixel limit "
        "(max_pixels, --max-pixels)."
    )
    assert main(["predict", str(image), *weights, "--format", "jsonl", "--max-pixels", str(H * W)]) == 0
    assert json.loads(capsys.readouterr().out)["error"] is None
    assert main(["explain", str(image), *weights, "--out", str(tmp_path / "e.png"), "--max-pixels", "100"]) == 2
    assert "over the limit of 100;" in capsys.readouterr().err
    argv = ["test", *weights, "--data", str(tmp_path / "data"), "--workers", "0", "--no-progress"]
    for decode in ("workers", "device"):
        out = tmp_path / decode
        assert main([*argv, "--decode", decode, "--out", str(out), "--max-pixels", "100"]) == 2
        assert "over the limit of 100;" in json.loads((out / "results.json").read_text())["unreadable"][0]["error"]
