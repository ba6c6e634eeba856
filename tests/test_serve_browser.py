"""The web page in headless Chromium against the real server (uvicorn on 127.0.0.1).

Needs the Debian ``chromium`` package and the ``playwright`` Python package (no downloaded
browsers). Set ``SSP_SCREENSHOT=/path/page.png`` to keep a screenshot of the page after uploads.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from PIL import Image

from ssp_detect.detector import Detector
from ssp_detect.serve import create_app
from tests.helpers import noisy_image, write_image

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BOX_RGB = (0xFF, 0x2D, 0x95)  # the patch box colour in app.js

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing; install the Debian package chromium.", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is missing")


@pytest.fixture(scope="module")
def detector(checkpoint_path: Path) -> Detector:
    return Detector.from_checkpoint(checkpoint_path, device="cpu")


@pytest.fixture(scope="module")
def server_url(detector: Detector) -> Iterator[str]:
    """The app served by uvicorn in a thread, on a free port of 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(detector), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="module")
def page(server_url: str):
    """A Chromium page on the app, shared by the tests (cards accumulate); screenshot at the end."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(server_url)
        yield page
        if shot := os.environ.get("SSP_SCREENSHOT"):
            page.screenshot(path=shot, full_page=True)
        browser.close()


def test_upload_shows_verdict_p_fake_and_boxed_patch(page, detector: Detector, tmp_path: Path) -> None:
    path = write_image(tmp_path / "photo.png", noisy_image(np.random.default_rng(21), (96, 128), noise=10.0))
    expected = detector.predict(path)
    page.set_input_files("#file-input", str(path))
    card = page.locator('.result[data-filename="photo.png"]')
    card.locator('xpath=self::*[@data-status="done"]').wait_for(timeout=20_000)

    assert card.locator(".verdict").inner_text().lower() == expected.label
    assert float(card.locator(".p-fake").get_attribute("data-value")) == pytest.approx(expected.p_fake, abs=1e-6)
    assert card.locator(".p-fake").inner_text() == f"{expected.p_fake:.3f}"
    assert "Model ssp-lite" in page.locator("#model-info").inner_text()

    preview = card.locator("canvas.preview")
    assert preview.get_attribute("data-box") == ",".join(map(str, expected.box))
    assert preview.get_attribute("data-searched-size") == "128,96"
    width, height = preview.evaluate("c => [c.width, c.height]")
    assert (width, height) == (320, 240)  # 128x96 fitted into 320x240
    scale = width / 128
    drawn = [int(v) for v in preview.get_attribute("data-drawn-box").split(",")]
    assert drawn == [round(v * scale) for v in expected.box]
    x, y, w, h = drawn
    edge_pixel = preview.evaluate(f"c => Array.from(c.getContext('2d').getImageData({x}, {y + h // 2}, 1, 1).data)")
    assert tuple(edge_pixel[:3]) == BOX_RGB

    # The enlarged patch holds the patch's own pixels, unsmoothed: its top-left 4x4 block is one pixel.
    patch = card.locator("canvas.patch")
    block = patch.evaluate("c => Array.from(c.getContext('2d').getImageData(0, 0, 4, 4).data)")
    img = np.asarray(Image.open(path).convert("RGB"))
    bx, by = expected.box[:2]
    assert np.array(block).reshape(16, 4)[:, :3].tolist() == [img[by, bx].tolist()] * 16


def test_unreadable_file_shows_its_error(page, tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_bytes(b"these are notes, not an image")
    page.set_input_files("#file-input", str(path))
    card = page.locator('.result[data-filename="notes.png"]')
    card.locator('xpath=self::*[@data-status="error"]').wait_for(timeout=20_000)
    assert "'notes.png' is not an image format" in card.locator(".error").inner_text()
    assert card.locator(".verdict").inner_text().lower() == "error"


def test_small_image_box_is_scaled_from_the_resized_search(page, detector: Detector, tmp_path: Path) -> None:
    path = write_image(tmp_path / "tiny.png", noisy_image(np.random.default_rng(22), (20, 24), noise=6.0))
    expected = detector.predict(path)
    page.set_input_files("#file-input", str(path))
    card = page.locator('.result[data-filename="tiny.png"]')
    card.locator('xpath=self::*[@data-status="done"]').wait_for(timeout=20_000)
    preview = card.locator("canvas.preview")
    assert preview.get_attribute("data-searched-size") == "256,256"
    width, height = preview.evaluate("c => [c.width, c.height]")
    drawn = [int(v) for v in preview.get_attribute("data-drawn-box").split(",")]
    x, y, w, h = expected.box
    assert drawn == [round(x * width / 256), round(y * height / 256), round(w * width / 256), round(h * height / 256)]


def test_uncertain_card_shows_its_reason_and_the_stability_range(page, detector: Detector, tmp_path: Path) -> None:
    path = write_image(tmp_path / "small.png", noisy_image(np.random.default_rng(23), (20, 24), noise=6.0))
    expected = detector.predict(path, stability=True)
    assert expected.label == "uncertain" and "upscaled" in expected.reasons
    page.check("#stability-input")
    try:
        page.set_input_files("#file-input", str(path))
        card = page.locator('.result[data-filename="small.png"]')
        card.locator('xpath=self::*[@data-status="done"]').wait_for(timeout=30_000)
    finally:
        page.uncheck("#stability-input")
    assert card.locator(".verdict").inner_text().lower() == "uncertain"
    assert card.get_attribute("data-reasons") == ",".join(expected.reasons)
    assert "upscaled: the image is smaller" in card.locator("dd.reasons").inner_text()
    stability = card.locator("dd.stability").inner_text()
    assert f"{expected.stability.p_min:.3f}–{expected.stability.p_max:.3f}" in stability
    assert expected.stability.most_moved in stability
    assert card.get_attribute("data-stability") == ("holds" if expected.stability.holds else "flips")


def _card(page, name: str, timeout: int = 20_000):
    card = page.locator(f'.result[data-filename="{name}"]')
    card.locator('xpath=self::*[@data-status="done"]').wait_for(timeout=timeout)
    return card


def _canvas_pixels(card, selector: str) -> np.ndarray:
    canvas = card.locator(selector)
    width, height = canvas.evaluate("c => [c.width, c.height]")
    data = canvas.evaluate("c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)")
    return np.array(data, dtype=np.int16).reshape(height, width, 4)[..., :3]


def test_exif_rotated_jpeg_matches_the_same_pixels_rotated(page, detector: Detector, tmp_path: Path) -> None:
    # A landscape photo stored sideways: orientation 6 says "turn 90 degrees clockwise to view".
    stored = noisy_image(np.random.default_rng(24), (96, 128), noise=10.0)
    stored[8:40, 8:40] = (250, 240, 40)  # a bright square near the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated_jpeg = tmp_path / "sideways.jpg"
    Image.fromarray(stored).save(rotated_jpeg, quality=95, exif=exif)
    displayed = detector.read(rotated_jpeg).pixels
    assert displayed.shape == (128, 96, 3)  # portrait, as every photo viewer shows it
    upright = write_image(tmp_path / "upright.png", displayed)  # the same pixels, already turned
    expected = detector.predict(upright)
    assert detector.predict(rotated_jpeg).p_fake == pytest.approx(expected.p_fake, abs=1e-9)

    page.set_input_files("#file-input", [str(rotated_jpeg), str(upright)])
    turned, plain = _card(page, "sideways.jpg"), _card(page, "upright.png")
    for card in (turned, plain):
        assert float(card.locator(".p-fake").get_attribute("data-value")) == pytest.approx(expected.p_fake, abs=1e-6)
        assert card.locator("canvas.preview").get_attribute("data-box") == ",".join(map(str, expected.box))
        assert card.locator("canvas.preview").get_attribute("data-searched-size") == "96,128"
    # The browser shows the JPEG turned, the box drawn on the same region, the same patch enlarged
    # (up to the two JPEG decoders' rounding).
    preview_turned, preview_plain = _canvas_pixels(turned, "canvas.preview"), _canvas_pixels(plain, "canvas.preview")
    assert preview_turned.shape == preview_plain.shape == (240, 180, 3)
    assert np.abs(preview_turned - preview_plain).mean() < 3
    patch_turned, patch_plain = _canvas_pixels(turned, "canvas.patch"), _canvas_pixels(plain, "canvas.patch")
    assert np.abs(patch_turned - patch_plain).mean() < 3
    # ... which the stored, unturned pixels at the box would not give.
    x, y, w, h = expected.box
    wrong = np.kron(stored[y : y + h, x : x + w].astype(np.int16), np.ones((4, 4, 1), dtype=np.int16))
    assert wrong.shape == patch_plain.shape and np.abs(wrong - patch_plain).mean() > 10


@pytest.mark.parametrize("suffix", [".heic", ".avif"])
def test_phone_formats_are_scored_on_the_page(page, detector: Detector, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"phone{suffix}"
    Image.fromarray(noisy_image(np.random.default_rng(25), (120, 160), noise=8.0)).save(path, quality=90)
    expected = detector.predict(path)
    assert expected.error is None
    page.set_input_files("#file-input", str(path))
    card = _card(page, path.name)
    # Chromium may not preview the format (HEIC): the verdict is there all the same.
    assert card.locator(".verdict").inner_text().lower() == expected.label
    assert float(card.locator(".p-fake").get_attribute("data-value")) == pytest.approx(expected.p_fake, abs=1e-6)
    assert card.locator("canvas.preview").get_attribute("data-box") == ",".join(map(str, expected.box))


def test_docs_render_offline_under_the_content_security_policy(page, server_url: str) -> None:
    docs = page.context.browser.new_page()
    problems: list[str] = []
    docs.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    docs.on("request", lambda request: None if request.url.startswith(server_url) else problems.append(request.url))
    try:
        docs.goto(server_url + "docs")
        docs.locator(".opblock").first.wait_for(timeout=20_000)
        paths = docs.locator(".opblock-summary-path").all_inner_texts()
    finally:
        docs.close()
    assert {"/v1/detect", "/v1/model", "/healthz"} <= set(paths)
    assert problems == []  # no request to another host, no refused script or style
