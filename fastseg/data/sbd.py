"""SBD "trainaug": the standard 10,582-image VOC training set.

Union of the Semantic Boundaries Dataset's train and val (11,355 images with full-image class
labels) and VOC 2012 train, minus every VOC 2012 val image, so nothing of validation or test
leaks into training. SBD's MATLAB labels are converted once to VOC palette PNGs in
`VOC2012/SegmentationClassAug/`; an id that VOC itself annotates keeps VOC's mask (with its void
borders), and the list is written to `ImageSets/Segmentation/trainaug.txt`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from fastseg.data.download import Resource, download
from fastseg.data.fetch import TIMEOUT, ProgressFactory
from fastseg.data.voc import AUGMENTED_MASKS, VOCFolder
from fastseg.errors import DatasetError
from fastseg.imaging.masks import write_mask

SBD_URLS: tuple[str, ...] = (
    "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",
)
SBD_MD5 = "82b4d87ceb2ed10f6038a1cba92111cb"  # torchvision.datasets.SBDataset's
SBD = Resource(
    filename="benchmark.tgz",
    urls=SBD_URLS,
    md5=SBD_MD5,
    marker="benchmark_RELEASE/dataset/val.txt",
    folder="benchmark_RELEASE/dataset",
)
TRAINAUG = "trainaug"


def read_sbd_mask(path: Path) -> np.ndarray:
    """Class-index mask `(H, W)` uint8 from an SBD `cls/<id>.mat` (`GTcls.Segmentation`)."""
    from scipy.io import loadmat  # only SBD needs it; scipy comes with fastai
    from scipy.io.matlab import MatReadError

    try:
        return np.asarray(loadmat(str(path))["GTcls"][0]["Segmentation"][0], dtype=np.uint8)
    except (MatReadError, OSError, ValueError, KeyError, IndexError, TypeError) as error:
        raise DatasetError(f"{path}: not an SBD class label file ({error})") from None


def sbd_ids(sbd: Path) -> list[str]:
    ids = []
    for name in ("train.txt", "val.txt"):
        path = sbd / name
        if not path.is_file():
            raise DatasetError(f"{path}: SBD list file not found")
        ids += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return ids


def trainaug_ids(voc_train: Sequence[str], voc_val: Sequence[str], sbd: Sequence[str]) -> list[str]:
    """(SBD train ∪ SBD val ∪ VOC train) − VOC val, sorted."""
    return sorted((set(sbd) | set(voc_train)) - set(voc_val))


def build_trainaug(voc: VOCFolder, sbd: Path, log: Callable[[str], None] = lambda message: None) -> list[str]:
    """Convert the SBD labels VOC lacks, bring any missing JPEG, write `trainaug.txt`; idempotent."""
    ids = trainaug_ids(voc.ids("train"), voc.ids("val"), sbd_ids(sbd))
    (voc.root / AUGMENTED_MASKS).mkdir(exist_ok=True)
    converted = 0
    for image_id in ids:
        if not (voc.root / "SegmentationClass" / f"{image_id}.png").is_file():
            target = voc.root / AUGMENTED_MASKS / f"{image_id}.png"
            if not target.is_file():
                write_mask(target, read_sbd_mask(sbd / "cls" / f"{image_id}.mat"))
                converted += 1
        if not voc.image_path(image_id).is_file():
            shutil.copyfile(sbd / "img" / f"{image_id}.jpg", voc.image_path(image_id))
    list_path = voc.list_path(TRAINAUG)
    temporary = list_path.with_name(".trainaug.txt.tmp")
    temporary.write_text("".join(f"{image_id}\n" for image_id in ids), encoding="utf-8")
    temporary.replace(list_path)
    log(f"trainaug: {len(ids)} ids ({converted} SBD labels converted) in {list_path}")
    return ids


def download_sbd(
    root: Path,
    voc: VOCFolder,
    urls: Sequence[str] = SBD_URLS,
    md5: str = SBD_MD5,
    progress: ProgressFactory | None = None,
    log: Callable[[str], None] | None = None,
    timeout: float = TIMEOUT,
) -> list[str]:
    """Fetch, verify and extract SBD next to VOC (same rules as VOC), then build trainaug."""
    resource = replace(SBD, urls=tuple(urls), md5=md5)
    sbd = download(resource, root, progress=progress, log=log, timeout=timeout)
    return build_trainaug(voc, sbd, log or (lambda message: None))
