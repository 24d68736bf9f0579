"""Batched inference shared by `predict` and `report`.

Images are decoded in DataLoader workers, fitted into the model's square input the way it was
trained (squished, or letterboxed: `fastseg.geometry`), run in batches under inference mode, and
their logits, cropped to the image area, are upsampled back to each image's own size before the
argmax: labels are never resized.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.utils.data import DataLoader, Dataset

from fastseg.checkpoint import LoadedModel
from fastseg.geometry import SQUISH, content_size
from fastseg.images import UnreadableImage, load_rgb

PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def cpu_supports_bf16() -> bool:
    """bf16 autocast pays off on CPUs with native bf16 dot products (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast type for `precision` on `device`; None means plain fp32."""
    if precision == "fp32" or device.type == "mps":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_supports_bf16() else None


def normalise(
    image: Image.Image, size: int, mean: Sequence[float], std: Sequence[float], resize: str = SQUISH
) -> torch.Tensor:
    """RGB PIL image -> `(3, size, size)` float tensor, fitted and normalised as in training; a
    letterbox's padding is 0, the normalised mean colour that training pads with."""
    height, width = content_size(image.height, image.width, size, resize)
    resized = image.resize((width, height), Image.BILINEAR)
    pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)
    pixels = (pixels - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    if (height, width) == (size, size):
        return pixels
    return F.pad(pixels, (0, size - width, 0, size - height))


class ImageFiles(Dataset):
    """Items `{"index", "image" (3, S, S), "height", "width", "error"}`; a bad file gives an error
    string and a blank tensor instead of an exception, so one bad file never stops a batch."""

    def __init__(
        self,
        paths: Sequence[Path],
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        extra: Callable[[int], dict[str, Any]] | None = None,
        keep_original: bool = False,
        resize: str = SQUISH,
    ):
        self.paths, self.size, self.mean, self.std, self.extra = list(paths), size, mean, std, extra
        self.resize = resize
        self.keep_original = keep_original  # the decoded RGB array too (overlays), not decoded twice

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"index": index, "error": ""}
        try:
            image = load_rgb(self.paths[index])
            item.update(image=normalise(image, self.size, self.mean, self.std, self.resize),
                        width=image.width, height=image.height)  # fmt: skip
            if self.keep_original:
                item["original"] = np.asarray(image)
            if self.extra is not None:
                item.update(self.extra(index))
        except UnreadableImage as error:
            item.update(image=torch.zeros(3, self.size, self.size), width=0, height=0, error=str(error))
        return item


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the square images; keep everything else (variable-sized masks too) as lists."""
    batch = {key: [item.get(key) for item in items] for key in items[0]}
    batch["image"] = torch.stack(batch["image"])
    return batch


def loader(dataset: Dataset, batch_size: int, num_workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=collate, persistent_workers=False)  # fmt: skip


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm2d into the Conv2d just before it (same outputs, one op less
    per layer: ~6% of CPU inference time here). For inference copies only: folded layers no
    longer train like BatchNorm."""
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:], strict=False):
            conv, norm = module._modules[first], module._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                module._modules[first] = fuse_conv_bn_eval(conv, norm)
                module._modules[second] = nn.Identity()
    return model


@dataclass
class Segmenter:
    """A loaded model with its device, precision and test-time augmentation choice."""

    loaded: LoadedModel
    device: torch.device
    precision: str = "auto"
    tta: bool = False

    def __post_init__(self) -> None:
        self.model = fold_batchnorm(self.loaded.model.to(self.device).eval())
        self.channels_last = self.device.type in ("cuda", "cpu")
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.dtype = autocast_dtype(self.device, self.precision)

    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.autocast(
            self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None
        ):
            logits = self.model(images)
            if self.tta:  # flip, predict, flip back, average (fastai's learn.tta does not flip back)
                logits = (logits + self.model(images.flip(-1)).flip(-1)) / 2
        return logits.float()

    @torch.inference_mode()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """`(N, 3, S, S)` normalised -> `(N, C, S, S)` float32 logits."""
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self._forward(images)

    def dataset(self, paths: Sequence[Path], size: int | None = None, **options: Any) -> ImageFiles:
        """`ImageFiles` fitted into this model's input the way it was trained."""
        size = size or self.loaded.size
        return ImageFiles(
            paths, size, self.loaded.mean, self.loaded.std, resize=self.loaded.resize, **options
        )

    def input_tensor(self, image: Image.Image) -> torch.Tensor:
        """One RGB image as this model's `(3, S, S)` input."""
        return normalise(image, self.loaded.size, self.loaded.mean, self.loaded.std, self.loaded.resize)

    def full_size(self, logits: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """One image's logits `(C, S, S)` -> `(C, height, width)`: the image's area of the input
        (all of it when squished), upsampled bilinearly."""
        content_height, content_width = content_size(height, width, logits.shape[-1], self.loaded.resize)
        logits = logits[:, :content_height, :content_width]
        return F.interpolate(logits[None], size=(height, width), mode="bilinear", align_corners=False)[0]

    @staticmethod
    def labels(full_logits: torch.Tensor) -> torch.Tensor:
        """Class map `(H, W)` uint8 of logits `(C, H, W)`.

        `max(0).indices` rather than `argmax(0)`: the same result, but 5x faster on CPU for a
        reduction over the outer dimension (3.6 ms vs 17.5 ms at 21x375x500, torch 2.14)."""
        return full_logits.max(0).indices.to(torch.uint8)
