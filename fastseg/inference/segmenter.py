"""A loaded model ready for inference: what runs its network (`fastseg.inference.runtime`),
test-time flips, its input side, and the strategy that turns images into `Segmented` ones,
chosen once when the segmenter is made: the whole image fitted into the model's input
(`fastseg.inference.whole_image`), or a sliding window at the image's own resolution with a
`Tiling` (`fastseg.inference.sliding`). `segment` is the one inference loop behind predict,
report, export's INT8 check and serve.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fastseg.inference.files import ImageFiles
from fastseg.inference.onnx_upsampling import array_labels, upsampled_array_bands
from fastseg.inference.runtime import Runtime, TorchRuntime, open_model
from fastseg.inference.segmented import Dataset, Progress, Scores, Segmented, Strategy, labels_of, no_progress
from fastseg.inference.tiling import Tiling
from fastseg.inference.whole_image import WholeImage, upsampled_bands
from fastseg.model.description import LoadedModel

if TYPE_CHECKING:
    import torch


@dataclass
class Segmenter:
    """A loaded model with what runs it (`runtime`: torch for `model.pth`, onnxruntime for an
    exported `.onnx`), test-time augmentation and input side (`size`: the model's own unless
    `--size` overrides it); with `tiling`, images are segmented by a sliding window."""

    loaded: LoadedModel
    runtime: Runtime
    tta: bool = False
    size: int | None = None
    tiling: Tiling | None = None
    strategy: Strategy = field(init=False)

    def __post_init__(self) -> None:
        if not callable(getattr(self.runtime, "logits", None)):  # e.g. the device, as before #25
            raise TypeError(f"Segmenter(loaded, runtime, ...): {self.runtime!r} runs no network; "
                            "Segmenter.with_torch(loaded, device, precision) runs one on torch")  # fmt: skip
        self.size = self.size or self.loaded.size
        if self.tiling is None:
            self.strategy = WholeImage()
        else:  # torch's: the tiles are blended in tensors
            from fastseg.inference.sliding import SlidingWindow

            self.strategy = SlidingWindow(self.tiling)

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def torch_free(self) -> bool:
        """Whether the network runs without torch (an ONNX graph): inputs are then decoded by
        threads rather than torch's DataLoader, which would import torch for nothing else."""
        return self.runtime.name != "torch"

    @property
    def model(self) -> torch.nn.Module | None:
        """The folded torch network (`TorchRuntime`), or None for an ONNX graph."""
        return getattr(self.runtime, "model", None)

    @classmethod
    def open(cls, model: Path | str, device: torch.device | str, precision: str = "auto", tta: bool = False,
             size: int | None = None, requested_device: str = "auto", tiling: Tiling | None = None,
             ) -> Segmenter:  # fmt: skip
        """The model file's runtime, chosen by its suffix (`fastseg.inference.runtime.open_model`)."""
        opened = open_model(model, device, precision, requested_device)
        return cls(opened.loaded, opened.runtime, tta, size, tiling)

    @classmethod
    def with_torch(cls, loaded: LoadedModel, device: torch.device, precision: str = "auto",
                   tta: bool = False, size: int | None = None, tiling: Tiling | None = None,
                   ) -> Segmenter:  # fmt: skip
        """A model already loaded, run by torch on `device` in `precision` (`TorchRuntime`)."""
        return cls(loaded, TorchRuntime(loaded.model, device, precision), tta, size, tiling)

    def dataset(self, paths: Sequence[Path | bytes], **options: Any) -> ImageFiles:
        """`ImageFiles` as the strategy takes them: fitted into this model's input the way it was
        trained, or decoded only (the sliding window cuts its tiles from the picture)."""
        return ImageFiles(paths, self.size, self.loaded.resize, self.loaded.mean, self.loaded.std,
                          fit=self.strategy.fit, **options)  # fmt: skip

    def logits(self, images: Scores) -> Scores:
        """`(N, 3, S, S)` normalised -> `(N, C, S, S)` float32 logits: a tensor from torch, an
        array from onnxruntime (each runtime takes either as input)."""
        logits = self.runtime.logits(images)
        if self.tta:  # flip, predict, flip back, average (fastai's learn.tta does not flip back)
            flipped = self.runtime.logits(_mirrored(images))
            logits = (logits + _mirrored(flipped)) / 2
        return logits

    def bands(self, logits: Scores, height: int, width: int) -> Iterator[tuple[slice, Scores]]:
        """One fitted image's logits `(C, S, S)` at full size, a band of rows at a time:
        `(rows, (C, b, width))` (`fastseg.inference.whole_image.upsampled_bands`, or
        `fastseg.inference.onnx_upsampling` for an array)."""
        if isinstance(logits, np.ndarray):
            return upsampled_array_bands(logits, height, width, self.loaded.resize)
        return upsampled_bands(logits, height, width, self.loaded.resize)

    def labels(self, logits: Scores, height: int, width: int) -> np.ndarray:
        """Class map `(height, width)` uint8 of one fitted image's logits `(C, S, S)`."""
        if isinstance(logits, np.ndarray):
            return array_labels(logits, height, width, self.loaded.resize)
        return labels_of(self.bands(logits, height, width), height, width)


def _mirrored(images: Scores) -> Scores:
    """`images` flipped left to right (the last axis), an array as a contiguous array."""
    if isinstance(images, np.ndarray):
        return np.ascontiguousarray(images[..., ::-1])
    return images.flip(-1)


def segment(
    segmenter: Segmenter,
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    progress: Progress = no_progress,
) -> Iterator[Segmented]:
    """Every item of `dataset` (`segmenter.dataset(...)`), in order, as a `Segmented` of the
    segmenter's strategy: `batch_size` images (or tiles) per forward pass."""
    return segmenter.strategy.segment(segmenter, dataset, batch_size, num_workers, progress)
