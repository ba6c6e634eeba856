"""Detection of uploaded files: a memory budget for uploads and decoding, decoding in a thread pool,
scoring through the batcher.

Decode cost. An upload's size says little about what decoding it costs: 300 KB of 1-bit PNG can
hold 40 million pixels, which take about 440 MB to decode and search. So before any pixel is
decoded, each image's header gives its size and mode, and :func:`decode_cost` estimates the peak
memory of decoding it and choosing its patch: pixels x the bytes per pixel that this decoding was
measured to take at its peak (:data:`DECODE_BYTES_PER_PIXEL`, by pixel mode: from 6 for a JPEG,
which libjpeg-turbo decodes straight to RGB, to 22 for 16-bit greyscale, widened on the way),
plus 24 per pixel with the stability check (its re-saved and resized copies). That estimate,
and each upload's size, are counted against one :class:`MemoryBudget` shared by all requests.

Two lanes. An image whose decode cost is over :data:`LARGE_DECODE_BYTES` (about a 5 MP PNG or an
11 MP JPEG) is decoded by the threads of the large lane, half of ``decode_workers`` (at least one),
the others by ``decode_workers`` threads of their own, and large images may hold together only
three quarters of the memory budget: a few large or hostile uploads (a 40 MP pixel bomb takes
seconds of CPU and 400 MB) then delay the ordinary photos of other clients by the CPU they share,
never by a queue for threads or memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import HTTPException

from ssp_detect.data.decode import JPEG_FORMATS, ImageDecodeError, open_image
from ssp_detect.data.patch import SMALL_IMAGE_SIZE
from ssp_detect.data.preprocess import Prepared
from ssp_detect.detector import Detector
from ssp_detect.serve.batcher import DynamicBatcher
from ssp_detect.serve.limits import RETRY_AFTER_S, ServeLimits, mib

log = logging.getLogger(__name__)

# Peak memory per pixel of decoding an image and choosing its patch, by Pillow's pixel mode (RSS
# measured on 8 MP images of each kind and rounded up: benchmarks/serve_decode_cost.py); an unknown
# mode counts as the most costly.
DECODE_BYTES_PER_PIXEL = {
    "1": 11,
    "L": 12,
    "P": 13,
    "RGB": 13,
    "RGBA": 14,
    "LA": 14,
    "PA": 14,
    "CMYK": 14,
    "YCbCr": 14,
    "F": 12,
}
WIDE_MODE_BYTES_PER_PIXEL = 22  # 16- and 32-bit integer modes, and any other
JPEG_BYTES_PER_PIXEL = 6  # an 8-bit YCbCr or greyscale JPEG: libjpeg-turbo writes RGB directly
WEBP_BYTES_PER_PIXEL = 19  # Pillow's WebP decoder goes through RGBA
STABILITY_BYTES_PER_PIXEL = 24  # the re-saved and resized copies of the stability check
LARGE_DECODE_BYTES = 64 << 20  # images that cost more go to the large lane


def decode_cost(data: bytes, *, max_pixels: int, stability: bool = False) -> int:
    """Estimated peak memory in bytes of decoding ``data`` and choosing its patch, from its header
    alone (see the module docstring); 0 for data that will be refused from the header (not an
    image, over ``max_pixels``), which costs nothing to decode."""
    try:
        img = open_image(data, max_pixels=max_pixels, load=False)
    except ImageDecodeError:
        return 0
    if img.format in JPEG_FORMATS and img.mode in ("RGB", "L"):
        per_pixel = JPEG_BYTES_PER_PIXEL
    elif img.format == "WEBP":
        per_pixel = WEBP_BYTES_PER_PIXEL
    else:
        per_pixel = DECODE_BYTES_PER_PIXEL.get(img.mode, WIDE_MODE_BYTES_PER_PIXEL)
    width, height = img.size
    return width * height * (per_pixel + (STABILITY_BYTES_PER_PIXEL if stability else 0))


class OverBudget(HTTPException):
    """A request or an image that alone needs more memory than the whole budget (413)."""

    def __init__(self, what: str, n_bytes: int, budget: int) -> None:
        super().__init__(
            413,
            f"{what[:1].upper()}{what[1:]} needs about {mib(n_bytes)} of memory, over the server's whole "
            f"decode budget of {mib(budget)}; send smaller images, fewer per request, or raise --max-decode-mb.",
        )


class Busy(HTTPException):
    """The memory budget stayed full for too long (503 with Retry-After)."""

    def __init__(self, what: str, n_bytes: int, waited_s: float) -> None:
        super().__init__(
            503,
            f"The server is busy decoding other images: {what} ({mib(n_bytes)}) found no memory free "
            f"within {waited_s:g} s; retry in {RETRY_AFTER_S} s.",
            headers={"retry-after": str(RETRY_AFTER_S)},
        )


class MemoryBudget:
    """Bytes that concurrent requests may hold for their uploads and decoding, shared through one
    event loop (not thread-safe: call it from the loop).

    A claim that fits is granted at once; one that does not waits, in order with the other
    waiting claims but overtaken by any later claim that fits (small images are not held up by a
    large one), for at most ``wait_s``, then fails with :class:`Busy`; a claim larger than the
    whole budget fails at once with :class:`OverBudget`. Large claims (over ``large_bytes``)
    together fit in ``large_share`` of the budget, unless one is alone: the rest stays free for
    ordinary images while pixel bombs and huge uploads queue.

    Args:
        total: The budget in bytes.
        wait_s: Longest wait of a claim.
        large_bytes: Claims over this are large.
        large_share: Share of the budget that large claims may hold together.
    """

    def __init__(
        self, total: int, wait_s: float, *, large_bytes: int = LARGE_DECODE_BYTES, large_share: float = 0.75
    ) -> None:
        self.total = total
        self.wait_s = wait_s
        self.large_bytes = large_bytes
        self.large_total = int(total * large_share)
        self.used = 0
        self.used_large = 0
        self.peak = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    def fits(self, n_bytes: int) -> bool:
        """True when a claim of ``n_bytes`` would be granted now."""
        if self.used + n_bytes > self.total:
            return False
        return n_bytes <= self.large_bytes or not self.used_large or self.used_large + n_bytes <= self.large_total

    async def acquire(self, n_bytes: int, what: str) -> None:
        """Claim ``n_bytes``; raises :class:`OverBudget` or :class:`Busy` (see the class)."""
        if n_bytes > self.total:
            raise OverBudget(what, n_bytes, self.total)
        if self.fits(n_bytes):
            self._grant(n_bytes)
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (n_bytes, granted)
        self._waiting.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(granted), self.wait_s)
        except (TimeoutError, asyncio.CancelledError) as exc:
            if granted.done():  # granted just as the wait ended: give it back
                self.release(n_bytes)
            else:
                self._waiting.remove(entry)
                granted.cancel()
            if isinstance(exc, TimeoutError):
                raise Busy(what, n_bytes, self.wait_s) from None
            raise

    def release(self, n_bytes: int) -> None:
        """Give back a claim, and grant the waiting claims that now fit."""
        self.used -= n_bytes
        if n_bytes > self.large_bytes:
            self.used_large -= n_bytes
        for entry in list(self._waiting):
            n, granted = entry
            if self.fits(n):
                self._waiting.remove(entry)
                self._grant(n)
                granted.set_result(None)

    @asynccontextmanager
    async def hold(self, n_bytes: int, what: str) -> AsyncIterator[None]:
        """Claim ``n_bytes`` for the body of the ``async with``."""
        await self.acquire(n_bytes, what)
        try:
            yield
        finally:
            self.release(n_bytes)

    def _grant(self, n_bytes: int) -> None:
        self.used += n_bytes
        if n_bytes > self.large_bytes:
            self.used_large += n_bytes
        self.peak = max(self.peak, self.used)


class DetectionService:
    """Detection of uploaded files: decoding in a thread pool, scoring through a :class:`DynamicBatcher`,
    memory counted against a :class:`MemoryBudget`.

    Args:
        detector: The loaded detector.
        limits: The service limits.
    """

    def __init__(self, detector: Detector, limits: ServeLimits) -> None:
        self.detector = detector
        self.limits = limits
        self.model_info = detector.info
        self.batcher = DynamicBatcher(detector.score, max_batch=limits.max_batch, max_wait_s=limits.max_wait_ms / 1000)
        self.budget = MemoryBudget(limits.max_decode_bytes, limits.decode_wait_s)
        self._decode_pool: ThreadPoolExecutor | None = None
        self._large_pool: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        """Start the decode threads and the batcher (on the running event loop), after choosing a
        patch once so that the first request does not pay for loading the compiled selection."""
        self._decode_pool = ThreadPoolExecutor(max_workers=self.limits.decode_workers, thread_name_prefix="ssp-decode")
        self._large_pool = ThreadPoolExecutor(
            max_workers=max(1, self.limits.decode_workers // 2), thread_name_prefix="ssp-decode-large"
        )
        blank = np.zeros((SMALL_IMAGE_SIZE, SMALL_IMAGE_SIZE, 3), np.uint8)
        await asyncio.get_running_loop().run_in_executor(self._decode_pool, self.detector.prepare, blank)
        await self.batcher.start()

    async def stop(self) -> None:
        """Stop the batcher and the decode threads."""
        await self.batcher.stop()
        for pool in (self._decode_pool, self._large_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def prepare_upload(
        self, filename: str, data: bytes, stability: bool = False
    ) -> tuple[list[Prepared] | None, str | bool]:
        """Decode one upload and prepare its model inputs (with its deliveries when ``stability``) and
        say whether it was truncated; an unreadable file gives None and its error sentence instead."""
        try:
            decoded = self.detector.read(data, max_pixels=self.limits.max_pixels)
            return self.detector.prepare_inputs(decoded.pixels, stability=stability), decoded.truncated
        except ImageDecodeError as exc:
            # The decoder names in-memory data "uploaded data"; name the file instead.
            return None, str(exc).replace("uploaded data", f"Upload {filename!r}", 1)

    async def _prepare_within_budget(
        self, filename: str, data: bytes, stability: bool
    ) -> tuple[list[Prepared] | None, str | bool]:
        """:meth:`prepare_upload` in its lane's threads once its :func:`decode_cost` is granted; the
        claim is given back when the decoding thread is done, even if the request is cancelled."""
        loop = asyncio.get_running_loop()
        cost = await asyncio.to_thread(decode_cost, data, max_pixels=self.limits.max_pixels, stability=stability)
        await self.budget.acquire(cost, f"upload {filename!r}")
        pool = self._large_pool if cost > LARGE_DECODE_BYTES else self._decode_pool
        assert pool is not None
        job = pool.submit(self.prepare_upload, filename, data, stability)
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(self.budget.release, cost))
        return await asyncio.wrap_future(job)  # cancelled: a job not started yet never runs

    async def detect(
        self, uploads: Sequence[tuple[str, bytes]], *, stability: bool = False
    ) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """Score uploads given as (filename, bytes), each with a stability check when asked.

        Returns:
            One result dict per upload, in order (see :class:`FileResult`), and the timings in ms.

        Raises:
            HTTPException: 413 when an image alone needs more than the decode budget, 503 when the
                budget stays full (:class:`MemoryBudget`) or the batcher is not running.
        """
        start = time.perf_counter()
        try:
            async with asyncio.TaskGroup() as group:  # one failing upload (busy) cancels the others
                tasks = [group.create_task(self._prepare_within_budget(n, d, stability)) for n, d in uploads]
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
        outcomes = [task.result() for task in tasks]
        decoded = time.perf_counter()
        inputs = [prep for preps, _ in outcomes if preps is not None for prep in preps]
        probs = iter(await self.batcher.score(inputs) if inputs else [])
        scored = time.perf_counter()
        results = []
        for (name, _), (preps, outcome) in zip(uploads, outcomes, strict=False):
            if preps is None:
                detection = self.detector.make_detection(name, None, None, str(outcome))
            else:
                detection = self.detector.detection_from(
                    name, preps, [next(probs) for _ in preps], truncated=bool(outcome)
                )
            result = detection.to_dict()
            results.append({"filename": result.pop("source"), **result})
        timings = {
            "decode_and_patch": round((decoded - start) * 1000, 2),
            "queue_and_model": round((scored - decoded) * 1000, 2),
            "total": round((scored - start) * 1000, 2),
        }
        return results, timings
