"""Training augmentation: torchvision `transforms.v2` moving image and mask together.

Spatial transforms see the image as a `tv_tensors.Image` and the mask as a `tv_tensors.Mask`, so
v2 warps both with one set of random parameters, resamples the mask by nearest neighbour, and
fills what rotation, translation or zoom-out expose with void (255) in the mask. Colour
transforms leave `Mask` untouched. `PairedAugment` plugs the pipeline into fastai as an
`ItemTransform` that runs on the training set only.
"""

from __future__ import annotations

import torch
from fastai.torch_core import TensorImage, TensorMask
from fasttransform import ItemTransform
from torchvision import tv_tensors
from torchvision.transforms import v2

from fastseg.classes import IMAGENET_MEAN, VOID_LABEL
from fastseg.config import AugmentConfig

# Exposed image area takes the ImageNet mean colour, which normalises to zero (the seed used white).
IMAGE_FILL = [round(255 * channel) for channel in IMAGENET_MEAN]


def random_scale_crop(size: int, scale: tuple[float, float], fill: dict) -> list[v2.Transform]:
    """Shorter side to `size` x U(scale), then a `size`² crop; what the crop leaves empty is void."""
    low, high = (max(1, round(size * factor)) for factor in scale)
    return [v2.RandomResize(low, high + 1), v2.RandomCrop(size, pad_if_needed=True, fill=fill)]


def build_augment(config: AugmentConfig, size: int | None = None) -> v2.Compose:
    """The seed's augmentations, each applied independently with its own probability; with
    `config.random_scale_crop`, preceded by a random-scale `size`² crop of the full image."""
    fill = {tv_tensors.Image: IMAGE_FILL, tv_tensors.Mask: VOID_LABEL}

    def maybe(transform: v2.Transform, p: float) -> v2.Transform:
        return v2.RandomApply([transform], p=p)

    crop = random_scale_crop(size, config.crop_scale, fill) if config.random_scale_crop and size else []
    return v2.Compose(
        [
            *crop,
            v2.RandomHorizontalFlip(p=config.flip_p),
            maybe(v2.RandomAffine(degrees=config.rotate_degrees, fill=fill), config.rotate_p),
            maybe(
                v2.RandomAffine(degrees=0, translate=(config.translate_fraction,) * 2, fill=fill),
                config.translate_p,
            ),
            maybe(v2.RandomAffine(degrees=0, scale=config.scale_range, fill=fill), config.scale_p),
            maybe(v2.GaussianBlur(kernel_size=3, sigma=config.blur_sigma), config.blur_p),
            maybe(v2.ColorJitter(*(config.color_jitter,) * 4), config.color_jitter_p),
            maybe(
                v2.ColorJitter(brightness=config.brightness_contrast, contrast=config.brightness_contrast),
                config.brightness_contrast_p,
            ),
        ]
    )


def augment_pair(
    augment: v2.Transform, image: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply `augment` to an image `(3, H, W)` uint8 and its mask `(H, W)` uint8 together."""
    image_out, mask_out = augment(
        tv_tensors.Image(image.as_subclass(torch.Tensor)), tv_tensors.Mask(mask.as_subclass(torch.Tensor))
    )
    return image_out.as_subclass(torch.Tensor), mask_out.as_subclass(torch.Tensor)


class PairedAugment(ItemTransform):
    """fastai item transform (training split only) wrapping :func:`build_augment`.

    It runs after fastai's `ToTensor` (order 5), on `(TensorImage (3, H, W), TensorMask (H, W))`.
    """

    split_idx = 0
    order = 6

    def __init__(self, config: AugmentConfig, size: int | None = None):
        super().__init__()
        self.config = config
        self.augment = build_augment(config, size)

    # No type annotations here: fasttransform dispatches on them, and `pair: tuple` silently
    # matched nothing, so the augmentation never ran (caught by tests/test_data.py).
    def encodes(self, pair):  # noqa: ANN001, ANN201
        image, mask = pair
        if not (isinstance(image, TensorImage) and isinstance(mask, TensorMask)):
            return pair
        image_out, mask_out = augment_pair(self.augment, image, mask)
        return TensorImage(image_out), TensorMask(mask_out)
