"""Abuse test of the HTTP service: slow clients and a hostile mix of uploads, against a well-behaved one.

Starts ``ssp serve``'s server (``ssp_detect.serve.run_server``, default limits unless given) in a
child process on a free port of 127.0.0.1, with a randomly initialised model it saves first (the
verdicts do not matter here). Then:

1. unloaded: one well-behaved client sends single-image requests one at a time (the baseline);
2. under abuse, for ``--seconds``: the same client goes on, while ``--slow-clients`` clients hold
   connections open (half send their headers a byte at a time, half send their headers and then
   trickle the body) and ``--clients`` concurrent clients send, as fast as they are answered, a mix
   of good images, bad files (empty, text, truncated, corrupt), oversize bodies (over the upload
   limit), near-limit uploads (a noise PNG just under the upload limit), pixel bombs (1-bit PNGs
   just under the pixel limit: a few KB that decode to 40 million pixels) and requests of 16 files.

It prints one Markdown table: 5xx answers (500s are faults, 503s are the service shedding load with
Retry-After), slow connections closed by the server and how long they were held against the
configured timeouts, the well-behaved client's p50/p99 latency under abuse against unloaded, and the
server's peak resident memory (VmHWM from /proc, else psutil sampling) against its memory at start
plus the decode budget. Every request goes to 127.0.0.1 only, and everything stops after
``--seconds`` (plus the time to finish requests in flight, at most a minute).

    python -m benchmarks.serve_abuse --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import io
import multiprocessing
import os
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from benchmarks.serve_load import HOST, free_port, make_random_checkpoint, wait_until_healthy

MIB = 1 << 20
ABUSE_MIX = {  # kind -> share of the abusive clients' requests
    "good": 0.30,
    "bad": 0.20,
    "oversize": 0.15,
    "near-limit": 0.15,
    "pixel bomb": 0.10,
    "16 files": 0.10,
}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the abuse phase")
    parser.add_argument("--baseline-requests", type=int, default=60, help="requests of the unloaded baseline")
    parser.add_argument("--clients", type=int, default=64, help="concurrent abusive clients")
    parser.add_argument("--slow-clients", type=int, default=8, help="slow clients (half headers, half bodies)")
    parser.add_argument("--slow-byte-s", type=float, default=0.5, help="seconds between a slow client's bytes")
    parser.add_argument("--model", default="ssp-lite", help="registered model of the random checkpoint")
    parser.add_argument("--weights", type=Path, default=None, help="checkpoint to serve instead of a random one")
    parser.add_argument(
        "--header-timeout", type=float, default=None, help="server: --header-timeout (default: its own)"
    )
    parser.add_argument("--body-timeout", type=float, default=None, help="server: --body-timeout (default: its own)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the request mix")
    return parser


def serve(weights: Path, port: int, overrides: dict[str, float]) -> None:
    """Child process: load the detector and serve it with the default limits (and ``overrides``)."""
    from ssp_detect.detector import Detector
    from ssp_detect.serve import ServeLimits, run_server

    detector = Detector.from_checkpoint(weights, device="cpu")
    run_server(detector, HOST, port, ServeLimits(**overrides), log_level="warning")


# --- payloads -----------------------------------------------------------------------------------------


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


@dataclass
class Payloads:
    good: bytes
    bad: list[bytes]
    near_limit: bytes
    pixel_bomb: bytes
    small: list[bytes]


def make_payloads(max_upload: int, max_pixels: int) -> Payloads:
    rng = np.random.default_rng(0)
    ramp = np.linspace(30, 220, 256)
    good_img = ramp[None, :, None] + ramp[:, None, None] / 4 + rng.normal(0, 6, (256, 256, 3))
    good = png(Image.fromarray(np.clip(good_img, 0, 255).astype(np.uint8)))
    jpeg = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(jpeg, "JPEG")
    bad = [b"", b"this is not an image\n" * 10, good[: len(good) // 2], jpeg.getvalue()[:300] + b"\xff\xd9"]
    # Noise does not compress: a side whose PNG lands just under the upload limit (multipart adds ~200 bytes).
    side = int(((max_upload - 64 * 1024) / 3) ** 0.5)
    near_limit = png(Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)))
    bomb_side = int(max_pixels**0.5) - 1
    pixel_bomb = png(Image.new("1", (bomb_side, bomb_side)))
    small = [png(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))) for _ in range(16)]
    return Payloads(good, bad, near_limit, pixel_bomb, small)


# --- clients -----------------------------------------------------------------------------------------


@dataclass
class Tally:
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)  # (kind, status) -> count; 0: no answer
    good_503: int = 0
    slow_held_s: dict[str, list[float]] = field(default_factory=lambda: {"headers": [], "body": []})
    slow_open_at_end: int = 0
    slow_answers: Counter[str] = field(default_factory=Counter)
    shed_by: Counter[str] = field(default_factory=Counter)  # which guard answered 503
    no_answer: Counter[str] = field(default_factory=Counter)  # the client's error when there was no answer


async def post_raw_oversize(port: int, declared: int) -> int:
    """A body declared over the limit: the head and 64 KB of it; the status of the answer."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        head = (
            f"POST /v1/detect HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {declared}\r\n\r\n"
        )
        writer.write(head.encode() + b"\0" * 65536)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 30)
        return int(line.split()[1]) if line else 0
    except (OSError, TimeoutError, ValueError, IndexError):
        return 0
    finally:
        writer.close()


def well_behaved(base_url: str, image: bytes, seconds: float, max_requests: int | None = None) -> dict:
    """A well-behaved client, run in a process of its own (its latencies do not wait on the abusive
    clients' event loop): single-image requests one at a time for ``seconds`` or ``max_requests``,
    honouring Retry-After. Client-side latencies and the server's own ``timings_ms.total`` of the
    answered requests, and the statuses."""
    out: dict = {"latency_ms": [], "statuses": Counter(), "shed_by": Counter(), "no_answer": Counter()}
    out |= {"server_ms": [], "decode_ms": [], "model_ms": []}
    until = time.monotonic() + seconds
    with httpx.Client(base_url=base_url, timeout=120.0) as client:
        while time.monotonic() < until and (max_requests is None or len(out["latency_ms"]) < max_requests):
            sent = time.perf_counter()
            try:
                r = client.post("/v1/detect", files={"file": ("good.png", image, "image/png")})
            except httpx.HTTPError as exc:
                out["statuses"][0] += 1
                out["no_answer"][type(exc).__name__] += 1
                continue
            out["statuses"][r.status_code] += 1
            if r.status_code == 503:
                out["shed_by"]["memory budget" if "decoding" in r.text else "in-flight cap"] += 1
                time.sleep(float(r.headers.get("retry-after", "1")))
                continue
            out["latency_ms"].append((time.perf_counter() - sent) * 1000)
            timings = r.json()["timings_ms"]
            out["server_ms"].append(timings["total"])
            out["decode_ms"].append(timings["decode_and_patch"])
            out["model_ms"].append(timings["queue_and_model"])
    return out


async def abuser(
    client: httpx.AsyncClient, port: int, payloads: Payloads, max_upload: int, until: float, seed: int, tally: Tally
) -> None:
    rng = random.Random(seed)
    kinds, weights = list(ABUSE_MIX), list(ABUSE_MIX.values())
    while time.monotonic() < until:
        kind = rng.choices(kinds, weights)[0]
        if kind == "oversize":
            tally.statuses[kind, await post_raw_oversize(port, max_upload + MIB)] += 1
            continue
        if kind == "good":
            files = [("file", ("good.png", payloads.good))]
        elif kind == "bad":
            files = [("file", ("bad.png", rng.choice(payloads.bad)))]
        elif kind == "near-limit":
            files = [("file", ("near-limit.png", payloads.near_limit))]
        elif kind == "pixel bomb":
            files = [("file", ("bomb.png", payloads.pixel_bomb))]
        else:
            files = [("files", (f"{i}.png", data)) for i, data in enumerate(payloads.small)]
        try:
            r = await client.post("/v1/detect", files=files)
            tally.statuses[kind, r.status_code] += 1
            if r.status_code == 503:
                tally.shed_by["memory budget" if "decoding" in r.text else "in-flight cap"] += 1
        except httpx.HTTPError as exc:
            tally.statuses[kind, 0] += 1
            tally.no_answer[type(exc).__name__] += 1


async def slow_connection(port: int, part: str, byte_s: float, until: float) -> tuple[float, bytes] | None:
    """One connection that sends its head (``part`` headers) or, after its head, its body (``part``
    body) a byte every ``byte_s``: (seconds until the server answered or closed it, the start of
    its answer; empty when it closed without one), or None when the run ended first."""
    head = f"POST /v1/detect HTTP/1.1\r\nHost: {HOST}:{port}\r\nX-Padding: {'p' * 400}\r\n".encode()
    body = b"--x\r\n" + b"b" * 100_000
    opened = time.monotonic()
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        if part == "body":
            writer.write(
                head + f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            )
        for i in range(len(head if part == "headers" else body)):
            if time.monotonic() >= until:
                return None
            try:
                answer = await asyncio.wait_for(reader.read(200), byte_s)
                return time.monotonic() - opened, answer
            except TimeoutError:
                pass
            writer.write((head if part == "headers" else body)[i : i + 1])
            await writer.drain()
        return time.monotonic() - opened, await asyncio.wait_for(reader.read(200), 60)
    except (OSError, TimeoutError):
        return time.monotonic() - opened, b""
    finally:
        writer.close()


async def slow_client(port: int, part: str, byte_s: float, until: float, tally: Tally) -> None:
    """Slow connections one after another until the run ends."""
    while time.monotonic() < until:
        outcome = await slow_connection(port, part, byte_s, until)
        if outcome is None:
            tally.slow_open_at_end += 1
            continue
        held, answer = outcome
        tally.slow_held_s[part].append(held)
        tally.slow_answers[answer.split(b"\r\n", 1)[0].decode(errors="replace") or "closed"] += 1


# --- memory --------------------------------------------------------------------------------------------


def rss_bytes(pid: int, key: str = "VmRSS") -> int | None:
    """VmRSS (or VmHWM, the peak) of a process from /proc; None where there is no /proc."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


async def sample_rss(pid: int, until: float, peak: list[int]) -> None:
    """Keep the highest RSS seen (psutil where /proc has no VmHWM)."""
    try:
        import psutil

        proc = psutil.Process(pid)
    except ImportError:
        proc = None
    while time.monotonic() < until:
        rss = proc.memory_info().rss if proc is not None else rss_bytes(pid) or 0
        peak[0] = max(peak[0], rss)
        await asyncio.sleep(0.1)


# --- the run -------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def abuse(base_url: str, port: int, pid: int, args: argparse.Namespace, limits) -> dict:
    payloads = make_payloads(limits.max_upload_bytes, limits.max_pixels)
    tally = Tally()
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as polite:
        warm = await loop.run_in_executor(polite, well_behaved, base_url, payloads.good, 60.0, 5)
        assert warm["statuses"] == {200: 5}, warm
        start_rss = rss_bytes(pid) or 0
        baseline = await loop.run_in_executor(
            polite, well_behaved, base_url, payloads.good, 120.0, args.baseline_requests
        )
        peak = [start_rss]
        connections = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
        async with httpx.AsyncClient(base_url=base_url, timeout=120.0, limits=connections) as hostile:
            until = time.monotonic() + args.seconds
            loaded = loop.run_in_executor(polite, well_behaved, base_url, payloads.good, args.seconds)
            tasks = [
                sample_rss(pid, until + 5, peak),
                *(
                    slow_client(port, "headers" if i % 2 == 0 else "body", args.slow_byte_s, until, tally)
                    for i in range(args.slow_clients)
                ),
                *(
                    abuser(hostile, port, payloads, limits.max_upload_bytes, until, args.seed + i, tally)
                    for i in range(args.clients)
                ),
            ]
            results = await asyncio.gather(loaded, *tasks)
    loaded = results[0]
    for status, n in loaded["statuses"].items():
        tally.statuses["well-behaved", status] += n
    tally.shed_by.update(loaded["shed_by"])
    tally.no_answer.update(loaded["no_answer"])
    tally.good_503 = loaded["statuses"].get(503, 0)
    peak_rss = max(peak[0], rss_bytes(pid, "VmHWM") or 0)
    return {"tally": tally, "baseline": baseline, "loaded": loaded, "start_rss": start_rss, "peak_rss": peak_rss}


def report(out: dict, args: argparse.Namespace, limits) -> str:
    tally: Tally = out["tally"]
    statuses = tally.statuses
    n_500 = sum(n for (_, status), n in statuses.items() if status >= 500 and status != 503)
    n_503 = sum(n for (_, status), n in statuses.items() if status == 503)
    total = sum(statuses.values())
    by_kind = {}
    for (kind, status), n in sorted(statuses.items()):
        by_kind.setdefault(kind, []).append(f"{status or 'no answer'}: {n}")
    base, loaded = out["baseline"]["latency_ms"], out["loaded"]["latency_ms"]
    p50_0, p99_0 = percentile(base, 50), percentile(base, 99)
    p50_1, p99_1 = percentile(loaded, 50), percentile(loaded, 99)
    server_0, server_1 = out["baseline"]["server_ms"], out["loaded"]["server_ms"]
    held = {part: max(v) if v else float("nan") for part, v in tally.slow_held_s.items()}
    # What the server may hold beyond its start: the decode budget, and up to 1 MiB of each file of
    # each request in flight that the multipart parser keeps in memory before spilling to disk.
    budget = out["start_rss"] + limits.max_decode_bytes + limits.max_in_flight * MIB
    finished = sum(len(v) for v in tally.slow_held_s.values())
    shed = tally.slow_answers.get("HTTP/1.1 503 Service Unavailable", 0)
    rows = [
        ("requests answered under abuse", f"{total - sum(tally.no_answer.values())}", ""),
        ("5xx: 500 (faults)", f"{n_500}", "0"),
        (
            "5xx: 503 (shed, with Retry-After)",
            f"{n_503} ({''.join(f'{k}: {n}; ' for k, n in tally.shed_by.items())}"
            f"well-behaved client: {tally.good_503})",
            "—",
        ),
        (
            "slow connections ended by the server",
            f"{finished} of {finished} ({finished - shed} by a timeout, {shed} shed at once with 503; "
            f"{tally.slow_open_at_end} still inside their timeout at the end)",
            "all",
        ),
        (
            "longest hold: slow headers / slow body",
            f"{held['headers']:.1f} s / {held['body']:.1f} s",
            f"≤ {limits.header_timeout_s:g} s / ≤ {limits.body_timeout_s:g} s (+ 1 s)",
        ),
        ("slow connections' answers", ", ".join(f"{k}: {n}" for k, n in tally.slow_answers.items()), "408"),
        (
            "well-behaved client p50 / p99, unloaded",
            f"{p50_0:.1f} / {p99_0:.1f} ms ({len(base)} requests; in the server "
            f"{percentile(server_0, 50):.1f} / {percentile(server_0, 99):.1f} ms)",
            "",
        ),
        (
            "well-behaved client p50 / p99, under abuse",
            f"{p50_1:.1f} / {p99_1:.1f} ms ({len(loaded)} requests; in the server "
            f"{percentile(server_1, 50):.1f} / {percentile(server_1, 99):.1f} ms, of which decoding "
            f"{percentile(out['loaded']['decode_ms'], 50):.1f} / {percentile(out['loaded']['decode_ms'], 99):.1f} ms, "
            f"queue and model {percentile(out['loaded']['model_ms'], 50):.1f} / "
            f"{percentile(out['loaded']['model_ms'], 99):.1f} ms)",
            f"p99 ≤ {3 * p99_0:.0f} ms (3x)",
        ),
        ("p99 under abuse / unloaded", f"{p99_1 / p99_0:.1f}x", "≤ 3x"),
        ("server RSS at start", f"{out['start_rss'] / MIB:.0f} MiB", ""),
        (
            "server peak RSS",
            f"{out['peak_rss'] / MIB:.0f} MiB",
            f"≤ start + decode budget + 1 MiB per request in flight = {budget / MIB:.0f} MiB",
        ),
    ]
    rows += [(f"answers: {kind}", ", ".join(parts), "") for kind, parts in by_kind.items()]
    if tally.no_answer:
        rows.append(("no answer: the client's error", ", ".join(f"{k}: {n}" for k, n in tally.no_answer.items()), ""))
    lines = ["| measure | value | target |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    from ssp_detect.serve import ServeLimits

    overrides = {}
    if args.header_timeout is not None:
        overrides["header_timeout_s"] = args.header_timeout
    if args.body_timeout is not None:
        overrides["body_timeout_s"] = args.body_timeout
    limits = ServeLimits(**overrides)
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or make_random_checkpoint(Path(tmp) / "random.pt", args.model)
        port = args.port or free_port()
        process = multiprocessing.get_context("spawn").Process(
            target=serve, args=(weights, port, overrides), daemon=True
        )
        process.start()
        base_url = f"http://{HOST}:{port}"
        try:
            asyncio.run(wait_until_healthy(base_url, process))
            out = asyncio.run(abuse(base_url, port, process.pid, args, limits))
        finally:
            process.terminate()
            process.join(timeout=10)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(
        f"serve_abuse: {args.seconds:g} s, {args.clients} clients, {args.slow_clients} slow clients, "
        f"model {weights.name if args.weights else args.model + ' (random)'}; {machine}; "
        f"{datetime.date.today().isoformat()}\n"
    )
    print(report(out, args, limits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
