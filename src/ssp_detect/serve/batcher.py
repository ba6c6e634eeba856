"""Dynamic batching: images from concurrent requests gathered into model batches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress

import numpy as np
from fastapi import HTTPException

from ssp_detect.data.preprocess import Prepared

log = logging.getLogger(__name__)

_Pending = tuple[Prepared, asyncio.Future[float]]  # a queued image and the future of its p_fake


class DynamicBatcher:
    """Gathers images from concurrent requests into model batches.

    One asyncio task takes queued images until ``max_batch`` are gathered or ``max_wait_s`` has
    passed since the first, then runs ``score`` on them in a dedicated thread, so the event loop
    keeps accepting and decoding requests while the model runs; images queued meanwhile form the
    next batch. A failing ``score`` fails the requests of that batch only. An image whose request
    was cancelled (its client left) is dropped from the queue unscored (counted in ``dropped``).

    Args:
        score: p_fake of a list of prepared images (one forward pass).
        max_batch: Most images per call of ``score``.
        max_wait_s: Longest wait of a batch's first image for others.
    """

    def __init__(self, score: Callable[[list[Prepared]], np.ndarray], *, max_batch: int, max_wait_s: float) -> None:
        self._score = score
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.batches = 0
        self.images = 0
        self.dropped = 0
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task[None] | None = None
        self._model_thread: ThreadPoolExecutor | None = None

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`, while the batching task is alive."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the batching task on the running event loop."""
        self._queue = asyncio.Queue()
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ssp-model")
        self._task = asyncio.create_task(self._run(), name="ssp-batcher")

    async def stop(self) -> None:
        """Stop the task; requests still waiting are cancelled."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait()[1].cancel()
        if self._model_thread is not None:
            self._model_thread.shutdown(wait=True)

    async def score(self, items: Sequence[Prepared]) -> list[float]:
        """p_fake of each item, in order, once the batches holding them have run.

        Raises:
            HTTPException: 503 when the batcher is not running.
        """
        if not self.running or self._queue is None:
            raise HTTPException(
                503, "The model is not running; the service is starting or stopping, retry in a moment."
            )
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        for item, future in zip(items, futures, strict=False):
            self._queue.put_nowait((item, future))
        return list(await asyncio.gather(*futures))

    async def _live(self, queue: asyncio.Queue[_Pending]) -> _Pending:
        """The next queued image whose request still waits for it; the others are dropped."""
        while True:
            pending = await queue.get()
            if not pending[1].done():
                return pending
            self.dropped += 1

    async def _next_batch(self, queue: asyncio.Queue[_Pending]) -> list[_Pending]:
        loop = asyncio.get_running_loop()
        batch = [await self._live(queue)]
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch:
            if not queue.empty():
                pending = queue.get_nowait()
                if pending[1].done():
                    self.dropped += 1
                else:
                    batch.append(pending)
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._live(queue), remaining))
            except TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch(self._queue)
            live = [(item, future) for item, future in batch if not future.done()]  # left while waiting
            self.dropped += len(batch) - len(live)
            if not live:
                continue
            batch = live
            try:
                probs = await loop.run_in_executor(self._model_thread, self._score, [item for item, _ in batch])
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:  # the model failing must not kill the batcher
                log.exception("Scoring a batch of %d images failed.", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            self.images += len(batch)
            log.debug("Scored a batch of %d images.", len(batch))
            for (_, future), p in zip(batch, probs.tolist(), strict=False):
                if not future.done():
                    future.set_result(p)
