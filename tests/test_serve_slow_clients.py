"""Slow and vanishing clients against the real server (uvicorn on 127.0.0.1, raw sockets).

Each slow client would need far longer than the server's timeout to finish; the tests assert that
the server answered 408 and closed the connection before the client was done, never a duration.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn

from ssp_detect.detector import Detector
from ssp_detect.serve import ServeLimits, server_config
from tests.helpers import noisy_image
from tests.test_serve import encode, record_batches

HEAD = b"POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"p" * 300 + b"\r\n"


@pytest.fixture
def fresh_detector(checkpoint_path: Path) -> Detector:
    return Detector.from_checkpoint(checkpoint_path, device="cpu")


@contextmanager
def live_server(detector: Detector, limits: ServeLimits) -> Iterator[tuple[int, uvicorn.Server]]:
    """``server_config`` served by uvicorn in a thread on a free port of 127.0.0.1."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(server_config(detector, "127.0.0.1", 0, limits, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield sock.getsockname()[1], server
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def wait_until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout_s`` (a step of the server the test
    must not race, never a duration asserted)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the server never reached the awaited state"
        time.sleep(0.01)


def trickle(port: int, data: bytes, pause_s: float, *, start: bytes = b"") -> tuple[int, bytes]:
    """Send ``start`` at once, then ``data`` a byte every ``pause_s`` until the server answers or
    closes; (bytes of ``data`` sent, what the server sent)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(start)
        conn.settimeout(pause_s)
        answer = b""
        for sent in range(len(data) + 1):
            try:
                chunk = conn.recv(65536)
                if not chunk:  # closed by the server
                    return sent, answer
                answer += chunk
                conn.settimeout(5)  # the answer has begun: read it to the end
                while chunk := conn.recv(65536):
                    answer += chunk
                return sent, answer
            except TimeoutError:
                pass
            except ConnectionResetError:
                return sent, answer
            if sent < len(data):
                try:
                    conn.sendall(data[sent : sent + 1])
                except (BrokenPipeError, ConnectionResetError):
                    return sent, answer
        return len(data), answer


def error_of(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    assert b"connection: close" in head.lower()
    return status, json.loads(body)["error"]


@pytest.fixture(scope="module")
def served(checkpoint_path: Path) -> Iterator[int]:
    detector = Detector.from_checkpoint(checkpoint_path, device="cpu")
    with live_server(detector, ServeLimits(header_timeout_s=0.5, body_timeout_s=0.5)) as (port, _):
        yield port


def test_headers_sent_byte_by_byte_are_cut_off(served: int) -> None:
    head = HEAD + b"Content-Length: 10\r\n\r\n"
    sent, answer = trickle(served, head, 0.05)  # 0.05 s a byte: about 17 s for the whole head
    assert sent < len(head) // 2
    status, sentence = error_of(answer)
    assert status == 408 and "headers did not arrive within 0.5 s" in sentence


def test_a_silent_connection_is_closed(served: int) -> None:
    sent, answer = trickle(served, b"\0" * 200, 60.0, start=b"")  # sends nothing for a minute
    assert sent == 0 and error_of(answer)[0] == 408


def test_a_trickled_body_is_cut_off_with_408(served: int) -> None:
    head = HEAD + b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 400\r\n\r\n"
    body = b"--x\r\n" + b"b" * 395
    sent, answer = trickle(served, body, 0.05, start=head)
    assert sent < len(body) // 2
    status, sentence = error_of(answer)
    assert status == 408 and "body did not arrive within 0.5 s" in sentence


def test_keep_alive_requests_still_work(served: int) -> None:
    image = encode(noisy_image(np.random.default_rng(2), (40, 40)))
    with httpx.Client(base_url=f"http://127.0.0.1:{served}") as client:
        for _ in range(3):  # one connection, several requests, pauses shorter than the timeouts
            assert client.post("/v1/detect", files={"file": ("a.png", image)}).status_code == 200
            time.sleep(0.2)
        r = client.get("/", headers={"host": "attacker.example"})
    assert r.status_code == 400  # the default of a loopback server: loopback names only


def test_a_client_that_leaves_while_queued_is_dropped(fresh_detector: Detector) -> None:
    entered, release = threading.Event(), threading.Event()
    sizes: list[int] = []
    record_batches(fresh_detector, sizes, before=lambda: (entered.set(), release.wait(10)))
    image = encode(noisy_image(np.random.default_rng(3), (48, 48)))
    request = httpx.Request("POST", "http://127.0.0.1/v1/detect", files={"file": ("a.png", image)})
    raw = (
        b"POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + b"".join(f"{k}: {v}\r\n".encode() for k, v in request.headers.items() if k.lower() != "host")
        + b"\r\n"
        + request.read()
    )
    with live_server(fresh_detector, ServeLimits(max_wait_ms=0)) as (port, server):
        batcher = server.config.app.state.service.batcher
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            first = threading.Thread(target=client.post, args=("/v1/detect",), kwargs={"files": {"file": ("a", image)}})
            first.start()
            assert entered.wait(10)  # the model is busy with the first request
            with socket.create_connection(("127.0.0.1", port)) as gone:
                gone.sendall(raw)
                wait_until(lambda: len(batcher._pending) == 1)  # decoded and queued for the model
            wait_until(lambda: batcher._pending[0].future.cancelled())  # the server saw the client leave
            release.set()
            first.join(10)
            wait_until(lambda: batcher.images + batcher.dropped == 2)  # scored or dropped, never both
            health = client.get("/healthz").json()
    assert sizes == [1] and health["images"] == 1 and health["dropped"] == 1


def test_a_declared_oversize_body_is_refused_before_it_is_sent(served: int) -> None:
    head = HEAD + b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 21000000\r\n\r\n"
    with socket.create_connection(("127.0.0.1", served), timeout=10) as conn:
        conn.sendall(head)  # and not one byte of the body
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    status, sentence = error_of(answer)
    assert status == 413 and "upload limit of 20 MiB (20,971,520 bytes)" in sentence
