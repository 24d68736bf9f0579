"""One segmented image's outputs: its mask (a palette PNG in the model's colours), its overlay
(a JPEG of the image blended with the mask) and each class's share of its pixels, each made a
band of rows at a time so that memory stays bounded at any image size. `fastseg serve` encodes
the same overlay into memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from fastseg.atomic import DISK_FULL, atomic_path
from fastseg.classes import Classes
from fastseg.errors import FastsegError
from fastseg.imaging.masks import write_mask
from fastseg.imaging.palette import colorize
from fastseg.inference.jobs import Job
from fastseg.inference.segmented import Segmented
from fastseg.outputs import OVERLAY_COMMENT
from fastseg.paths import make_folders

ROWS_PER_CHUNK = 256  # rows of labels counted / overlay rows blended at a time: bounded memory


def row_chunks(height: int) -> Iterator[slice]:
    """Bands of rows: whole-image temporaries would cost 8 bytes a pixel to count classes
    (`np.bincount` widens to int64) and ~30 to blend an overlay in float32 (2.6 GB at 9400x9400,
    measured: benchmarks/predict_memory.py)."""
    for start in range(0, height, ROWS_PER_CHUNK):
        yield slice(start, min(height, start + ROWS_PER_CHUNK))


def class_fractions(labels: np.ndarray, num_classes: int) -> list[float]:
    """Share of each class among the pixels of `labels` `(H, W)`, counted a band of rows at a time."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for rows in row_chunks(labels.shape[0]):
        counts += np.bincount(labels[rows].ravel(), minlength=num_classes)[:num_classes]
    return (counts / max(labels.size, 1)).round(6).tolist()


def save_overlay(
    image: np.ndarray, labels: np.ndarray, path: Path, classes: Classes, alpha: float = 0.5
) -> None:
    """RGB image `(H, W, 3)` blended with its labels in the model's colours, as JPEG, written
    atomically (`encode_overlay`)."""
    with atomic_path(path) as temporary:
        encode_overlay(temporary, image, labels, classes, alpha)


def encode_overlay(
    target: Path | BinaryIO, image: np.ndarray, labels: np.ndarray, classes: Classes, alpha: float = 0.5
) -> None:
    """The overlay JPEG into a file or a binary stream (predict's files, `fastseg serve`'s
    `?overlay=1`); the float arithmetic runs a band of rows at a time into one uint8 picture."""
    blended = np.empty_like(image, dtype=np.uint8)
    for rows in row_chunks(image.shape[0]):
        colours = colorize(labels[rows], classes.colors).astype(np.float32)
        blended[rows] = ((1 - alpha) * image[rows].astype(np.float32) + alpha * colours).round()
    Image.fromarray(blended).save(target, format="JPEG", quality=90, comment=OVERLAY_COMMENT)


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an `OSError` while writing `path` into a `FastsegError` naming it: a folder blocked by a
    file or a read-only subfolder fails that image only. The file behind the error is named when
    it is not `path`'s own (temporary) file: `File exists: OUT/a` for a blocked folder. A full disk
    (or quota) stays an `OSError`, now naming `path`, and ends the run: every image after it would
    fail the same way, each after a pass of the model."""
    try:
        yield
    except OSError as error:
        if error.errno in DISK_FULL:
            raise OSError(error.errno, error.strerror or "no space left", str(path)) from None
        reason = error.strerror or str(error)
        if error.filename and Path(error.filename).parent != path.parent:
            reason = f"{reason}: {error.filename}"
        raise FastsegError(f"cannot write {path} ({reason})") from None


def save_outputs(result: Segmented, job: Job, overlay: bool) -> np.ndarray:
    """The mask (a palette PNG in the model's colours) and overlay of one segmented image;
    returns its labels."""
    labels = result.labels()
    classes = result.segmenter.loaded.class_set
    with writing(job.mask):
        make_folders(job.mask.parent)
        write_mask(job.mask, labels, classes.palette())
    if overlay:
        with writing(job.overlay):
            save_overlay(result.item["original"], labels, job.overlay, classes)
    return labels
