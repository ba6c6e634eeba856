"""The service's guards in the ASGI app: security headers, Host allow-list, cross-origin POSTs,
CORS, the in-flight cap, the memory budget for decoding, dropped work of clients that left, the
local /docs. Slow clients against a real server are in ``test_serve_slow_clients.py``."""

from __future__ import annotations

import asyncio
import io
import re
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from ssp_detect.detector import Detector
from ssp_detect.serve import AccessPolicy, MemoryBudget, ServeLimits, create_app
from ssp_detect.serve.batcher import DynamicBatcher
from ssp_detect.serve.limits import MIB
from ssp_detect.serve.service import (
    JPEG_BYTES_PER_PIXEL,
    STABILITY_BYTES_PER_PIXEL,
    Busy,
    OverBudget,
    decode_cost,
)
from tests.helpers import noisy_image
from tests.test_serve import assert_error, encode, png_claiming, record_batches, run_async, serving


@pytest.fixture(scope="module")
def detector(checkpoint_path: Path) -> Detector:
    return Detector.from_checkpoint(checkpoint_path, device="cpu")


@pytest.fixture
def fresh_detector(checkpoint_path: Path) -> Detector:
    return Detector.from_checkpoint(checkpoint_path, device="cpu")


@pytest.fixture(scope="module")
def image() -> bytes:
    return encode(noisy_image(np.random.default_rng(8), (64, 72), noise=6.0))


def post(client: TestClient, data: bytes, **options) -> httpx.Response:
    return client.post("/v1/detect", files={"file": ("a.png", data, "image/png")}, **options)


# --- security headers, HEAD, docs -------------------------------------------------------------------


def test_every_response_has_the_security_headers(detector: Detector, image: bytes) -> None:
    with serving(detector, ServeLimits(max_upload_bytes=10_000)) as c:
        responses = [c.get("/"), c.get("/static/app.js"), c.get("/nowhere"), post(c, image), post(c, b"x" * 20_000)]
    assert [r.status_code for r in responses] == [200, 200, 404, 200, 413]
    for r in responses:
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp


def test_head_of_the_page_is_200_without_a_body(detector: Detector) -> None:
    with serving(detector) as c:
        r = c.head("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html") and r.content == b""


def test_docs_use_local_assets_only(detector: Detector) -> None:
    with serving(detector) as c:
        docs = c.get("/docs")
        assert docs.status_code == 200
        urls = re.findall(r"""(?:src|href)=["']([^"']+)""", docs.text) + re.findall(r"url:\s*'([^']+)'", docs.text)
        assert len(urls) == 4  # the script, the stylesheet, the icon, the schema
        assert not re.search(r"https?://|//[a-z]", docs.text, flags=re.I)
        for url in urls:
            assert url.startswith("/") and c.get(url).status_code == 200, url
    # Its one inline script is allowed by its hash, nothing else inline.
    (script,) = re.findall(r"<script>(.*?)</script>", docs.text, flags=re.S)
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = docs.headers["content-security-policy"]
    assert f"script-src 'self' 'sha256-{digest}';" in csp and "frame-ancestors 'none'" in csp


# --- Host allow-list, cross-origin POSTs, CORS ------------------------------------------------------


def test_loopback_server_answers_loopback_names_only(detector: Detector, image: bytes) -> None:
    access = AccessPolicy.for_bind("127.0.0.1")
    assert access.allowed_hosts == ("localhost", "127.0.0.1", "::1")
    with TestClient(create_app(detector, access=access), base_url="http://127.0.0.1:8000") as c:
        for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "LOCALHOST"):
            assert c.get("/healthz", headers={"host": host}).status_code == 200, host
        r = c.post("/v1/detect", files={"file": ("a.png", image)}, headers={"host": "attacker.example:8000"})
        assert_error(r, 400, "'attacker.example:8000'", "--allowed-host")
        assert_error(c.get("/", headers={"host": "127.0.0.1.attacker.example"}), 400)


def test_host_policy_follows_the_bind_address_and_options() -> None:
    assert AccessPolicy.for_bind("0.0.0.0").allowed_hosts is None
    assert AccessPolicy.for_bind("::").allowed_hosts is None
    assert AccessPolicy.for_bind("::1").allowed_hosts == ("localhost", "127.0.0.1", "::1")
    assert AccessPolicy.for_bind("localhost").allowed_hosts == ("localhost", "127.0.0.1", "::1")
    assert AccessPolicy.for_bind("0.0.0.0", ["Detector.LAN:8000"]).allowed_hosts == ("detector.lan",)
    assert AccessPolicy.for_bind("127.0.0.1", ["*"]).allowed_hosts is None
    assert AccessPolicy.for_bind("127.0.0.1", cors_origins=["https://a.example/"]).cors_origins == (
        "https://a.example",
    )


def test_posts_from_pages_of_other_origins_are_refused(detector: Detector, image: bytes) -> None:
    with serving(detector, base_url="http://127.0.0.1:8000") as c:
        r = post(c, image, headers={"origin": "http://attacker.example"})
        assert_error(r, 403, "'http://attacker.example'", "--cors-origin")
        assert "access-control-allow-origin" not in r.headers
        assert_error(post(c, image, headers={"origin": "null"}), 403)
        assert_error(post(c, image, headers={"origin": "http://127.0.0.1:9999"}), 403)  # another port
        assert post(c, image, headers={"origin": "http://127.0.0.1:8000"}).status_code == 200  # its own page
        assert post(c, image).status_code == 200  # no Origin: not a browser page (curl, scripts)
        # Reading is harmless, and no answer carries CORS headers that would let a page read it.
        r = c.get("/v1/model", headers={"origin": "http://attacker.example"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_cors_origins_may_call_the_api(detector: Detector, image: bytes) -> None:
    access = AccessPolicy(cors_origins=("https://app.example",))
    with TestClient(create_app(detector, access=access)) as c:
        preflight = c.options(
            "/v1/detect",
            headers={"origin": "https://app.example", "access-control-request-method": "POST"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        r = post(c, image, headers={"origin": "https://app.example"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
        assert_error(post(c, image, headers={"origin": "https://other.example"}), 403)


# --- requests in flight -------------------------------------------------------------------------------


def test_requests_beyond_the_in_flight_cap_get_503_with_retry_after(fresh_detector: Detector, image: bytes) -> None:
    entered, release = threading.Event(), threading.Event()
    record_batches(fresh_detector, [], before=lambda: (entered.set(), release.wait(10)))
    app = create_app(fresh_detector, ServeLimits(max_in_flight=2, max_wait_ms=0))

    async def scenario(client: httpx.AsyncClient) -> tuple[list[int], httpx.Response, httpx.Response, int]:
        files = {"file": ("a.png", image)}
        first = asyncio.create_task(client.post("/v1/detect", files=files))
        assert await asyncio.to_thread(entered.wait, 10)  # the model holds the first request
        second = asyncio.create_task(client.post("/v1/detect", files=files))
        await asyncio.sleep(0.2)  # the second is in flight, waiting for the model
        refused = await client.post("/v1/detect", files=files)

        async def body() -> AsyncIterator[bytes]:
            yield b"--x\r\n"

        chunked = await client.post("/v1/detect", content=body(), headers={"content-type": "x"})
        health = (await client.get("/healthz")).status_code  # other routes are not capped
        release.set()
        return [(await first).status_code, (await second).status_code], refused, chunked, health

    done, refused, chunked, health = run_async(app, scenario)
    assert done == [200, 200] and health == 200
    assert_error(refused, 503, "busy with 2 requests", "retry in 1 s")
    assert refused.headers["retry-after"] == "1"
    # A declared body is read and dropped by the server (the client reads the 503 while sending);
    # a chunked one, of unknown length, is not read: the connection closes.
    assert "connection" not in refused.headers and chunked.headers["connection"] == "close"
    assert_error(chunked, 503, "busy")


# --- memory budget -------------------------------------------------------------------------------------


def encoded(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def test_decode_cost_comes_from_the_header() -> None:
    one_bit = encoded(Image.new("1", (2000, 1000)), "PNG")
    assert len(one_bit) < 2000  # a tiny file ...
    assert decode_cost(one_bit, max_pixels=10**8) == 2_000_000 * 11  # ... that costs 22 MB to decode
    rgb = Image.fromarray(noisy_image(np.random.default_rng(0), (100, 120)))
    assert decode_cost(encoded(rgb, "PNG"), max_pixels=10**8) == 12_000 * 13
    assert decode_cost(encoded(rgb, "JPEG"), max_pixels=10**8) == 12_000 * JPEG_BYTES_PER_PIXEL
    assert decode_cost(encoded(rgb, "JPEG"), max_pixels=10**8, stability=True) == 12_000 * (
        JPEG_BYTES_PER_PIXEL + STABILITY_BYTES_PER_PIXEL
    )
    assert decode_cost(encoded(rgb.convert("I;16"), "TIFF"), max_pixels=10**8) == 12_000 * 22
    # Refused from the header anyway: nothing to decode.
    assert decode_cost(b"not an image", max_pixels=10**8) == 0
    assert decode_cost(png_claiming(100_000, 100_000), max_pixels=10**8) == 0


def test_memory_budget_grants_waits_overtakes_and_refuses() -> None:
    async def scenario() -> None:
        budget = MemoryBudget(100, wait_s=5)
        await budget.acquire(60, "a")
        big = asyncio.create_task(budget.acquire(50, "b"))  # does not fit: waits
        await asyncio.sleep(0)
        await budget.acquire(30, "c")  # fits: overtakes the waiting claim
        assert not big.done() and budget.used == 90
        budget.release(60)
        await big
        assert budget.used == 80 and budget.peak == 90
        with pytest.raises(OverBudget, match="over the server's whole decode budget of"):
            await budget.acquire(101, "Upload 'huge.png'")
        budget.wait_s = 0.05
        with pytest.raises(Busy) as busy:
            await budget.acquire(40, "Upload 'late.png'")
        assert busy.value.status_code == 503 and busy.value.headers == {"retry-after": "1"}
        waiter = asyncio.create_task(budget.acquire(40, "gone"))
        await asyncio.sleep(0)
        waiter.cancel()  # a client that leaves while waiting takes nothing
        with pytest.raises(asyncio.CancelledError):
            await waiter
        budget.release(80)
        assert budget.used == 0 and not budget._waiting

    asyncio.run(scenario())


def test_large_claims_leave_a_quarter_of_the_budget_to_small_ones() -> None:
    async def scenario() -> None:
        budget = MemoryBudget(100, wait_s=5, large_bytes=20, large_share=0.75)
        await budget.acquire(50, "large a")
        second = asyncio.create_task(budget.acquire(30, "large b"))  # 80 > 75 for large claims: waits
        await asyncio.sleep(0)
        for _ in range(3):
            await budget.acquire(15, "small")  # 95 of 100: fits
        assert not second.done() and (budget.used, budget.used_large) == (95, 50)
        budget.release(50)
        await second
        assert (budget.used, budget.used_large) == (75, 30)
        for claim in (30, 15, 15, 15):
            budget.release(claim)
        await budget.acquire(90, "one large alone")  # alone, a large claim may use it all
        assert (budget.used, budget.used_large) == (90, 90)

    asyncio.run(scenario())


def test_an_image_over_the_whole_budget_is_413(detector: Detector) -> None:
    bomb = encoded(Image.new("1", (3000, 2000)), "PNG")  # 6 MP: about 66 MB to decode, 2 KB to send
    with serving(detector, ServeLimits(max_decode_bytes=50 * MIB)) as c:
        r = c.post("/v1/detect", files={"file": ("bomb.png", bomb)})
        assert_error(r, 413, "Upload 'bomb.png' needs about 62.94 MiB", "budget of 50 MiB", "--max-decode-mb")
        assert c.app.state.service.budget.used == 0


def test_a_full_budget_gives_503_then_frees(fresh_detector: Detector, image: bytes) -> None:
    sizes: list[int] = []
    record_batches(fresh_detector, sizes)
    app = create_app(fresh_detector, ServeLimits(max_decode_bytes=2 * MIB, decode_wait_s=0.2))
    budget = app.state.service.budget

    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        held = 2 * MIB - 2 * len(image)  # room for the upload's bytes, not for decoding it
        await budget.acquire(held, "another request")
        busy = await client.post("/v1/detect", files={"file": ("a.png", image)})
        budget.release(held)
        return busy, await client.post("/v1/detect", files={"file": ("a.png", image)})

    busy, ok = run_async(app, scenario)
    assert_error(busy, 503, "busy decoding other images: upload 'a.png'", "within 0.2 s")
    assert busy.headers["retry-after"] == "1"
    assert ok.status_code == 200 and sizes == [1]  # the refused request never reached the model
    assert budget.used == 0 and budget.peak >= len(image) + 64 * 72 * 13


def test_many_images_of_one_request_share_the_budget_in_turn(detector: Detector) -> None:
    rng = np.random.default_rng(4)
    files = [("files", (f"{i}.png", encode(noisy_image(rng, (400, 500))))) for i in range(6)]
    one = 400 * 500 * 13
    # Room for two decodes at a time, not six: the request still gets all six answers.
    with serving(detector, ServeLimits(max_decode_bytes=2 * one + 3 * MIB, decode_workers=2)) as c:
        r = c.post("/v1/detect", files=files)
        budget = c.app.state.service.budget
    assert r.status_code == 200 and all(res["p_fake"] is not None for res in r.json()["results"])
    assert budget.used == 0 and budget.peak <= budget.total


# --- clients that leave --------------------------------------------------------------------------------


def test_the_batcher_drops_images_of_cancelled_requests() -> None:
    entered, release = threading.Event(), threading.Event()
    scored: list[int] = []

    def score(items: list) -> np.ndarray:
        scored.append(len(items))
        entered.set()
        release.wait(10)
        return np.full(len(items), 0.5)

    async def scenario() -> DynamicBatcher:
        batcher = DynamicBatcher(score, max_batch=8, max_wait_s=0)
        await batcher.start()
        first = asyncio.create_task(batcher.score(["a"]))
        assert await asyncio.to_thread(entered.wait, 10)
        gone = asyncio.create_task(batcher.score(["b", "c"]))  # queued while the model runs
        await asyncio.sleep(0.05)
        gone.cancel()  # its client left
        stays = asyncio.create_task(batcher.score(["d"]))
        await asyncio.sleep(0.05)
        release.set()
        assert await first == [0.5] and await stays == [0.5]
        await batcher.stop()
        return batcher

    batcher = asyncio.run(scenario())
    assert scored == [1, 1] and batcher.dropped == 2 and batcher.images == 2


def test_a_one_image_request_waits_for_one_batch_behind_a_bulk_request() -> None:
    entered, release = threading.Event(), threading.Event()
    batches: list[list[str]] = []

    def score(items: list) -> np.ndarray:
        batches.append(list(items))
        entered.set()
        release.wait(10)
        return np.full(len(items), 0.5)

    async def scenario() -> None:
        batcher = DynamicBatcher(score, max_batch=4, max_wait_s=0)
        await batcher.start()
        first = asyncio.create_task(batcher.score(["first"]))
        assert await asyncio.to_thread(entered.wait, 10)  # the model is busy: the next ones queue
        bulk = asyncio.create_task(batcher.score([f"bulk{i}" for i in range(10)]))
        await asyncio.sleep(0)
        single = asyncio.create_task(batcher.score(["single"]))
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(first, bulk, single)
        await batcher.stop()

    asyncio.run(scenario())
    assert batches[1] == ["bulk0", "single", "bulk1", "bulk2"]  # round-robin, not first come first served
    assert sorted(sum(batches, [])) == sorted(["first", "single", *(f"bulk{i}" for i in range(10))])


def test_a_request_whose_client_left_is_not_scored(fresh_detector: Detector, image: bytes) -> None:
    sizes: list[int] = []
    record_batches(fresh_detector, sizes)
    app = create_app(fresh_detector)
    boundary = "x"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/detect",
        "raw_path": b"/v1/detect",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"test"),
            (b"content-type", f"multipart/form-data; boundary={boundary}".encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }

    async def main() -> list[dict]:
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[dict] = []

        async def receive() -> dict:
            return messages.pop(0) if messages else {"type": "http.disconnect"}  # left right after sending

        async def send(message: dict) -> None:
            sent.append(message)

        async with app.router.lifespan_context(app):
            await app(scope, receive, send)
            await asyncio.sleep(0.3)  # any decoding already started ends
            assert app.state.service.budget.used == 0
        return sent

    sent = asyncio.run(main())
    assert sent[0]["status"] == 499 and sizes == []


# --- the command line ------------------------------------------------------------------------------


def test_serve_options_are_in_mib_with_clean_defaults(
    checkpoint_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ssp_detect.cli import build_parser, main
    from ssp_detect.serve import app as serve_app

    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "request body in MiB (default 20)." in help_text and "20.97" not in help_text
    assert "(default 1024)" in help_text and "--allowed-host NAME" in help_text and "--cors-origin ORIGIN" in help_text

    calls: list[dict] = []
    monkeypatch.setattr(serve_app, "run_server", lambda detector, **kw: calls.append(kw))
    argv = ["serve", "--weights", str(checkpoint_path), "--device", "cpu", "--max-upload-mb", "0.5"]
    argv += ["--max-decode-mb", "256", "--allowed-host", "detector.lan", "--cors-origin", "https://a.example"]
    assert main([*argv, "--max-in-flight", "8", "--header-timeout", "2", "--body-timeout", "3"]) == 0
    (call,) = calls
    limits = call["limits"]
    assert limits.max_upload_bytes == 512 * 1024 and limits.max_decode_bytes == 256 * MIB
    assert (limits.max_in_flight, limits.header_timeout_s, limits.body_timeout_s) == (8, 2.0, 3.0)
    assert call["allowed_hosts"] == ("detector.lan",) and call["cors_origins"] == ("https://a.example",)
    assert main(["serve", "--weights", str(checkpoint_path), "--device", "cpu"]) == 0
    assert calls[1]["limits"] == ServeLimits() and calls[1]["allowed_hosts"] == ()


def test_large_decodes_do_not_hold_up_small_ones(
    fresh_detector: Detector, image: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ssp_detect.serve import service as service_module

    large = encode(noisy_image(np.random.default_rng(9), (300, 300)))
    monkeypatch.setattr(service_module, "LARGE_DECODE_BYTES", 300 * 300 * 13 - 1)  # large.png is "large"
    app = create_app(fresh_detector, ServeLimits(decode_workers=2, max_wait_ms=0))
    service = app.state.service
    release = threading.Event()
    prepare = service.prepare_upload

    def slow_for_large(filename: str, data: bytes, stability: bool = False):
        if filename == "large.png":
            release.wait(10)  # a long decode
        return prepare(filename, data, stability)

    service.prepare_upload = slow_for_large

    async def scenario(client: httpx.AsyncClient) -> tuple[list[int], list[int]]:
        larges = [
            asyncio.create_task(client.post("/v1/detect", files={"file": ("large.png", large)})) for _ in range(2)
        ]
        await asyncio.sleep(0.2)
        # Two large decodes would fill both decode threads; the large lane has one, the small ones two.
        small = await client.post("/v1/detect", files={"file": ("small.png", image)})
        still_decoding = sum(not task.done() for task in larges)
        release.set()
        return [small.status_code, still_decoding], [(await t).status_code for t in larges]

    (small_status, still_decoding), large_statuses = run_async(app, scenario)
    assert small_status == 200 and still_decoding == 2 and large_statuses == [200, 200]
