"""Dynamic batching: images from concurrent requests gathered into model batches, fairly."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass

import numpy as np
from fastapi import HTTPException

from ssp_detect.data.preprocess import Prepared

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Pending:
    """A queued image, the future of its p_fake, and the call of :meth:`DynamicBatcher.score` it came with."""

    item: Prepared
    future: asyncio.Future[float]
    call: int


class DynamicBatcher:
    """Gathers images from concurrent requests into model batches.

    One asyncio task takes queued images until ``max_batch`` are gathered or ``max_wait_s`` has
    passed since the first, then runs ``score`` on them in a dedicated thread, so the event loop
    keeps accepting and decoding requests while the model runs; images queued meanwhile form the
    next batch. A failing ``score`` fails the requests of that batch only. An image whose request
    was cancelled (its client left) is dropped from the queue unscored (counted in ``dropped``).

    Fairness: when more images wait than a batch holds, the batch takes them round-robin over the
    requests that sent them (in the order the requests arrived), one image of each in turn, so a
    request of one image waits for at most one batch behind requests of many.

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
        self._pending: deque[_Pending] = deque()
        self._arrived: asyncio.Event | None = None
        self._calls = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._model_thread: ThreadPoolExecutor | None = None

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`, while the batching task is alive."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the batching task on the running event loop."""
        self._arrived = asyncio.Event()
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ssp-model")
        self._task = asyncio.create_task(self._run(), name="ssp-batcher")

    async def stop(self) -> None:
        """Stop the task; requests still waiting are cancelled."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        while self._pending:
            self._pending.popleft().future.cancel()
        if self._model_thread is not None:
            self._model_thread.shutdown(wait=True)

    async def score(self, items: Sequence[Prepared]) -> list[float]:
        """p_fake of each item, in order, once the batches holding them have run.

        Raises:
            HTTPException: 503 when the batcher is not running.
        """
        if not self.running or self._arrived is None:
            raise HTTPException(
                503, "The model is not running; the service is starting or stopping, retry in a moment."
            )
        loop = asyncio.get_running_loop()
        call = next(self._calls)
        futures = [loop.create_future() for _ in items]
        self._pending.extend(_Pending(item, future, call) for item, future in zip(items, futures, strict=True))
        self._arrived.set()
        return list(await asyncio.gather(*futures))

    def _drop_gone(self) -> int:
        """Drop the queued images whose requests were cancelled; the number of live ones left."""
        live = [p for p in self._pending if not p.future.done()]
        self.dropped += len(self._pending) - len(live)
        self._pending = deque(live)
        return len(live)

    def _take_fairly(self) -> list[_Pending]:
        """Up to ``max_batch`` queued images, round-robin over their calls (see the class)."""
        by_call: dict[int, deque[_Pending]] = {}
        for pending in self._pending:
            by_call.setdefault(pending.call, deque()).append(pending)
        batch: list[_Pending] = []
        while len(batch) < self.max_batch and by_call:
            for call in list(by_call):
                batch.append(by_call[call].popleft())
                if not by_call[call]:
                    del by_call[call]
                if len(batch) == self.max_batch:
                    break
        taken = set(map(id, batch))
        self._pending = deque(p for p in self._pending if id(p) not in taken)
        return batch

    async def _wait_for_arrivals(self, timeout: float | None) -> None:
        assert self._arrived is not None
        self._arrived.clear()
        with suppress(TimeoutError):
            await asyncio.wait_for(self._arrived.wait(), timeout)

    async def _next_batch(self) -> list[_Pending]:
        loop = asyncio.get_running_loop()
        while not self._drop_gone():
            await self._wait_for_arrivals(None)
        deadline = loop.time() + self.max_wait_s
        while self._drop_gone() < self.max_batch and (remaining := deadline - loop.time()) > 0:
            await self._wait_for_arrivals(remaining)
        return self._take_fairly()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            try:
                probs = await loop.run_in_executor(self._model_thread, self._score, [p.item for p in batch])
            except asyncio.CancelledError:
                for pending in batch:
                    pending.future.cancel()
                raise
            except Exception as exc:  # the model failing must not kill the batcher
                log.exception("Scoring a batch of %d images failed.", len(batch))
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            self.batches += 1
            self.images += len(batch)
            log.debug("Scored a batch of %d images.", len(batch))
            for pending, p in zip(batch, probs.tolist(), strict=True):
                if not pending.future.done():  # its client left while the model ran
                    pending.future.set_result(p)
