"""How an image is fitted into the model's square input: one implementation for training's
validation batches, `predict` and `report`, so a model is scored on exactly what it will see.

- squish: the whole image resized to `size`², aspect ratio lost (the seed's protocol; a model
  trained on squished images must see squished images). Training squishes its own inputs the
  same way (fastai's `Resize(method="squish")` did exactly this Pillow call).
- letterbox: the longer side scaled to `size`, aspect ratio kept, the rest of the square padded
  at the bottom and right (ImageNet's mean colour in the image, void in the mask). A model
  trained on random-scale crops, which keep the aspect ratio, is evaluated this way; its logits
  are cropped back to the image area before they are upsampled to the original size.

Images resample bilinearly and masks by nearest neighbour (Pillow's, which samples pixel
centres); labels are never interpolated.
"""

from __future__ import annotations

from PIL import Image

from fastseg.imaging.masks import VOID_LABEL

SQUISH = "squish"
LETTERBOX = "letterbox"
RESIZE_MODES = (SQUISH, LETTERBOX)

# Letterbox padding and exposed crop area: ImageNet's mean colour, round(255 x IMAGENET_MEAN),
# which normalises to about zero. Spelled out so this module needs no torch (the CLI's config
# modules import it for `--help`); tests/test_geometry.py checks it against the mean.
IMAGE_FILL = (124, 116, 104)


def content_size(height: int, width: int, size: int, mode: str) -> tuple[int, int]:
    """`(height, width)` the image occupies inside the `size`² model input."""
    if mode == SQUISH:
        return size, size
    if mode != LETTERBOX:
        raise ValueError(f"unknown resize mode {mode!r}; choose one of {', '.join(RESIZE_MODES)}")
    scale = size / max(height, width)
    return max(1, min(size, round(height * scale))), max(1, min(size, round(width * scale)))


def fit_image(image: Image.Image, size: int, mode: str) -> Image.Image:
    """An RGB image as the `size`² picture the model takes (bilinear, mean-colour padding)."""
    return _fit(image, size, mode, Image.BILINEAR, IMAGE_FILL)


def fit_mask(mask: Image.Image, size: int, mode: str) -> Image.Image:
    """A class-index mask ('L' or 'P') fitted like its image (nearest, void padding)."""
    return _fit(mask, size, mode, Image.NEAREST, VOID_LABEL)


def _fit(
    picture: Image.Image, size: int, mode: str, resample: int, fill: int | tuple[int, ...]
) -> Image.Image:
    height, width = content_size(picture.height, picture.width, size, mode)
    resized = picture.resize((width, height), resample)
    if (height, width) == (size, size):
        return resized
    square = Image.new(picture.mode, (size, size), fill)
    if picture.mode == "P":
        square.putpalette(picture.getpalette())
    square.paste(resized, (0, 0))
    return square
