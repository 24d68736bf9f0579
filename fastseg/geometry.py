"""How an image is fitted into the model's square input, shared by training, `predict` and `report`.

- squish: the whole image resized to `size`², aspect ratio lost (the seed's protocol; a model
  trained on squished images must see squished images).
- letterbox: the longer side scaled to `size`, aspect ratio kept, the rest of the square padded
  at the bottom and right (mean colour in the image, void in the mask). A model trained on
  random-scale crops, which keep the aspect ratio, is evaluated this way; its logits are cropped
  back to the image area before they are upsampled to the original size.
"""

from __future__ import annotations

SQUISH = "squish"
LETTERBOX = "letterbox"
RESIZE_MODES = (SQUISH, LETTERBOX)


def content_size(height: int, width: int, size: int, mode: str) -> tuple[int, int]:
    """`(height, width)` the image occupies inside the `size`² model input."""
    if mode == SQUISH:
        return size, size
    if mode != LETTERBOX:
        raise ValueError(f"unknown resize mode {mode!r}; choose one of {', '.join(RESIZE_MODES)}")
    scale = size / max(height, width)
    return max(1, min(size, round(height * scale))), max(1, min(size, round(width * scale)))
