"""Image files as model inputs, decoded in DataLoader workers.

A bad file gives an item with an error string and a blank tensor instead of an exception, so
one bad file never stops a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fastseg.imaging.geometry import fit_image
from fastseg.imaging.images import UnreadableImage, load_rgb
from fastseg.imaging.normalise import normalise


class ImageFiles(Dataset):
    """Items `{"index", "path", "image" (3, S, S), "height", "width", "error"}`, plus the decoded
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
        self.paths, self.size, self.resize = list(paths), size, resize
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
                normalise(fit_image(image, self.size, self.resize), self.mean, self.std)
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
        return {"index": item["index"], "path": item["path"], "image": torch.zeros(3, self.size, self.size),
                "width": 0, "height": 0, "error": reason}  # fmt: skip


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the square images; keep everything else (variable-sized masks too) as lists. The keys
    are every item's, not the first's: a file that failed to decode has fewer (no "original"), and
    the first item of a batch may be one (issue #19: a KeyError lost predictions.csv)."""
    keys = dict.fromkeys(key for item in items for key in item)
    batch = {key: [item.get(key) for item in items] for key in keys}
    batch["image"] = torch.stack(batch["image"])
    return batch


def loader(dataset: Dataset, batch_size: int, num_workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=collate, persistent_workers=False)  # fmt: skip
