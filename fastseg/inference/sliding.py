"""The sliding-window strategy (`--tile`): an image at its own resolution, tile by tile, into
blended full-size logits handed out a band of rows at a time (`fastseg.inference.tiling` says
where tiles fall).

Memory stays bounded however large the image: one row of tiles is blended into a buffer of
`tile` rows `(C, tile, W)` float32 (the whole image's `(C, H, W)` never exists); when a row of
tiles is done, the rows no later tile reaches are finished, handed out in bands of at most
`segmented.BAND_VALUES` values, and the rows the next row of tiles overlaps move to the top of
the buffer. For a 6000-pixel-wide photo, 21 classes and 512² tiles that buffer is 258 MiB
(measured whole-process figures: benchmarks/README.md).

A `TiledImage` is a `Segmented` as a fitted image is: its `bands()` and `labels()` run the model
as they are read, so the strategy hands out an image before its tiles are computed, and its
`seconds` are counted as they are.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fastseg.imaging.geometry import IMAGE_FILL
from fastseg.imaging.normalise import normalise
from fastseg.inference.segmented import Progress, Segmented, SegmenterLike, no_progress, rows_per_band
from fastseg.inference.tiling import Tiling


def tile_input(
    picture: np.ndarray, top: int, left: int, window: tuple[int, int], segmenter: SegmenterLike
) -> torch.Tensor:
    """The normalised `(3, rows, columns)` input of the `window` `(rows, columns)` at `(top, left)`
    of `picture` `(H, W, 3)` uint8, padded at the bottom and right as a letterbox is (only along a
    side shorter than a tile, up to `Tiling.side`), normalised as whole-image inputs are."""
    rows, columns = window
    piece = picture[top : top + rows, left : left + columns]
    if piece.shape[:2] != window:
        padded = np.empty((rows, columns, 3), dtype=np.uint8)
        padded[:] = IMAGE_FILL
        padded[: piece.shape[0], : piece.shape[1]] = piece
        piece = padded
    return normalise(piece, segmenter.loaded.mean, segmenter.loaded.std)


def blended_bands(
    segmenter: SegmenterLike,
    picture: np.ndarray,
    tiling: Tiling,
    batch_size: int,
    clock: list[float] | None = None,
) -> Iterator[tuple[slice, torch.Tensor]]:
    """Blended logits of `picture` `(H, W, 3)` uint8 at full size, a band of rows at a time:
    `(rows, (C, b, W))`, each the window-weighted mean of the tiles covering those pixels.
    `clock[0]` accumulates the model's seconds."""
    height, width = picture.shape[:2]
    tile, device = tiling.tile, segmenter.device
    tops, lefts = tiling.starts(height), tiling.starts(width)
    shape = tiling.side(height), tiling.side(width)  # a tile, or less along a side shorter than one
    window = torch.from_numpy(tiling.window()).to(device)
    span = min(tile, height)  # rows a row of tiles covers
    scores: torch.Tensor | None = None  # (C, span, W), allocated once the model says C
    weights = torch.zeros(span, width, device=device)
    for number, top in enumerate(tops):
        rows = min(tile, height - top)
        for first in range(0, len(lefts), batch_size):
            batch = lefts[first : first + batch_size]
            inputs = torch.stack([tile_input(picture, top, left, shape, segmenter) for left in batch])
            started = time.perf_counter()
            logits = torch.as_tensor(segmenter.logits(inputs))  # an ONNX graph's come as an array
            if clock is not None:
                clock[0] += time.perf_counter() - started
            if scores is None:
                scores = torch.zeros(logits.shape[1], span, width, device=device)
            for logit, left in zip(logits, batch, strict=True):
                columns = min(tile, width - left)
                weight = window[:rows, :columns]
                scores[:, :rows, left : left + columns].addcmul_(logit[:, :rows, :columns], weight)
                weights[:rows, left : left + columns] += weight
        finished = (tops[number + 1] if number + 1 < len(tops) else height) - top
        yield from _divided(scores, weights, top, finished)
        kept = span - finished  # rows the next row of tiles overlaps: move them to the top
        if kept > 0:  # a copy through a temporary only where source and target rows overlap
            carry = (lambda rows: rows.clone()) if kept > finished else (lambda rows: rows)
            scores[:, :kept] = carry(scores[:, finished : finished + kept])
            weights[:kept] = carry(weights[finished : finished + kept])
        scores[:, max(kept, 0) :] = 0
        weights[max(kept, 0) :] = 0


def _divided(
    scores: torch.Tensor, weights: torch.Tensor, top: int, finished: int
) -> Iterator[tuple[slice, torch.Tensor]]:
    """The first `finished` rows of the buffer divided by their weights, in bands within the
    budget of `segmented.BAND_VALUES` (`rows_per_band`, as the whole-image strategy's bands)."""
    classes, _, width = scores.shape
    rows = rows_per_band(classes, width)
    for start in range(0, finished, rows):
        stop = min(finished, start + rows)
        yield slice(top + start, top + stop), scores[:, start:stop] / weights[start:stop]


@dataclass
class TiledImage(Segmented):
    """One image for the sliding window: its decoded `picture` `(H, W, 3)` uint8 rides along in
    place of logits, and the model runs tile by tile as `bands()` or `labels()` are read (once
    each, in practice: reading again runs the tiles again)."""

    item: dict[str, Any]
    seconds: float
    segmenter: SegmenterLike
    tiling: Tiling
    picture: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 3), np.uint8))
    batch_size: int = 8

    @property
    def num_classes(self) -> int:
        return len(self.segmenter.loaded.classes)

    def bands(self) -> Iterator[tuple[slice, torch.Tensor]]:
        clock = [0.0]
        try:
            yield from blended_bands(self.segmenter, self.picture, self.tiling, self.batch_size, clock)
        finally:
            self.seconds += clock[0]


def _one(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A loader batch of one image, as it is: pictures differ in size (picklable for workers)."""
    return items[0]


@dataclass(frozen=True)
class SlidingWindow:
    """The strategy with `--tile`: `Segmented` images whose tiles run as their labels are read."""

    tiling: Tiling
    fit: bool = False  # the picture as decoded: tiles are cut from it
    runs_model_when_read: bool = True

    def segment(self, segmenter: SegmenterLike, dataset: Dataset, batch_size: int, num_workers: int,
                progress: Progress = no_progress) -> Iterator[TiledImage]:  # fmt: skip
        """Every item of `dataset` (decoded, not fitted: `ImageFiles(fit=False)`), in order, ready
        to be segmented tile by tile, `batch_size` tiles per forward pass."""
        images = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=num_workers, collate_fn=_one)
        for item in progress(images):
            picture = item.pop("image")
            if item["error"]:
                picture = np.zeros((0, 0, 3), np.uint8)
            yield TiledImage(item, 0.0, segmenter, self.tiling, picture=picture, batch_size=batch_size)
