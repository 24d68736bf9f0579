"""The one small interface every data set on disk offers (`fastseg.data.factory.open_dataset` picks one).

Training, `report`, `show-data` and `check-data` see a data set only through
:class:`SegmentationData`: ids, the image and mask file of an id, its mask decoded to class indices
with void as 255, the classes, and the run's split. PASCAL VOC (`fastseg.data.voc`) is one data
set; a folder described by a `dataset.yaml` (`fastseg.data.folder_dataset`) is the other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from fastseg.classes import Classes
from fastseg.data.split import Split
from fastseg.errors import DatasetError
from fastseg.imaging.images import UnreadableImage, load_rgb, turned_by_exif


class SegmentationData(ABC):
    """Image / mask pairs named by id, with their classes and the run's split."""

    root: Path  # named in messages
    classes: Classes

    @abstractmethod
    def image_path(self, image_id: str) -> Path: ...

    @abstractmethod
    def mask_path(self, image_id: str) -> Path: ...

    @abstractmethod
    def read_mask(self, image_id: str) -> np.ndarray:
        """Class indices `(H, W)` uint8: 0 .. C-1, and 255 wherever the mask is void."""

    @abstractmethod
    def split(self, train_set: str | None, seed: int) -> Split:
        """The run's train / validation / test ids; `train_set` is VOC's list name (others: None)."""

    @abstractmethod
    def listed_splits(self) -> dict[str, list[str]]:
        """The ids of each split as the data set lists them (before any halving), for `check-data`."""

    @abstractmethod
    def summary_line(self) -> str:
        """One line: what this data set is, for `check-data`."""

    problems: list[str] = []  # found while listing the files (none for VOC, whose lists are given)

    @abstractmethod
    def check_mask(self, image_id: str) -> tuple[str | None, np.ndarray | None]:
        """`(problem, None)` or `(None, class indices)`: the mask decoded with every value checked."""

    def require_files(self, ids: Iterable[str]) -> None:
        """Fail before any work starts if an id's image or mask is absent (no file is opened)."""
        missing = [
            path
            for image_id in ids
            for path in (self.image_path(image_id), self.mask_path(image_id))
            if not path.is_file()
        ]
        if missing:
            more = f" (and {len(missing) - 1} more missing files)" if len(missing) > 1 else ""
            raise DatasetError(f"{missing[0]}: file not found{more}")

    def inspect_pair(self, image_id: str) -> tuple[str | None, np.ndarray | None]:
        """Open one image and mask fully: `(problem, None)`, or `(None, mask)` when the pair is
        usable (the decoded mask is handed back so callers that count pixels need not decode it)."""
        image_path, mask_path = self.image_path(image_id), self.mask_path(image_id)
        for path in (image_path, mask_path):
            if not path.is_file():
                return f"{path}: file not found", None
        try:  # the decoder training, predict and report use: EXIF orientation applied
            image_size = load_rgb(image_path).size
        except UnreadableImage as error:
            return f"{image_path}: cannot read image ({error})", None
        problem, mask = self.check_mask(image_id)
        if problem:
            return problem, None
        if mask.shape[::-1] != image_size:
            mask_size = f"{mask.shape[1]}x{mask.shape[0]}"
            turned = ""
            if mask.shape == image_size and turned_by_exif(image_path):  # width and height swapped
                turned = (" (the image's EXIF orientation turns it upright: draw the mask on the upright "
                          "view, or give the mask the same orientation tag)")  # fmt: skip
            return f"{mask_path}: mask is {mask_size}, image is {image_size[0]}x{image_size[1]}{turned}", None
        return None, mask
