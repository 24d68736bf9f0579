"""PASCAL VOC 2012 on disk: its classes, locating the folder, id lists, and checking one pair."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fastseg.errors import DatasetError
from fastseg.imaging.masks import VOID_LABEL, read_mask

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
NUM_CLASSES = len(VOC_CLASSES)

VALID_LABELS = frozenset(range(NUM_CLASSES)) | {VOID_LABEL}
AUGMENTED_MASKS = "SegmentationClassAug"  # SBD labels converted for the ids VOC does not annotate


@dataclass(frozen=True)
class VOCFolder:
    """A `VOC2012` folder: `JPEGImages/`, `SegmentationClass/`, `ImageSets/Segmentation/*.txt`."""

    root: Path

    def image_path(self, image_id: str) -> Path:
        return self.root / "JPEGImages" / f"{image_id}.jpg"

    def mask_path(self, image_id: str) -> Path:
        """VOC's own mask; for SBD-only "trainaug" ids, the converted one in SegmentationClassAug."""
        path = self.root / "SegmentationClass" / f"{image_id}.png"
        augmented = self.root / AUGMENTED_MASKS / f"{image_id}.png"
        return augmented if not path.is_file() and augmented.is_file() else path

    def list_path(self, split: str) -> Path:
        return self.root / "ImageSets" / "Segmentation" / f"{split}.txt"

    def ids(self, split: str) -> list[str]:
        """Ids of `ImageSets/Segmentation/<split>.txt`, in file order (the split depends on it)."""
        path = self.list_path(split)
        if not path.is_file():
            hint = (
                "build it with `fastseg download --sbd`, or train on VOC train alone: --train-set train"
                if split == "trainaug"
                else "is this a VOC2012 folder?"
            )
            raise DatasetError(f"{path}: list file not found ({hint})")
        ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if not ids:
            raise DatasetError(f"{path}: list file is empty")
        return ids

    def require_files(self, ids: Iterable[str]) -> None:
        """Fail before any work starts if an id's JPEG or PNG is absent (cheap: no file is opened)."""
        missing = [
            path
            for image_id in ids
            for path in (self.image_path(image_id), self.mask_path(image_id))
            if not path.is_file()
        ]
        if missing:
            more = f" (and {len(missing) - 1} more missing files)" if len(missing) > 1 else ""
            raise DatasetError(f"{missing[0]}: file not found{more}")


def find_voc(path: Path | str) -> VOCFolder:
    """Accept a folder holding `VOCdevkit/VOC2012`, `VOC2012`, or the `VOC2012` folder itself."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{path}: data folder not found (run `fastseg download --root {path}`)")
    for candidate in (path, path / "VOC2012", path / "VOCdevkit" / "VOC2012"):
        if (candidate / "ImageSets" / "Segmentation").is_dir():
            return VOCFolder(candidate)
    expected = path / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    raise DatasetError(f"{path}: no VOC2012 dataset here (expected {expected})")


def inspect_pair(folder: VOCFolder, image_id: str) -> tuple[str | None, np.ndarray | None]:
    """Open one image and mask fully: `(problem, None)`, or `(None, mask)` when the pair is usable
    (the decoded mask is handed back so callers that count pixels need not decode it again)."""
    image_path, mask_path = folder.image_path(image_id), folder.mask_path(image_id)
    for path in (image_path, mask_path):
        if not path.is_file():
            return f"{path}: file not found", None
    try:
        with Image.open(image_path) as image:
            image.load()
            image_size = image.size
    except (OSError, UnidentifiedImageError) as error:
        return f"{image_path}: cannot read image ({error})", None
    try:
        mask = read_mask(mask_path)
    except DatasetError as error:
        return str(error), None
    if mask.shape[::-1] != image_size:
        mask_size = f"{mask.shape[1]}x{mask.shape[0]}"
        return f"{mask_path}: mask is {mask_size}, image is {image_size[0]}x{image_size[1]}", None
    bad_values = sorted(set(np.unique(mask).tolist()) - VALID_LABELS)
    if bad_values:
        return f"{mask_path}: mask values {bad_values[:5]} outside 0-{NUM_CLASSES - 1} and {VOID_LABEL}", None
    return None, mask
