"""Detection of uploaded files: decoding in a thread pool, scoring through the batcher."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ssp_detect.data.decode import ImageDecodeError
from ssp_detect.data.patch import SMALL_IMAGE_SIZE
from ssp_detect.data.preprocess import Prepared
from ssp_detect.detector import Detector
from ssp_detect.serve.batcher import DynamicBatcher
from ssp_detect.serve.limits import ServeLimits


class DetectionService:
    """Detection of uploaded files: decoding in a thread pool, scoring through a :class:`DynamicBatcher`.

    Args:
        detector: The loaded detector.
        limits: The service limits.
    """

    def __init__(self, detector: Detector, limits: ServeLimits) -> None:
        self.detector = detector
        self.limits = limits
        self.model_info = detector.info
        self.batcher = DynamicBatcher(detector.score, max_batch=limits.max_batch, max_wait_s=limits.max_wait_ms / 1000)
        self._decode_pool: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        """Start the decode threads and the batcher (on the running event loop), after choosing a
        patch once so that the first request does not pay for loading the compiled selection."""
        self._decode_pool = ThreadPoolExecutor(max_workers=self.limits.decode_workers, thread_name_prefix="ssp-decode")
        blank = np.zeros((SMALL_IMAGE_SIZE, SMALL_IMAGE_SIZE, 3), np.uint8)
        await asyncio.get_running_loop().run_in_executor(self._decode_pool, self.detector.prepare, blank)
        await self.batcher.start()

    async def stop(self) -> None:
        """Stop the batcher and the decode threads."""
        await self.batcher.stop()
        if self._decode_pool is not None:
            self._decode_pool.shutdown(wait=False, cancel_futures=True)

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

    async def detect(
        self, uploads: Sequence[tuple[str, bytes]], *, stability: bool = False
    ) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """Score uploads given as (filename, bytes), each with a stability check when asked.

        Returns:
            One result dict per upload, in order (see :class:`FileResult`), and the timings in ms.
        """
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        outcomes = await asyncio.gather(
            *(
                loop.run_in_executor(self._decode_pool, self.prepare_upload, name, data, stability)
                for name, data in uploads
            )
        )
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
