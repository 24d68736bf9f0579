"""fastai DataLoaders for any `SegmentationData`: a DataBlock of (image, class-index mask) pairs.

Masks come from the data set's own `read_mask` (class indices, void 255) instead of fastai's
`PILMask.create` on a path, which would turn VOC's palette indices into grey levels. Images are
fitted into the model's input by `fastseg.imaging.geometry`, the same code `predict` and `report`
use: the seed's recipe squishes both sets to `size`²; with random-scale crops the training set is
cropped by its augmentation and the validation set letterboxed into `size`². Only the training
set is augmented.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import torch
from fastai.data.block import DataBlock, TransformBlock
from fastai.data.core import DataLoaders
from fastai.data.transforms import IndexSplitter, IntToFloatTensor, Normalize
from fastai.torch_core import TensorImage, TensorMask
from fastai.vision.core import PILImage, PILMask
from fastai.vision.data import ImageBlock
from fasttransform import ItemTransform
from PIL import Image
from torchvision.transforms import v2

from fastseg.data.dataset import SegmentationData
from fastseg.imaging.geometry import LETTERBOX, SQUISH, fit_image, fit_mask
from fastseg.imaging.images import load_rgb
from fastseg.imaging.normalise import IMAGENET_MEAN, IMAGENET_STD
from fastseg.launch.device import loader_workers
from fastseg.training.augment import augment_pair, build_augment
from fastseg.training.config import AugmentConfig


def _image(dataset: SegmentationData, image_id: str) -> Image.Image:
    """The image as check-data, predict and report decode it (`fastseg.imaging.images.load_rgb`):
    EXIF orientation applied, any mode to RGB. fastai's `PILImage.create` on the path ignored the
    orientation, so a phone photo trained on its side against a mask drawn upright (issue #19)."""
    return load_rgb(dataset.image_path(image_id))


def _mask(dataset: SegmentationData, image_id: str) -> np.ndarray:
    return dataset.read_mask(image_id)


def IndexMaskBlock() -> TransformBlock:  # noqa: N802 - named like fastai's blocks
    """fastai's `MaskBlock`, but taking the data set's decoded class indices (not grey levels)."""
    return TransformBlock(type_tfms=PILMask.create, batch_tfms=IntToFloatTensor)


# No type annotations on `encodes` below: fasttransform dispatches on them, and `pair: tuple`
# silently matched nothing, so the augmentation never ran (caught by tests/test_data.py).


class FitToInput(ItemTransform):
    """`(PILImage, PILMask)` fitted into the `size`² input by `fastseg.imaging.geometry`, before
    fastai's `ToTensor` (order 5), where fastai's own `Resize` (order 1) would run."""

    order = 1

    def __init__(self, size: int, mode: str, split_idx: int | None = None):
        super().__init__(split_idx=split_idx)
        self.size, self.mode = size, mode

    def encodes(self, pair):  # noqa: ANN001, ANN201
        image, mask = pair
        if not (isinstance(image, PILImage) and isinstance(mask, PILMask)):
            return pair
        return (PILImage(fit_image(image, self.size, self.mode)),
                PILMask(fit_mask(mask, self.size, self.mode)))  # fmt: skip


class PairedTransform(ItemTransform):
    """A v2 transform of `(TensorImage (3, H, W), TensorMask (H, W))` pairs as a fastai item
    transform, after `ToTensor`; `split_idx` picks the set (0 training, 1 validation, None both)."""

    order = 6

    def __init__(self, transform: v2.Transform, split_idx: int | None = None):
        super().__init__(split_idx=split_idx)
        self.pipeline = transform

    def encodes(self, pair):  # noqa: ANN001, ANN201
        image, mask = pair
        if not (isinstance(image, TensorImage) and isinstance(mask, TensorMask)):
            return pair
        image_out, mask_out = augment_pair(self.pipeline, image, mask)
        return TensorImage(image_out), TensorMask(mask_out)


class PairedAugment(PairedTransform):
    """The training set's augmentation (:func:`fastseg.training.augment.build_augment`)."""

    def __init__(self, config: AugmentConfig, size: int | None = None, crop_size: int | None = None):
        super().__init__(build_augment(config, size, crop_size), split_idx=0)


def item_transforms(size: int, augment: AugmentConfig, crop_size: int | None = None) -> list:
    """Seed recipe: both sets squished to `size`², training then augmented. Random-scale crops:
    training `crop_size`² crops from the augmentation itself, validation letterboxed into `size`²."""
    if augment.random_scale_crop:
        return [PairedAugment(augment, size, crop_size), FitToInput(size, LETTERBOX, split_idx=1)]
    return [FitToInput(size, SQUISH), PairedAugment(augment)]


def build_dataloaders(
    dataset: SegmentationData,
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
    """DataLoaders over `train_ids` (augmented, shuffled) then `valid_ids` (fitted only).

    Batches are `(TensorImage (N, 3, S, S) float normalised, TensorMask (N, S, S) long)`, S = `size`,
    or `crop_size` for training batches with random-scale crops. `augment=None` uses the seed's
    augmentation; pass `AugmentConfig` with zero probabilities to turn it off.
    """
    items = [*train_ids, *valid_ids]
    block = DataBlock(
        blocks=(ImageBlock, IndexMaskBlock()),
        # partials, not bound methods: fasttransform mistakes a bound method for a Transform's own
        # `encodes`, and loader workers need picklable getters.
        get_x=partial(_image, dataset),
        get_y=partial(_mask, dataset),
        splitter=IndexSplitter(range(len(train_ids), len(items))),
        item_tfms=item_transforms(size, augment or AugmentConfig(), crop_size),
        batch_tfms=[Normalize.from_stats(IMAGENET_MEAN, IMAGENET_STD)],
    )
    device = torch.device(device) if device is not None else None
    # No persistent_workers: fastai's workers read each epoch's shuffled order from their own copy
    # of the DataLoader, so workers kept alive would replay the first epoch's order every epoch.
    return block.dataloaders(
        items,
        bs=batch_size,
        num_workers=loader_workers(num_workers),
        pin_memory=device is not None and device.type == "cuda",
        device=device,
        seed=seed,
        codes=list(dataset.classes.names),
    )
