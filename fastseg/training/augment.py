"""Training augmentation: torchvision `transforms.v2` moving image and mask together.

Spatial transforms see the image as a `tv_tensors.Image` and the mask as a `tv_tensors.Mask`, so
v2 warps both with one set of random parameters, resamples the mask by nearest neighbour, and
fills what rotation, translation, zoom-out or cropping expose with void (255) in the mask and
ImageNet's mean colour in the image. Colour transforms leave `Mask` untouched. No fastai here:
`fastseg.training.data` plugs these into fastai's pipeline.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from fastseg.imaging.geometry import IMAGE_FILL, LETTERBOX, content_size
from fastseg.imaging.masks import VOID_LABEL
from fastseg.training.config import AugmentConfig

# What exposed areas take: the mean colour normalises to about zero (the seed used white).
FILL = {tv_tensors.Image: list(IMAGE_FILL), tv_tensors.Mask: VOID_LABEL}


# make_params / transform are torchvision's public hooks for custom v2 transforms since 0.21
# (before that _get_params / _transform): setup.cfg requires torchvision>=0.21.
class ScaleLongerSide(v2.Transform):
    """Resize so the longer side is `size` x U(scale): the same geometry as the letterbox used at
    evaluation, so the scale range is centred on what the model will see there."""

    def __init__(self, size: int, scale: tuple[float, float] = (1.0, 1.0)):
        super().__init__()
        self.size, self.scale = size, scale

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        low, high = self.scale
        factor = low + (high - low) * float(torch.rand(()))
        return {"size": list(content_size(height, width, max(1, round(self.size * factor)), LETTERBOX))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        # Masks by nearest-exact (pixel centres, as Pillow's NEAREST): torch's plain "nearest"
        # samples pixel corners and shifts every label boundary by half a source pixel.
        mask = isinstance(inpt, tv_tensors.Mask)
        interpolation = v2.InterpolationMode.NEAREST_EXACT if mask else v2.InterpolationMode.BILINEAR
        return self._call_kernel(
            TF.resize, inpt, size=params["size"], interpolation=interpolation, antialias=True
        )


def random_scale_crop(size: int, crop_size: int, scale: tuple[float, float]) -> list[v2.Transform]:
    """Longer side to `size` x U(scale), then a random `crop_size`² crop; what it leaves empty is void."""
    return [ScaleLongerSide(size, scale), v2.RandomCrop(crop_size, pad_if_needed=True, fill=FILL)]


def build_augment(config: AugmentConfig, size: int | None = None, crop_size: int | None = None) -> v2.Compose:
    """The seed's augmentations, each applied independently with its own probability; with
    `config.random_scale_crop`, preceded by a random-scale `crop_size`² crop (default `size`)
    of the full image."""

    def maybe(transform: v2.Transform, p: float) -> v2.Transform:
        return v2.RandomApply([transform], p=p)

    crop = (
        random_scale_crop(size, crop_size or size, config.crop_scale)
        if config.random_scale_crop and size
        else []
    )
    return v2.Compose(
        [
            *crop,
            v2.RandomHorizontalFlip(p=config.flip_p),
            maybe(v2.RandomAffine(degrees=config.rotate_degrees, fill=FILL), config.rotate_p),
            maybe(
                v2.RandomAffine(degrees=0, translate=(config.translate_fraction,) * 2, fill=FILL),
                config.translate_p,
            ),
            maybe(v2.RandomAffine(degrees=0, scale=config.scale_range, fill=FILL), config.scale_p),
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
