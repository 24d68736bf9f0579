"""Image files as model inputs, decoded in the main process (1-2 cores) or by loader workers:
torch's DataLoader processes for a torch model, threads for an ONNX one.

A bad file gives an item with an error string and a blank input instead of an exception, so
one bad file never stops a batch. Inputs are numpy arrays and no torch is imported for an ONNX
model: `predict` on an ONNX file runs without it (issue #24); a torch runtime takes the same
arrays as tensors without a copy (`torch.as_tensor`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from fastseg.errors import FastsegError
from fastseg.imaging.geometry import fit_image
from fastseg.imaging.images import UnreadableImage, load_rgb
from fastseg.imaging.normalise import normalised_array
from fastseg.model.config import MAX_SIZE, MIN_SIZE


def check_input_side(size: int) -> int:
    """`size` if the model's input may have that side (the sides a model is trained at,
    `model.config`: 3 x 8192² float32 is 0.8 GB an image before the network's activations; a
    bigger picture is for `--tile`), else one line saying why not. Without a bound, `--size
    100000000` was a numpy traceback asking for 107 PiB."""
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise FastsegError(f"input side {size} is not within {MIN_SIZE} to {MAX_SIZE} pixels: choose "
                           "another --size, or --tile for big images")  # fmt: skip
    return size


class ImageFiles:
    """A map-style dataset (what torch's `DataLoader` indexes) of items `{"index", "path", "image"
    (3, S, S) float32 array, "height", "width", "error"}`, plus the decoded
    RGB array as `"original"` with `keep_original` (overlays, figures: never decoded twice) and
    whatever `extra(index)` adds (a ground-truth mask, for `report`). With `fit=False` the
    `"image"` is the decoded picture `(H, W, 3)` uint8 itself (the sliding window tiles it), and
    `"original"` is the same array. A path may also be a file's bytes (`fastseg serve`'s uploads:
    decoded by the same `load_rgb`, with the same limits; nothing is written to disk)."""

    def __init__(
        self,
        paths: Sequence[Path | bytes],
        size: int,
        resize: str,
        mean: Sequence[float],
        std: Sequence[float],
        extra: Callable[[int], dict[str, Any]] | None = None,
        keep_original: bool = False,
        fit: bool = True,
    ):
        self.paths, self.size, self.resize = list(paths), check_input_side(size), resize
        self.mean, self.std, self.extra, self.keep_original = mean, std, extra, keep_original
        self.fit = fit

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"index": index, "path": self.paths[index], "error": ""}
        try:
            image = load_rgb(self.paths[index])
            pixels = np.asarray(image) if self.keep_original or not self.fit else None
            model_input = (
                normalised_array(fit_image(image, self.size, self.resize), self.mean, self.std)
                if self.fit
                else pixels
            )
            item.update(image=model_input, width=image.width, height=image.height)
            if self.keep_original:
                item["original"] = pixels
        except UnreadableImage as error:
            return self._failed(item, str(error))
        except MemoryError:  # a picture too big for the memory left fails alone, as a bad file does
            return self._failed(item, "out of memory while decoding")
        if self.extra is not None:
            item.update(self.extra(index))
        return item

    def _failed(self, item: dict[str, Any], reason: str) -> dict[str, Any]:
        """The item of a file that could not be used: a blank input, no size, and the reason."""
        blank = np.zeros((3, self.size, self.size), dtype=np.float32)
        return {"index": item["index"], "path": item["path"], "image": blank,
                "width": 0, "height": 0, "error": reason}  # fmt: skip


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the square images `(N, 3, S, S)`; keep everything else (variable-sized masks too) as
    lists. The keys are every item's, not the first's: a file that failed to decode has fewer (no
    "original"), and the first item of a batch may be one (issue #19: a KeyError lost
    predictions.csv)."""
    keys = dict.fromkeys(key for item in items for key in item)
    batch = {key: [item.get(key) for item in items] for key in keys}
    batch["image"] = np.stack(batch["image"])
    return batch


def _collate_shared(items: list[dict[str, Any]]) -> dict[str, Any]:
    """`collate` in a loader worker: the images as a tensor, which torch hands to the main process
    through shared memory instead of pickling the array through a pipe."""
    import torch

    batch = collate(items)
    batch["image"] = torch.from_numpy(batch["image"])
    return batch


def loader(
    dataset: Any,  # noqa: ANN401 - any map-style dataset
    batch_size: int,
    num_workers: int,
    threads: bool = False,
) -> Iterable[dict[str, Any]]:
    """Batches of `dataset` in order (`collate`): made in this process without workers; with
    `num_workers`, by torch's `DataLoader` in that many processes, or, with `threads`, by that
    many threads of this process (an ONNX run: Pillow's decoding and resizing release the GIL,
    and torch's DataLoader would import torch, 1.2-1.7 s, for nothing else). A batch is never bigger
    than the dataset: `--batch-size 99999999999999999999` was a traceback from the batch sampler."""
    batch_size = max(1, min(batch_size, len(dataset)))
    if num_workers == 0:
        return Batches(dataset, batch_size)
    if threads:
        return Batches(dataset, batch_size, threads=num_workers)
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=_collate_shared, persistent_workers=False)  # fmt: skip


class Batches:
    """`dataset` in consecutive batches of `batch_size`, collated; sized, so a progress bar knows
    the count, and iterable again, as a DataLoader is. With `threads`, the items are made by that
    many threads, at most two batches or two items a thread ahead of the caller, whichever is
    more (every thread busy, and memory that does not grow with the number of images), in order;
    an item's error is raised where its batch is handed out."""

    def __init__(self, dataset: Any, batch_size: int, threads: int = 0) -> None:  # noqa: ANN401 - any map-style dataset
        self.dataset, self.batch_size, self.threads = dataset, batch_size, threads

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self.threads:
            for start in range(0, len(self.dataset), self.batch_size):
                stop = min(len(self.dataset), start + self.batch_size)
                yield collate([self.dataset[index] for index in range(start, stop)])
            return
        indices = iter(range(len(self.dataset)))
        ahead = max(2 * self.batch_size, 2 * self.threads)
        pending: deque[Future] = deque()
        with ThreadPoolExecutor(self.threads, thread_name_prefix="fastseg-decode") as pool:

            def top_up() -> None:
                for index in islice(indices, ahead - len(pending)):
                    pending.append(pool.submit(self.dataset.__getitem__, index))

            try:
                top_up()
                while pending:
                    items = [pending.popleft().result() for _ in range(min(self.batch_size, len(pending)))]
                    top_up()  # decoding goes on while the caller runs this batch
                    yield collate(items)
            finally:
                for future in pending:  # a caller that stopped early: no more decoding
                    future.cancel()
