"""The HTTP service: endpoints, every kind of bad input, dynamic batching and error handling.

The default ``TestClient`` re-raises any exception that reaches the app's catch-all 500 handler,
so every bad-input test below also shows that the input never got that far.
"""

from __future__ import annotations

import asyncio
import io
import struct
import threading
import zlib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from ssp_detect.detector import Detector
from ssp_detect.serve import ServeLimits, create_app
from tests.helpers import noisy_image

T = TypeVar("T")


def encode(img: np.ndarray | Image.Image, fmt: str = "PNG") -> bytes:
    """An image (RGB array or PIL image) encoded in memory."""
    pil = Image.fromarray(img) if isinstance(img, np.ndarray) else img
    buf = io.BytesIO()
    pil.save(buf, fmt)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A 100-byte PNG whose header claims ``width`` x ``height`` RGB pixels (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )


def float_rgb_tiff(width: int = 4, height: int = 4) -> bytes:
    """A valid TIFF of 32-bit float RGB pixels, a pixel format Pillow cannot represent."""
    spp, bits = 3, 32
    data = bytes(width * height * spp * bits // 8)
    n_entries = 10
    bps_at = 8 + 2 + n_entries * 12 + 4
    fmt_at = bps_at + 2 * spp
    data_at = fmt_at + 2 * spp
    short, long_ = 3, 4
    entries = [
        (256, short, 1, width),
        (257, short, 1, height),
        (258, short, spp, bps_at),
        (259, short, 1, 1),
        (262, short, 1, 2),
        (273, long_, 1, data_at),
        (277, short, 1, spp),
        (278, short, 1, height),
        (279, long_, 1, len(data)),
        (339, short, spp, fmt_at),
    ]
    out = b"II*\x00" + struct.pack("<IH", 8, n_entries)
    for tag, kind, count, value in entries:
        inline = kind == short and count == 1
        out += (
            struct.pack("<HHIHH", tag, kind, count, value, 0)
            if inline
            else struct.pack("<HHII", tag, kind, count, value)
        )
    return (
        out + struct.pack("<I", 0) + struct.pack(f"<{spp}H", *[bits] * spp) + struct.pack(f"<{spp}H", *[3] * spp) + data
    )


def assert_error(response: httpx.Response, status: int, *fragments: str) -> str:
    """The response is a JSON error with ``status`` whose one-sentence message has every fragment."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    sentence = response.json()["error"]
    assert sentence.endswith(".") and "\n" not in sentence and "Traceback" not in sentence
    for fragment in fragments:
        assert fragment in sentence
    return sentence


@pytest.fixture(scope="module")
def detector(checkpoint_path: Path) -> Detector:
    return Detector.from_checkpoint(checkpoint_path, device="cpu")


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    rng = np.random.default_rng(7)
    return [encode(noisy_image(rng, (64 + 8 * i, 80), noise=4.0 * (i + 1))) for i in range(4)]


@contextmanager
def serving(detector: Detector, limits: ServeLimits | None = None, **client_options: Any) -> Iterator[TestClient]:
    """A TestClient on a fresh app, its lifespan (batcher, decode threads) running."""
    with TestClient(create_app(detector, limits), **client_options) as client:
        yield client


@pytest.fixture(scope="module")
def client(detector: Detector) -> Iterator[TestClient]:
    with serving(detector, ServeLimits(max_pixels=1_000_000, max_files=4, max_upload_bytes=200_000)) as c:
        yield c


def run_async(app: FastAPI, scenario: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    """Run ``scenario`` with an async client on ``app``, inside the app's lifespan, on a new loop."""

    async def main() -> T:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
                return await scenario(client)

    return asyncio.run(main())


def record_batches(detector: Detector, sizes: list[int], before: Callable[[], None] = lambda: None) -> None:
    """Wrap ``detector.score`` (on this instance) to append each batch size to ``sizes``."""
    score = detector.score

    def recording(prepared: list) -> np.ndarray:
        sizes.append(len(prepared))
        before()
        return score(prepared)

    detector.score = recording


@pytest.fixture
def fresh_detector(checkpoint_path: Path) -> Detector:
    """A detector of its own, for tests that wrap its ``score`` or its module's ``forward`` (PyTorch)."""
    return Detector.from_checkpoint(checkpoint_path, device="cpu", backend="torch")


# --- endpoints -----------------------------------------------------------------------------------


def test_detect_one_file_matches_the_detector(client: TestClient, detector: Detector, images: list[bytes]) -> None:
    r = client.post("/v1/detect", files={"file": ("cat.png", images[0], "image/png")})
    assert r.status_code == 200
    body = r.json()
    expected = detector.predict(images[0])
    (result,) = body["results"]
    assert result["filename"] == "cat.png"
    assert result["p_fake"] == pytest.approx(expected.p_fake, abs=1e-6)
    assert result["label"] == expected.label == ("fake" if expected.p_fake >= 0.5 else "real")
    assert result["threshold"] == 0.5
    assert result["box"] == list(expected.box) and result["box"][2:] == [32, 32]
    assert result["texture_score"] == expected.texture_score
    assert result["searched_size"] == [80, 64]
    assert result["error"] is None
    assert body["model"]["checkpoint_sha256"] == detector.info["checkpoint_sha256"]
    assert body["model"]["model"] == "ssp-lite"
    timings = body["timings_ms"]
    assert set(timings) == {"decode_and_patch", "queue_and_model", "total"}
    assert timings["total"] >= max(timings["decode_and_patch"], timings["queue_and_model"]) > 0


def test_stability_field_reports_the_range_and_uncertain_reasons(client: TestClient, detector: Detector) -> None:
    tiny = encode(noisy_image(np.random.default_rng(31), (20, 20), noise=8.0))
    r = client.post("/v1/detect", files={"file": ("tiny.png", tiny, "image/png")}, data={"stability": "true"})
    assert r.status_code == 200
    (result,) = r.json()["results"]
    expected = detector.predict(tiny, stability=True)
    assert (
        result["label"] == "uncertain"
        and result["reasons"] == list(expected.reasons)
        and "upscaled" in result["reasons"]
    )
    stability = result["stability"]
    assert stability["p_min"] == pytest.approx(expected.stability.p_min, abs=1e-6)
    assert stability["p_max"] == pytest.approx(expected.stability.p_max, abs=1e-6)
    assert stability["most_moved"] == expected.stability.most_moved and stability["holds"] == expected.stability.holds
    assert set(stability["p_fake"]) == set(expected.stability.p_fake)
    plain = client.post("/v1/detect", files={"file": ("tiny.png", tiny, "image/png")}).json()["results"][0]
    assert plain["stability"] is None and plain["p_fake"] == pytest.approx(result["p_fake"], abs=1e-6)


def test_detect_several_files_in_both_fields_keeps_upload_order(
    client: TestClient, detector: Detector, images: list[bytes]
) -> None:
    files = [("file", ("a.png", images[0])), ("files", ("b.png", images[1])), ("files", ("c.png", images[2]))]
    r = client.post("/v1/detect", files=files)
    assert r.status_code == 200
    results = r.json()["results"]
    assert [res["filename"] for res in results] == ["a.png", "b.png", "c.png"]
    expected = [detector.predict(data).p_fake for data in images[:3]]
    assert [res["p_fake"] for res in results] == pytest.approx(expected, abs=1e-5)
    assert len({round(p, 6) for p in expected}) == 3  # different images, different answers


def test_model_endpoint_reports_weights_and_limits(client: TestClient, detector: Detector) -> None:
    body = client.get("/v1/model").json()
    assert body["checkpoint_sha256"] == detector.info["checkpoint_sha256"] and len(body["checkpoint_sha256"]) == 64
    assert body["model"] == "ssp-lite" and body["patch_size"] == 32 and body["threshold"] == 0.5
    assert body["limits"]["max_files"] == 4 and body["limits"]["max_pixels"] == 1_000_000


def test_healthz_counts_scored_images(detector: Detector, images: list[bytes]) -> None:
    with serving(detector) as c:
        assert c.get("/healthz").json() == {"status": "ok", "batches": 0, "images": 0, "dropped": 0}
        c.post("/v1/detect", files=[("files", ("a.png", images[0])), ("files", ("b.png", images[1]))])
        health = c.get("/healthz").json()
    assert health["images"] == 2 and 1 <= health["batches"] <= 2


def test_page_static_files_and_docs_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert (
        'id="file-input"' in page.text
        and "static/app.js" in page.text
        and "http" not in page.text.split("<body>")[0].lower()
    )
    assert "v1/detect" in client.get("/static/app.js").text
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/v1/detect" in schema["paths"] and "/v1/model" in schema["paths"] and "/healthz" in schema["paths"]


def test_image_smaller_than_the_patch_is_scored_after_the_official_resize(
    client: TestClient, detector: Detector
) -> None:
    tiny = encode(noisy_image(np.random.default_rng(3), (10, 12)))
    r = client.post("/v1/detect", files={"file": ("tiny.png", tiny)})
    assert r.status_code == 200
    (result,) = r.json()["results"]
    assert result["searched_size"] == [256, 256]
    x, y, w, h = result["box"]
    assert (w, h) == (32, 32) and 0 <= x <= 224 and 0 <= y <= 224
    assert result["p_fake"] == pytest.approx(detector.predict(tiny).p_fake, abs=1e-6)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "I;16", "I", "F", "CMYK", "YCbCr", "RGBA"])
def test_unusual_pixel_modes_are_scored(client: TestClient, mode: str) -> None:
    img = Image.fromarray(noisy_image(np.random.default_rng(5), (40, 48))).convert(mode)
    r = client.post("/v1/detect", files={"file": (f"{mode}.tif", encode(img, "TIFF"))})
    assert r.status_code == 200, r.text
    assert 0.0 <= r.json()["results"][0]["p_fake"] <= 1.0


# --- bad input -------------------------------------------------------------------------------------


def _truncated_png() -> bytes:
    data = encode(noisy_image(np.random.default_rng(4), (64, 64)))
    return data[: len(data) // 2]


def _corrupt_jpeg() -> bytes:
    data = bytearray(encode(noisy_image(np.random.default_rng(4), (64, 64)), "JPEG"))
    return bytes(data[:200] + b"\xff\xd9")  # the headers, then the end marker


BAD_FILES = {
    "zero bytes": (b"", ("is empty",)),
    "text": (b"hello, this is not an image\n", ("not an image format",)),
    "truncated png": (_truncated_png(), ("truncated or corrupt",)),
    "corrupt jpeg": (_corrupt_jpeg(), ("truncated or corrupt",)),
    "float rgb tiff": (float_rgb_tiff(), ("not an image format",)),
    "bomb header": (png_claiming(100_000, 100_000), ("pixels",)),
    "over pixel limit": (encode(Image.new("L", (1200, 1000))), ("1200x1000 pixels", "limit of 1,000,000")),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_bad_file_alone_is_422_with_one_sentence_naming_it(client: TestClient, kind: str) -> None:
    data, fragments = BAD_FILES[kind]
    r = client.post("/v1/detect", files={"file": ("upload.bin", data)})
    sentence = assert_error(r, 422, "'upload.bin'", *fragments)
    (result,) = r.json()["results"]
    assert result["error"] == sentence and result["p_fake"] is None and result["label"] is None


def test_some_bad_files_among_good_ones_give_200_with_per_file_errors(client: TestClient, images: list[bytes]) -> None:
    files = [
        ("files", ("good.png", images[0])),
        ("files", ("empty.png", b"")),
        ("files", ("bomb.png", png_claiming(9000, 9000))),
    ]
    r = client.post("/v1/detect", files=files)
    assert r.status_code == 200
    good, empty, bomb = r.json()["results"]
    assert good["error"] is None and 0 <= good["p_fake"] <= 1
    assert empty["p_fake"] is None and "'empty.png' is empty" in empty["error"]
    assert bomb["p_fake"] is None and "9000x9000 pixels" in bomb["error"]


def test_all_files_bad_gives_422_with_per_file_errors(client: TestClient) -> None:
    r = client.post("/v1/detect", files=[("files", ("a.txt", b"text")), ("files", ("b.png", b""))])
    assert_error(r, 422, "None of the 2 files")
    assert [res["filename"] for res in r.json()["results"]] == ["a.txt", "b.png"]
    assert all(res["error"] for res in r.json()["results"])


def test_too_many_files_is_413(client: TestClient, images: list[bytes]) -> None:
    r = client.post("/v1/detect", files=[("files", (f"{i}.png", images[0])) for i in range(5)])
    assert_error(r, 413, "5 files", "limit of 4")


def test_upload_over_the_size_limit_is_413_with_or_without_content_length(client: TestClient) -> None:
    big = b"\0" * 300_000
    assert_error(client.post("/v1/detect", files={"file": ("big.png", big)}), 413, "(200,000 bytes)")
    chunked = (big[i : i + 50_000] for i in range(0, len(big), 50_000))  # no Content-Length header
    r = client.post("/v1/detect", content=chunked, headers={"content-type": "multipart/form-data; boundary=x"})
    assert_error(r, 413, "(200,000 bytes)")


@pytest.mark.parametrize(
    "request_options",
    [
        {},
        {"files": {"image": ("a.png", b"\x89PNG")}},
        {"json": {"file": "a.png"}},
    ],
    ids=["nothing", "other field name", "json body"],
)
def test_no_file_is_400(client: TestClient, request_options: dict[str, Any]) -> None:
    assert_error(client.post("/v1/detect", **request_options), 400, "no image file")


def test_malformed_multipart_is_400(client: TestClient) -> None:
    r = client.post(
        "/v1/detect",
        content=b"--x\r\nnot really multipart",
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert_error(r, 400, "multipart")


def test_text_in_the_file_field_is_400(client: TestClient) -> None:
    assert_error(client.post("/v1/detect", data={"file": "not a file"}), 400, "file")


def test_unknown_path_and_wrong_method_are_json(client: TestClient) -> None:
    assert_error(client.get("/v2/nothing"), 404, "/v2/nothing")
    assert_error(client.get("/v1/detect"), 405, "GET /v1/detect")


def test_corrupted_files_never_give_a_server_error(client: TestClient) -> None:
    rng = np.random.default_rng(11)
    image = noisy_image(rng, (48, 56))
    originals = [encode(image, fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")]
    mutants = []
    for data in originals:
        for _ in range(8):
            d = bytearray(data)
            if rng.random() < 0.5:
                for pos in rng.integers(0, len(d), size=4):
                    d[pos] = int(rng.integers(256))
            else:
                d = d[: int(rng.integers(1, len(d)))]
            mutants.append(bytes(d))
    for start in range(0, len(mutants), 4):
        files = [("files", (f"m{start + i}", m)) for i, m in enumerate(mutants[start : start + 4])]
        r = client.post("/v1/detect", files=files)
        assert r.status_code in (200, 422), r.text
        for result in r.json()["results"]:
            assert (result["p_fake"] is None) == bool(result["error"])


def test_serve_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="max_files=0"):
        ServeLimits(max_files=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        ServeLimits(max_wait_ms=-1)


# --- batching and robustness ---------------------------------------------------------------------


def test_concurrent_requests_share_model_batches(fresh_detector: Detector, images: list[bytes]) -> None:
    sizes: list[int] = []
    record_batches(fresh_detector, sizes)
    app = create_app(fresh_detector, ServeLimits(max_batch=64, max_wait_ms=500))
    n = 8

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        posts = [client.post("/v1/detect", files={"file": (f"{i}.png", images[i % 4])}) for i in range(n)]
        return await asyncio.gather(*posts)

    responses = run_async(app, scenario)
    assert [r.status_code for r in responses] == [200] * n
    assert sum(sizes) == n and len(sizes) <= 2 and max(sizes) >= n // 2
    p_alone = fresh_detector.predict(images[1]).p_fake
    assert responses[5].json()["results"][0]["p_fake"] == pytest.approx(p_alone, abs=1e-5)


def test_sequential_requests_without_wait_are_not_batched(fresh_detector: Detector, images: list[bytes]) -> None:
    sizes: list[int] = []
    record_batches(fresh_detector, sizes)
    with serving(fresh_detector, ServeLimits(max_wait_ms=0)) as c:
        for i in range(3):
            assert c.post("/v1/detect", files={"file": ("a.png", images[i])}).status_code == 200
    assert sizes == [1, 1, 1]


def test_batches_never_exceed_max_batch(fresh_detector: Detector, images: list[bytes]) -> None:
    sizes: list[int] = []
    record_batches(fresh_detector, sizes)
    with serving(fresh_detector, ServeLimits(max_batch=3, max_wait_ms=200)) as c:
        r = c.post("/v1/detect", files=[("files", (f"{i}.png", images[i % 4])) for i in range(8)])
    assert r.status_code == 200 and len(r.json()["results"]) == 8
    assert sizes == [3, 3, 2]


def test_event_loop_answers_while_the_model_runs(fresh_detector: Detector, images: list[bytes]) -> None:
    entered, release = threading.Event(), threading.Event()
    record_batches(fresh_detector, [], before=lambda: (entered.set(), release.wait(10)))
    app = create_app(fresh_detector, ServeLimits(max_wait_ms=0))

    async def scenario(client: httpx.AsyncClient) -> tuple[int, bool, int]:
        detect = asyncio.create_task(client.post("/v1/detect", files={"file": ("a.png", images[0])}))
        assert await asyncio.to_thread(entered.wait, 10)
        health = await client.get("/healthz")  # the model thread is blocked in score right now
        still_scoring = not detect.done()
        release.set()
        return health.status_code, still_scoring, (await detect).status_code

    assert run_async(app, scenario) == (200, True, 200)


def test_a_model_failure_is_a_json_500_and_the_batcher_survives(fresh_detector: Detector, images: list[bytes]) -> None:
    calls: list[int] = []

    def fail_once() -> None:
        if len(calls) == 1:
            raise RuntimeError("simulated device failure")

    record_batches(fresh_detector, calls, before=fail_once)
    with serving(fresh_detector, ServeLimits(max_wait_ms=0), raise_server_exceptions=False) as c:
        failed = c.post("/v1/detect", files={"file": ("a.png", images[0])})
        assert_error(failed, 500, "server log")
        assert "simulated" not in failed.text
        assert c.post("/v1/detect", files={"file": ("a.png", images[0])}).status_code == 200
        assert c.get("/healthz").status_code == 200


def test_non_finite_scores_are_a_json_503_never_a_label(checkpoint_path: Path, images: list[bytes]) -> None:
    detector = Detector.from_checkpoint(checkpoint_path, device="cpu", backend="torch")  # its PyTorch model is broken
    detector.model.forward = lambda x: torch.full((x.shape[0],), float("nan"))
    with serving(detector, ServeLimits(max_wait_ms=0), raise_server_exceptions=False) as c:
        r = c.post("/v1/detect", files={"file": ("a.png", images[0])})
        assert_error(r, 503, "non-finite")
        assert "label" not in r.text
