"""Requests through the inference code `predict` uses, with dynamic batching.

An upload is decoded and fitted by `ImageFiles` (`load_rgb`, `fit_image`, `normalise`: predict's
items, with its limits), in a bounded thread pool off the event loop. Decoded images of concurrent
requests are gathered by `batching.Batcher` and run through `fastseg.inference.segmenter.segment`
(the segmenter's strategy, as predict runs it) in the model's own thread, one forward per batch.
Each image's labels come from `Segmented.labels` (a fitted image's: crop, upsample to its size,
argmax) and are encoded by predict's PNG writer, back in the pool: the mask served is the mask
`fastseg predict` writes, byte for byte.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import io
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from fastseg.errors import FastsegError
from fastseg.inference.memory import out_of_memory
from fastseg.inference.segmenter import Segmenter, segment
from fastseg.inference.tiling import Tiling
from fastseg.serving.batching import Batcher, Busy
from fastseg.serving.errors import ServeError
from fastseg.serving.settings import MAX_TILED_PIXELS, WINDOW_COST_PIXELS, ServeSettings

log = logging.getLogger("fastseg.serve")
T = TypeVar("T")
TOO_LARGE = "too large to decode safely"  # `load_rgb`'s words for a bomb or an image over the pixel limit


class Decoded(Dataset):
    """Items already decoded by `ImageFiles`, as one batch for `segment`'s loader."""

    def __init__(self, items: Sequence[dict[str, Any]]) -> None:
        self.items = [{**item, "index": index} for index, item in enumerate(items)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]


@dataclass
class Result:
    """One served image: its labels `(H, W)` uint8 and, when asked for, the decoded RGB picture."""

    labels: np.ndarray
    original: np.ndarray | None
    seconds: float

    @property
    def size(self) -> tuple[int, int]:
        return self.labels.shape[0], self.labels.shape[1]


class Engine:
    """The served model: one `Segmenter`, a decode/encode pool, the model thread and its batcher."""

    def __init__(self, segmenter: Segmenter, settings: ServeSettings) -> None:
        self.segmenter, self.settings = segmenter, settings
        self.pool = ThreadPoolExecutor(settings.threads, thread_name_prefix="fastseg-serve")
        self.model_thread = ThreadPoolExecutor(1, thread_name_prefix="fastseg-model")
        # request bodies (multipart, /predict's JSON and XML) are parsed here, off the event loop
        # (a 14 MB list of tasks held it for 4 s: /healthz and every other request waited), and
        # one at a time: a parse holds the GIL, so more threads would not be faster, only add
        # each body's parsed objects (up to ~30x its size) to memory at once
        self.parsing = ThreadPoolExecutor(1, thread_name_prefix="fastseg-parse")
        self.arriving = 0  # requests being decoded: the batcher waits for them, not for nobody
        self.batcher = Batcher(self._run_batch, self.model_thread, settings.max_batch,
                               max_wait=settings.max_wait_ms / 1000, max_queue=settings.max_queue,
                               arriving=lambda: self.arriving)  # fmt: skip
        self.ready = False
        self.failed: str | None = None  # why the warm-up failed: never ready
        self.in_flight = 0
        self._worker: asyncio.Task | None = None

    @functools.lru_cache(maxsize=16)  # noqa: B019 - one engine per process, a handful of variants
    def variant(self, tta: bool, tiling: Tiling | None) -> Segmenter:
        """The served segmenter with a request's `tta` and tiling: the same runtime, no copy of
        the network; its strategy is chosen for the tiling as the copy is made."""
        if tta == self.segmenter.tta and tiling == self.segmenter.tiling:
            return self.segmenter
        return dataclasses.replace(self.segmenter, tta=tta, tiling=tiling)

    async def start(self, warm_up: bool = True) -> None:
        """Start the batcher and run one warm-up image through the whole path; then ready."""
        self._worker = asyncio.create_task(self.batcher.run())
        if warm_up:
            side = self.segmenter.size
            buffer = io.BytesIO()
            Image.new("RGB", (side, side), (124, 116, 104)).save(buffer, format="PNG")
            await self.segment(buffer.getvalue())
        self.ready = True
        log.info("ready: %s on %s", self.segmenter.runtime.name, self.segmenter.device)

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.model_thread.shutdown(wait=False, cancel_futures=True)
        self.parsing.shutdown(wait=False, cancel_futures=True)

    async def in_pool(self, function: Callable[..., T], *arguments: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, function, *arguments)

    async def parsed(self, function: Callable[..., T], *arguments: Any) -> T:
        """`function(*arguments)`: a request body's parse, in the parsing thread."""
        return await asyncio.get_running_loop().run_in_executor(self.parsing, function, *arguments)

    async def segment(
        self, data: bytes, tta: bool | None = None, tiling: Tiling | None = None, keep_original: bool = False
    ) -> Result:
        """Labels of one uploaded image; `ServeError` for an image that cannot be served."""
        segmenter = self.variant(self.settings.tta if tta is None else tta, tiling)
        self.arriving += 1
        try:
            item = await self.in_pool(decode, segmenter, data, keep_original)
        finally:
            self.arriving -= 1  # and, with no await between, the item joins the queue
        if not item["error"] and tiling is not None:
            self._check_tiled_work(tiling, item["width"], item["height"])
        if item["error"]:
            status = (
                413
                if item["error"].startswith(TOO_LARGE)
                else 507
                if "out of memory" in item["error"]
                else 422
            )
            raise ServeError(status, f"not a usable image: {item['error']}")
        try:
            outcome = await self.batcher.submit(item, (segmenter.tta, tiling))
        except Busy as error:
            raise ServeError(503, f"busy: {error}; retry shortly", {"Retry-After": "1"}) from None
        except (MemoryError, RuntimeError) as error:
            raise self._failed(error, item) from None
        try:
            labels = outcome if isinstance(outcome, np.ndarray) else await self.in_pool(outcome.labels)
        except (MemoryError, RuntimeError) as error:
            raise self._failed(error, item) from None
        seconds = getattr(outcome, "seconds", 0.0)
        return Result(labels, item.get("original"), seconds)

    def _run_batch(self, key: Hashable, items: Sequence[dict[str, Any]]) -> list[Any]:
        """In the model thread: one call of the inference loop for the whole batch. Fitted images
        come back as `Segmented` (labels are made in the pool); tiled ones are segmented here,
        as their tiles run the model while their labels are read (`runs_model_when_read`)."""
        tta, tiling = key
        segmenter = self.variant(tta, tiling)
        started = time.perf_counter()
        results: list[Any] = []
        for result in segment(segmenter, Decoded(items), self._per_pass(tiling, len(items)), 0):
            if not segmenter.strategy.runs_model_when_read:
                results.append(result)
                continue
            try:
                results.append(result.labels())
            except (MemoryError, RuntimeError) as error:
                results.append(error)
        log.debug("batch of %d in %.3f s", len(items), time.perf_counter() - started)
        return results

    def _per_pass(self, tiling: Tiling | None, images: int) -> int:
        """Inputs per forward pass: the batch's images, fitted; a tiled image's windows (one image's
        at a time) only as many as fit in the pixels of the largest fitted batch, `max_batch` x the
        model's side², and at least one. Counting windows by the batch's requests put eight
        2048² windows of one upload in a pass (about 2.9 GiB each)."""
        if tiling is None:
            return images
        budget = self.settings.max_batch * self.segmenter.size**2
        return max(1, min(images, budget // tiling.tile**2))

    @staticmethod
    def _check_tiled_work(tiling: Tiling, width: int, height: int) -> None:
        """`ServeError` 413 for a tiled request whose model work passes `MAX_TILED_PIXELS`: the
        overlap limit bounds each pixel's passes, but not how many windows a large upload makes
        at a small tile, and every request waits behind that one in the model thread."""
        windows = len(tiling.starts(width)) * len(tiling.starts(height))
        work = windows * (tiling.side(width) * tiling.side(height) + WINDOW_COST_PIXELS)
        if work > MAX_TILED_PIXELS:
            raise ServeError(413, f"tile={tiling.tile} overlap={tiling.overlap:g} on {width}x{height}: "
                                  f"{windows:,} windows, {work / 2**20:,.0f} Mpx of model work; at most "
                                  f"{MAX_TILED_PIXELS / 2**20:,.0f} here: a larger tile or less overlap "
                                  "(or fastseg predict, which has no such limit)")  # fmt: skip

    def _failed(self, error: BaseException, item: dict[str, Any]) -> ServeError:
        if not out_of_memory(error):
            raise error  # a bug: the app logs its traceback and answers 500 with one line
        width, height = item["width"], item["height"]
        return ServeError(507, f"out of memory at {width}x{height}")


def decode(segmenter: Segmenter, data: bytes, keep_original: bool) -> dict[str, Any]:
    """predict's item for the uploaded bytes (`ImageFiles.__getitem__`, via `Segmenter.dataset`)."""
    try:
        return segmenter.dataset([data], keep_original=keep_original)[0]
    except FastsegError as error:
        return {"error": str(error)}


__all__ = ["Decoded", "Engine", "Result"]
