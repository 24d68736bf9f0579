"""The one inference loop behind `predict`, `report` and the report's figures: decode in loader
workers, run the model a batch at a time, hand back one image at a time. Nothing is kept: memory
does not grow with the number of images (fastai's `get_preds` would hold them all)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fastseg.inference.files import ImageFiles, loader
from fastseg.inference.segmenter import Segmenter

Progress = Callable[[Iterable], Iterable]


def no_progress(batches: Iterable) -> Iterable:
    return batches


@dataclass
class Segmented:
    """One image through the model: its dataset item (`ImageFiles`), the logits of its square
    input `(C, S, S)` (None when the file could not be read: `item["error"]` says why), and its
    share of the batch's model time."""

    item: dict[str, Any]
    logits: torch.Tensor | None
    seconds: float
    segmenter: Segmenter

    @property
    def index(self) -> int:
        return self.item["index"]

    @property
    def error(self) -> str:
        return self.item["error"]

    @property
    def size(self) -> tuple[int, int]:
        """`(height, width)` of the image as decoded."""
        return self.item["height"], self.item["width"]

    @property
    def num_classes(self) -> int:
        return self.logits.shape[0]

    def labels(self) -> np.ndarray:
        """Class map `(H, W)` uint8 at the image's own size."""
        return self.segmenter.labels(self.logits, *self.size)

    def bands(self) -> Iterator[tuple[slice, torch.Tensor]]:
        """Full-size logits a band of rows at a time (`Segmenter.bands`)."""
        return self.segmenter.bands(self.logits, *self.size)


def segment(
    segmenter: Segmenter,
    dataset: ImageFiles,
    batch_size: int,
    num_workers: int,
    progress: Progress = no_progress,
) -> Iterator[Segmented]:
    """Every item of `dataset`, in order, with its logits (with `segmenter.tiling`: ready to be
    segmented tile by tile, `fastseg.inference.sliding`)."""
    if segmenter.tiling is not None:
        from fastseg.inference.sliding import segment_tiles

        yield from segment_tiles(segmenter, dataset, batch_size, num_workers, progress)
        return
    batches = loader(dataset, batch_size, num_workers)
    if num_workers == 0 and len(dataset) > batch_size:  # decode the next batch during this one's forward
        batches = prefetched(batches)
    for batch in progress(batches):
        started = time.perf_counter()
        logits = segmenter.logits(batch["image"])
        seconds = (time.perf_counter() - started) / len(batch["index"])
        for row in range(len(batch["index"])):
            item = {key: values[row] for key, values in batch.items() if key != "image"}
            yield Segmented(item, None if item["error"] else logits[row], seconds, segmenter)


_DONE = object()


def prefetched(batches: Iterable[Any], ahead: int = 1) -> Iterator[Any]:
    """`batches` made on a thread, up to `ahead` batches before they are asked for. Without loader
    workers (a 1-2 core machine), decoding and fitting the next images (Pillow and torch release
    the GIL) then overlaps the model's pass over this batch instead of following it. The thread
    stops when the caller stops asking (a closed generator), and its errors are raised here."""
    ready: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def offer(entry: tuple[Any, BaseException | None]) -> bool:
        """Put `entry` in the queue unless the caller has stopped asking; False once it has."""
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not offer((batch, None)):
                    return
            offer((_DONE, None))
        except BaseException as error:  # handed to the caller, who raises it
            offer((_DONE, error))

    thread = threading.Thread(target=produce, name="fastseg-decode", daemon=True)
    thread.start()
    try:
        while True:
            batch, error = ready.get()
            if error is not None:
                raise error
            if batch is _DONE:
                return
            yield batch
    finally:
        stop.set()  # a producer waiting on the full queue gives up within 0.1 s
        thread.join()
