"""Load test of the HTTP service: one-at-a-time requests vs many concurrent clients.

Starts ``ssp_detect.serve.run_server`` in a child process on 127.0.0.1 (with the given weights,
or a randomly initialised model: the speed does not depend on the weights), sends the same
number of single-image requests first one at a time, then from ``--concurrency`` clients at once,
and prints requests, errors, throughput, p50/p99 latency and the mean model batch size of each
mode, and the concurrent / sequential throughput ratio. Every request goes to 127.0.0.1 only, and
each mode stops after ``--requests`` requests or ``--max-seconds`` seconds, whichever comes first.

    python -m benchmarks.serve_load --requests 300 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

HOST = "127.0.0.1"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--weights", type=Path, default=None, help="checkpoint to serve (default: a random ssp-lite model)"
    )
    parser.add_argument(
        "--model", default="ssp-lite", help="registered model of the random checkpoint when --weights is not given"
    )
    parser.add_argument("--device", default="auto", help="device of the served model: auto, cpu, cuda or cuda:N")
    parser.add_argument("--requests", type=int, default=300, help="requests per mode")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients of the concurrent mode")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time limit of each mode")
    parser.add_argument("--image-size", type=int, default=256, help="side of the synthetic test images (PNG)")
    parser.add_argument("--max-batch", type=int, default=32, help="server: most images per model batch")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="server: longest wait to fill a batch")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    return parser


def make_random_checkpoint(path: Path, model: str) -> Path:
    """A randomly initialised model saved as an ssp-detect checkpoint."""
    from ssp_detect.models.checkpoint import save_checkpoint
    from ssp_detect.models.registry import create_model, get_spec

    net = create_model(model)
    save_checkpoint(
        path,
        {
            "model": model,
            "state_dict": net.state_dict(),
            "threshold": 0.5,
            "preprocess": get_spec(model).feed.to_dict(),
        },
    )
    return path


def serve(weights: Path, port: int, device: str, max_batch: int, max_wait_ms: float) -> None:
    """Child process: load the detector and serve it until terminated."""
    from ssp_detect.detector import Detector
    from ssp_detect.serve import ServeLimits, run_server

    detector = Detector.from_checkpoint(weights, device=device)
    run_server(detector, HOST, port, ServeLimits(max_batch=max_batch, max_wait_ms=max_wait_ms), log_level="warning")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def synthetic_images(n: int, size: int, seed: int = 0) -> list[bytes]:
    """``n`` noisy-gradient PNGs of ``size`` x ``size``."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(30, 220, size)
    out = []
    for i in range(n):
        img = ramp[None, :, None] + ramp[:, None, None] / 4 + rng.normal(0, 2 + 3 * i, (size, size, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


async def wait_until_healthy(
    base_url: str, process: multiprocessing.process.BaseProcess, timeout: float = 180.0
) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base_url) as client:
        while time.monotonic() < deadline:
            if not process.is_alive():
                raise SystemExit(f"The server process exited with code {process.exitcode}; see its log above.")
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit(f"The server did not become healthy within {timeout:.0f} s.")


@dataclass
class ModeResult:
    mode: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    mean_batch: float

    @property
    def throughput(self) -> float:
        return (self.requests - self.errors) / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


async def run_mode(
    mode: str, client: httpx.AsyncClient, images: list[bytes], clients: int, requests: int, max_seconds: float
) -> ModeResult:
    """Send up to ``requests`` requests from ``clients`` concurrent loops within ``max_seconds``."""
    before = (await client.get("/healthz")).json()
    latencies: list[float] = []
    errors = 0
    issued = 0
    start = time.perf_counter()
    deadline = start + max_seconds

    async def one_client() -> None:
        nonlocal issued, errors
        while issued < requests and time.perf_counter() < deadline:
            data = images[issued % len(images)]
            issued += 1
            sent = time.perf_counter()
            try:
                ok = (
                    await client.post("/v1/detect", files={"file": ("load.png", data, "image/png")})
                ).status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append((time.perf_counter() - sent) * 1000)
            errors += not ok

    await asyncio.gather(*(one_client() for _ in range(clients)))
    seconds = time.perf_counter() - start
    after = (await client.get("/healthz")).json()
    batches = after["batches"] - before["batches"]
    mean_batch = (after["images"] - before["images"]) / batches if batches else float("nan")
    return ModeResult(mode, len(latencies), errors, seconds, latencies, mean_batch)


async def load_test(base_url: str, args: argparse.Namespace) -> list[ModeResult]:
    images = synthetic_images(8, args.image_size)
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60.0) as client:
        for data in images:  # warm-up: first forward passes, connection set-up
            (await client.post("/v1/detect", files={"file": ("warm.png", data)})).raise_for_status()
        budget = (args.requests, args.max_seconds)
        sequential = await run_mode("sequential (1 client)", client, images, 1, *budget)
        concurrent = await run_mode(
            f"concurrent ({args.concurrency} clients)", client, images, args.concurrency, *budget
        )
    return [sequential, concurrent]


def print_table(results: list[ModeResult]) -> None:
    header = f"{'mode':<26} {'requests':>8} {'errors':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'mean batch':>10}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.mode:<26} {r.requests:>8} {r.errors:>6} {r.throughput:>8.1f} "
            f"{r.percentile(50):>8.1f} {r.percentile(99):>8.1f} {r.mean_batch:>10.2f}"
        )
    sequential, concurrent = results
    if sequential.throughput > 0:
        print(f"\nthroughput ratio concurrent / sequential: {concurrent.throughput / sequential.throughput:.2f}x")


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or make_random_checkpoint(Path(tmp) / "random.pt", args.model)
        port = args.port or free_port()
        process = multiprocessing.get_context("spawn").Process(
            target=serve, args=(weights, port, args.device, args.max_batch, args.max_wait_ms), daemon=True
        )
        process.start()
        base_url = f"http://{HOST}:{port}"
        try:
            asyncio.run(wait_until_healthy(base_url, process))
            print(
                f"server {base_url} ({weights.name}), {args.image_size}x{args.image_size} PNG per request, "
                f"max batch {args.max_batch}, max wait {args.max_wait_ms} ms\n"
            )
            print_table(asyncio.run(load_test(base_url, args)))
        finally:
            process.terminate()
            process.join(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
