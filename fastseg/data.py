"""fastai DataLoaders for VOC: a DataBlock of (image, class-index mask) pairs.

The mask block reads palette indices through :func:`fastseg.voc.read_mask` instead of fastai's
`PILMask.create`, which would turn them into grey levels. The seed's recipe squishes both sets to
`size`²; with random-scale crops the training set is cropped by its augmentation and the
validation set letterboxed into `size`² (`fastseg.geometry`). Only the training set is augmented.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch
from fastai.data.block import DataBlock, TransformBlock
from fastai.data.core import DataLoaders
from fastai.data.transforms import IndexSplitter, IntToFloatTensor, Normalize
from fastai.vision.augment import Resize, ResizeMethod
from fastai.vision.core import PILMask
from fastai.vision.data import ImageBlock

from fastseg.classes import IMAGENET_MEAN, IMAGENET_STD, VOC_CLASSES
from fastseg.config import AugmentConfig
from fastseg.device import default_num_workers
from fastseg.transforms import PairedAugment, PairedLetterbox
from fastseg.voc import VOCFolder, read_mask


def open_mask(path: Path) -> PILMask:
    """A `PILMask` holding class indices (not grey levels) for fastai's mask pipeline."""
    return PILMask.create(read_mask(path))


def _image_path(folder: VOCFolder, image_id: str) -> Path:
    return folder.image_path(image_id)


def _mask_path(folder: VOCFolder, image_id: str) -> Path:
    return folder.mask_path(image_id)


def IndexMaskBlock() -> TransformBlock:  # noqa: N802 - named like fastai's blocks
    """fastai's `MaskBlock`, but opening masks as palette indices."""
    return TransformBlock(type_tfms=open_mask, batch_tfms=IntToFloatTensor)


def item_transforms(size: int, augment: AugmentConfig, crop_size: int | None = None) -> list:
    """Seed recipe: both sets squished to `size`², training then augmented. Random-scale crops:
    training `crop_size`² crops from the augmentation itself, validation letterboxed into `size`²."""
    if augment.random_scale_crop:
        return [PairedAugment(augment, size, crop_size), PairedLetterbox(size)]
    return [Resize(size, method=ResizeMethod.Squish), PairedAugment(augment)]


def build_dataloaders(
    folder: VOCFolder,
    train_ids: Sequence[str],
    valid_ids: Sequence[str],
    size: int = 224,
    batch_size: int = 32,
    augment: AugmentConfig | None = None,
    num_workers: int | None = None,
    device: torch.device | str | None = None,
    seed: int | None = None,
    crop_size: int | None = None,
) -> DataLoaders:
    """DataLoaders over `train_ids` (augmented, shuffled) then `valid_ids` (resized only).

    Batches are `(TensorImage (N, 3, S, S) float normalised, TensorMask (N, S, S) long)`, S = `size`,
    or `crop_size` for training batches with random-scale crops. `augment=None` uses the seed's
    augmentation; pass `AugmentConfig` with zero probabilities to turn it off.
    """
    items = [*train_ids, *valid_ids]
    block = DataBlock(
        blocks=(ImageBlock, IndexMaskBlock()),
        # partials, not bound methods: fasttransform mistakes a bound method for a Transform's own
        # `encodes`, and loader workers need picklable getters.
        get_x=partial(_image_path, folder),
        get_y=partial(_mask_path, folder),
        splitter=IndexSplitter(range(len(train_ids), len(items))),
        item_tfms=item_transforms(size, augment or AugmentConfig(), crop_size),
        batch_tfms=[Normalize.from_stats(IMAGENET_MEAN, IMAGENET_STD)],
    )
    workers = default_num_workers() if num_workers is None or num_workers < 0 else num_workers
    device = torch.device(device) if device is not None else None
    # No persistent_workers: fastai's workers read each epoch's shuffled order from their own copy
    # of the DataLoader, so workers kept alive would replay the first epoch's order every epoch.
    return block.dataloaders(
        items,
        bs=batch_size,
        num_workers=workers,
        pin_memory=device is not None and device.type == "cuda",
        device=device,
        seed=seed,
        codes=list(VOC_CLASSES),
    )
