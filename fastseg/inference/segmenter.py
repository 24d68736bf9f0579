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
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from fastseg.inference.files import ImageFiles
from fastseg.inference.runtime import Runtime, TorchRuntime, open_model
from fastseg.inference.segmented import Progress, Segmented, Strategy, labels_of, no_progress
from fastseg.inference.sliding import SlidingWindow
from fastseg.inference.tiling import Tiling
from fastseg.inference.whole_image import WholeImage, upsampled_bands
from fastseg.model.checkpoint import LoadedModel


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
        self.strategy = WholeImage() if self.tiling is None else SlidingWindow(self.tiling)

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def model(self) -> torch.nn.Module | None:
        """The folded torch network (`TorchRuntime`), or None for an ONNX graph."""
        return getattr(self.runtime, "model", None)

    @classmethod
    def open(cls, model: Path | str, device: torch.device, precision: str = "auto", tta: bool = False,
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

    @torch.inference_mode()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """`(N, 3, S, S)` normalised -> `(N, C, S, S)` float32 logits."""
        logits = self.runtime.logits(images)
        if self.tta:  # flip, predict, flip back, average (fastai's learn.tta does not flip back)
            logits = (logits + self.runtime.logits(images.flip(-1)).flip(-1)) / 2
        return logits

    def bands(self, logits: torch.Tensor, height: int, width: int) -> Iterator[tuple[slice, torch.Tensor]]:
        """One fitted image's logits `(C, S, S)` at full size, a band of rows at a time:
        `(rows, (C, b, width))` (`fastseg.inference.whole_image.upsampled_bands`)."""
        return upsampled_bands(logits, height, width, self.loaded.resize)

    def labels(self, logits: torch.Tensor, height: int, width: int) -> np.ndarray:
        """Class map `(height, width)` uint8 of one fitted image's logits `(C, S, S)`."""
        return labels_of(self.bands(logits, height, width), height, width)


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
