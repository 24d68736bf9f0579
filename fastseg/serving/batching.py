"""Dynamic batching: concurrent requests gathered into one forward pass.

A request's decoded image joins a bounded queue. One worker takes the first waiting job, then
gathers others that can share its forward pass (the same `key`: test-time flips, tiling) until
it holds `max_batch`, or `max_wait` seconds have passed, or no other request is on its way
(`arriving()`: being decoded; a lone request does not wait), and runs them together in the model's
own thread (`run_batch`): one forward per batch, not per request. Jobs of another key wait for the
next batch in arrival order. A full queue refuses at once (`Busy`): memory never grows unbounded.
This is Triton's dynamic batcher (max batch size, max queue delay) in forty lines of asyncio.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any


class Busy(Exception):
    """The queue is full: the caller answers 503 with Retry-After."""


@dataclass
class Job:
    item: Any
    key: Hashable
    future: asyncio.Future = field(repr=False)


class Batcher:
    """`run_batch(key, items) -> one result (or an Exception) per item`, called in `executor`
    (one thread: the model runs one batch at a time)."""

    def __init__(
        self,
        run_batch: Callable[[Hashable, Sequence[Any]], list[Any]],
        executor: Executor,
        max_batch: int = 8,
        max_wait: float = 0.01,
        max_queue: int = 64,
        arriving: Callable[[], int] = lambda: 0,
    ) -> None:
        self.run_batch, self.executor, self.arriving = run_batch, executor, arriving
        self.max_batch, self.max_wait = max(1, max_batch), max(0.0, max_wait)
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=max(1, max_queue))
        self.waiting: collections.deque[Job] = collections.deque()  # taken from the queue, other key
        self.batches = 0  # forward batches run (the tests count them)
        self.batch_sizes: collections.Counter[int] = collections.Counter()

    async def submit(self, item: Any, key: Hashable = None) -> Any:
        """The result of `item` once its batch has run; `Busy` when the queue is full."""
        job = Job(item, key, asyncio.get_running_loop().create_future())
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            raise Busy(f"{self.queue.maxsize} images already waiting for the model") from None
        result = await job.future
        if isinstance(result, BaseException):
            raise result
        return result

    async def run(self) -> None:
        """The worker: runs until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather(loop)
            items = [job.item for job in batch]
            try:
                results = await loop.run_in_executor(self.executor, self.run_batch, batch[0].key, items)
            except Exception as error:  # noqa: BLE001 - every job of the batch gets the error
                results = [error] * len(batch)
            self.batches += 1
            self.batch_sizes[len(batch)] += 1
            for job, result in zip(batch, results, strict=True):
                if not job.future.done():  # a client that went away cancelled its future
                    job.future.set_result(result)

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> list[Job]:
        first = self.waiting.popleft() if self.waiting else await self.queue.get()
        batch = [first]
        for job in list(self.waiting):  # same-key jobs set aside earlier go first, in order
            if len(batch) < self.max_batch and job.key == first.key:
                self.waiting.remove(job)
                batch.append(job)
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                job = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0 or not self.arriving():  # nobody else on the way: run now
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), remaining)
                except TimeoutError:
                    break
            (batch if job.key == first.key else self.waiting).append(job)
        return [job for job in batch if not job.future.cancelled()] or await self._gather(loop)
