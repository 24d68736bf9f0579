"""`--data`: which data set a path names, opened as its `SegmentationData`.

Its own module so that the interface (`fastseg.data.dataset`) imports none of the data sets
that implement it: VOC (`fastseg.data.voc`) and a `dataset.yaml` folder
(`fastseg.data.folder_dataset`) import the interface, this imports them (no circle).
"""

from __future__ import annotations

from pathlib import Path

from fastseg.data.dataset import SegmentationData
from fastseg.errors import DatasetError
from fastseg.paths import expanded

DATASET_FILE = "dataset.yaml"


def is_dataset_file(path: Path | str) -> bool:
    """Whether `--data` names a `dataset.yaml` data set (cheap: no file is read)."""
    path = expanded(path)
    return (path.is_file() and path.suffix.lower() in (".yaml", ".yml")) or (path / DATASET_FILE).is_file()


def open_dataset(path: Path | str) -> SegmentationData:
    """`--data`: a `dataset.yaml`, a folder holding one, or a VOC root (`VOCdevkit/VOC2012` inside)."""
    # here, not at the top: `is_dataset_file` serves `fastseg runs` and train's option parsing,
    # which open no data set (the two data sets' imports cost them 0.1 s)
    from fastseg.data.folder_dataset import FolderDataset
    from fastseg.data.voc import find_voc

    path = expanded(path)
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return FolderDataset.from_file(path)
    if path.is_file():
        raise DatasetError(
            f"{path}: not a data set (pass a {DATASET_FILE}, a folder holding one, or a VOC root)"
        )
    if (path / DATASET_FILE).is_file():
        return FolderDataset.from_file(path / DATASET_FILE)
    try:
        return find_voc(path)
    except DatasetError:
        if not path.is_dir():
            raise
        raise DatasetError(f"{path}: no {DATASET_FILE} and no VOC2012 data set here "
                           "(see README, \"Your own data\")") from None  # fmt: skip
