"""The whole-image strategy: each image fitted into the model's square input (letterboxed or
squished, as the model was trained), decoded in loader workers and run a batch at a time; its
logits come back to the image's own size before the argmax. Nothing is kept: memory does not
grow with the number of images (fastai's `get_preds` would hold them all).

Logits, cropped to the image's area of the input (`fastseg.imaging.geometry`), are upsampled
back to the image's size: labels are never resized. The upsampling runs a band of rows at a
time, so a 9400x9400 image needs its labels (1 byte a pixel) and one band of class scores, not
all class maps at full size (4 bytes a pixel and class). A torch model's logits are upsampled by
torch (here), an ONNX graph's by onnxruntime (`fastseg.inference.onnx_upsampling`), so an ONNX
run never imports torch.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fastseg.imaging.geometry import content_size
from fastseg.inference.files import loader
from fastseg.inference.segmented import (
    Dataset,
    Progress,
    Scores,
    Segmented,
    SegmenterLike,
    no_progress,
    rows_per_band,
)

if TYPE_CHECKING:
    import torch


@dataclass
class FittedImage(Segmented):
    """One fitted image: the logits of its square input `(C, S, S)` (None when the file could not
    be read), turned into full-size bands and labels by the segmenter (`Segmenter.bands`,
    `Segmenter.labels`) when they are read, off the model's thread if the caller likes."""

    item: dict[str, Any]
    logits: Scores | None  # a tensor from torch, an array from onnxruntime
    seconds: float
    segmenter: SegmenterLike

    @property
    def num_classes(self) -> int:
        return self.logits.shape[0]

    def labels(self) -> np.ndarray:
        return self.segmenter.labels(self.logits, *self.size)

    def bands(self) -> Iterator[tuple[slice, Scores]]:
        return self.segmenter.bands(self.logits, *self.size)


@dataclass(frozen=True)
class WholeImage:
    """The strategy without `--tile`: `Segmented` images whose logits are computed a batch at a
    time as they are handed out, and whose labels are plain arithmetic on them."""

    fit: bool = True
    runs_model_when_read: bool = False

    def segment(self, segmenter: SegmenterLike, dataset: Dataset, batch_size: int, num_workers: int,
                progress: Progress = no_progress) -> Iterator[FittedImage]:  # fmt: skip
        """Every item of `dataset` (fitted: `ImageFiles(fit=True)`), in order, with its logits."""
        batches = loader(dataset, batch_size, num_workers, threads=segmenter.torch_free)
        if num_workers == 0 and len(dataset) > batch_size:  # decode the next batch during this one's forward
            batches = prefetched(batches)
        for batch in progress(batches):
            started = time.perf_counter()
            logits = segmenter.logits(batch["image"])
            seconds = (time.perf_counter() - started) / len(batch["index"])
            for row in range(len(batch["index"])):
                item = {key: values[row] for key, values in batch.items() if key != "image"}
                yield FittedImage(item, None if item["error"] else logits[row], seconds, segmenter)


def upsampled_bands(
    logits: torch.Tensor, height: int, width: int, resize: str
) -> Iterator[tuple[slice, torch.Tensor]]:
    """One image's logits `(C, S, S)` at full size, a band of rows at a time: `(rows, (C, b, width))`.

    Only the image's area of the input is upsampled (all of it when squished). An image that
    fits in one band (VOC-sized ones do) is upsampled by `F.interpolate(mode="bilinear",
    align_corners=False)` at once, the fastest way; larger ones band by band, to the same
    values within float rounding (a few 1e-6; tests/test_inference.py)."""
    import torch.nn.functional as F

    content_height, content_width = content_size(height, width, logits.shape[-1], resize)
    content = logits[:, :content_height, :content_width]
    rows = rows_per_band(content.shape[0], width)
    if rows >= height:
        whole = F.interpolate(content[None], size=(height, width), mode="bilinear", align_corners=False)
        yield slice(0, height), whole[0]
        return
    for start in range(0, height, rows):
        stop = min(height, start + rows)
        yield slice(start, stop), _bilinear_rows(content, height, width, start, stop)


def _bilinear_rows(content: torch.Tensor, height: int, width: int, start: int, stop: int) -> torch.Tensor:
    """Rows `[start, stop)` of `content` `(C, h, w)` bilinearly resized to `(C, height, width)`
    (half-pixel centres, PyTorch's `align_corners=False` rule): the input rows they read are
    resized along the width by `F.interpolate`, then blended in pairs with the row weights."""
    import torch
    import torch.nn.functional as F

    source_rows = content.shape[1]
    scale = torch.tensor(source_rows / height, dtype=torch.float32)
    target = torch.arange(start, stop, dtype=torch.float32)
    position = ((target + 0.5) * scale - 0.5).clamp(min=0)
    upper = position.long().clamp(max=source_rows - 1)
    lower = (upper + 1).clamp(max=source_rows - 1)
    weight = (position - upper).to(content.device).view(1, -1, 1)
    first, last = int(upper[0]), int(lower[-1]) + 1
    widened = F.interpolate(content[None, :, first:last], size=(last - first, width), mode="bilinear",
                            align_corners=False)[0]  # fmt: skip
    upper_rows = widened[:, (upper - first).to(content.device)]
    lower_rows = widened[:, (lower - first).to(content.device)]
    return upper_rows.mul_(1 - weight).add_(lower_rows.mul_(weight))  # in place: no 4th to 6th band


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
