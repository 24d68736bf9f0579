"""Dataset sample figures (`train_ds_sample.png`, `val_ds_sample.png`) from fastai DataLoaders."""

from __future__ import annotations

from pathlib import Path

from fastai.data.core import DataLoaders

from fastseg.classes import Classes
from fastseg.data.voc import VOC
from fastseg.runs.folder import TRAIN_SAMPLE, VAL_SAMPLE
from fastseg.visualization.figures import save_batch_sample


def save_dataset_samples(dls: DataLoaders, out: Path, rows: int = 4, classes: Classes = VOC) -> list[Path]:
    """One augmented training batch and one validation batch, drawn as image | mask rows."""
    written = []
    for loader, name, title in (
        (dls.train, TRAIN_SAMPLE, "training (augmented)"),
        (dls.valid, VAL_SAMPLE, "validation"),
    ):
        images, masks = loader.one_batch()
        written.append(
            save_batch_sample(images.cpu().numpy(), masks.cpu().numpy(), out / name, title, rows, classes)
        )
    return written
