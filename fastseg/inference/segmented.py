"""What every inference strategy hands back, one image at a time: a `Segmented`, whose class
scores at the image's full size come a band of rows at a time (`bands()`) and whose labels are
their argmax (`labels()`). predict, report, export's INT8 check and serve read only this, so
they never ask which strategy ran (`fastseg.inference.whole_image`: the image fitted into the
model's input; `fastseg.inference.sliding`: tiles at its own resolution).

A leaf: nothing of fastseg's inference is imported here, so both strategies and the `Segmenter`
that chooses between them import it, and it imports none of them back. Scores are torch tensors
from a torch model and numpy arrays from an ONNX graph (`fastseg.inference.onnx_upsampling`);
torch is not imported here, so an ONNX run never imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch

    from fastseg.model.description import LoadedModel

Progress = Callable[[Iterable], Iterable]
Scores = Any  # class scores `(C, ...)`: a torch tensor (torch model) or a float32 numpy array (ONNX)
Dataset = Any  # a map-style dataset: `fastseg.inference.files.ImageFiles`, or what indexes like it

# Class scores per band of full-size rows: 16 MiB of float32, three such buffers live at a time
# (the band size's cost and speed: benchmarks/README.md). Read at call time (`rows_per_band`), so
# a test may shrink it.
BAND_VALUES = 1 << 22


def no_progress(batches: Iterable) -> Iterable:
    return batches


def rows_per_band(classes: int, width: int) -> int:
    """Rows of `(classes, rows, width)` class scores that fit in `BAND_VALUES` (one at least)."""
    return max(1, BAND_VALUES // (classes * width))


def labels_of(bands: Iterable[tuple[slice, Scores]], height: int, width: int) -> np.ndarray:
    """Class map `(height, width)` uint8: the argmax of each band `(rows, (C, b, width))`.

    For a tensor, `max(0).indices` rather than `argmax(0)`: the same result, faster on CPU for a
    reduction over the outer dimension (benchmarks/README.md)."""
    labels = np.empty((height, width), dtype=np.uint8)
    for rows, band in bands:
        if isinstance(band, np.ndarray):
            labels[rows] = band.argmax(0)
        else:
            labels[rows] = band.max(0).indices.byte().cpu().numpy()
    return labels


class SegmenterLike(Protocol):
    """What a strategy and a `Segmented`'s reader use of the `Segmenter`
    (`fastseg.inference.segmenter`), named here so that neither needs to import it."""

    loaded: LoadedModel
    size: int | None

    @property
    def device(self) -> torch.device: ...

    @property
    def torch_free(self) -> bool: ...

    def logits(self, images: Scores) -> Scores: ...

    def labels(self, logits: Scores, height: int, width: int) -> np.ndarray: ...

    def bands(self, logits: Scores, height: int, width: int) -> Iterator[tuple[slice, Scores]]: ...


class Segmented(Protocol):
    """One image through a strategy: its dataset item (`fastseg.inference.files.ImageFiles`;
    `item["error"]` says why a file could not be read), the model's seconds spent on it, and the
    segmenter that ran it. The properties read the item; a strategy's own class (which subclasses
    this one) gives `bands()` and, where its labels come another way, `labels()`."""

    item: dict[str, Any]
    seconds: float
    segmenter: SegmenterLike

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
    def num_classes(self) -> int: ...

    def bands(self) -> Iterator[tuple[slice, Scores]]:
        """Class scores at full size, a band of rows at a time: `(rows, (C, b, width))`, each band
        within `BAND_VALUES`."""
        ...

    def labels(self) -> np.ndarray:
        """Class map `(H, W)` uint8 at the image's own size: the argmax of `bands()`."""
        return labels_of(self.bands(), *self.size)


class Strategy(Protocol):
    """How a `Segmenter` turns a dataset into `Segmented` images, chosen once when it is made."""

    fit: bool  # whether its dataset items are fitted into the model's input (else decoded only)
    runs_model_when_read: bool  # `bands()`/`labels()` run the model: read them in the model's thread

    def segment(self, segmenter: SegmenterLike, dataset: Dataset, batch_size: int, num_workers: int,
                progress: Progress = no_progress) -> Iterator[Segmented]: ...  # fmt: skip
