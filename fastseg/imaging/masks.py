"""Class-index masks on disk: palette PNGs whose pixel value *is* the class index.

Masks are read as palette *indices* (0-20, 255 void). fastai's `PILMask.create` would convert
them to grey levels (fastai issue #2663: class 15 'person' would become 147), so every mask in
fastseg is read through :func:`read_mask`.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from fastseg.atomic import atomic_path
from fastseg.errors import DatasetError
from fastseg.imaging.palette import voc_palette
from fastseg.outputs import MASK_TEXT

VOID_LABEL = 255  # "not labelled": left out of the loss and of every metric


def read_mask(path: Path | str) -> np.ndarray:
    """Class-index mask `(H, W)` uint8 from a palette ('P') or index-valued greyscale ('L') PNG."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise DatasetError(f"{path}: mask has mode {image.mode}, expected a palette (P) PNG")
            return np.array(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as error:
        raise DatasetError(f"{path}: cannot read mask ({error})") from None


def write_mask(path: Path | str, mask: np.ndarray, palette: list[int] | None = None) -> Path:
    """Save a class-index mask `(H, W)` as a palette PNG (value = class, 255 = void), atomically;
    `palette` is a flat 768-entry list (`Classes.palette()`), VOC's when None."""
    with atomic_path(path) as temporary:
        encode_mask(temporary, mask, palette)
    return Path(path)


def encode_mask(target: Path | BinaryIO, mask: np.ndarray, palette: list[int] | None = None) -> None:
    """The palette PNG of a class-index mask `(H, W)` into a file or a binary stream: the one
    encoder behind `predict`'s files and `fastseg serve`'s responses, so both are the same bytes.

    `compress_level=1`: 1.2 ms instead of 2.9 ms for a 500x375 mask, a few % larger.
    """
    image = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    image.putpalette(palette or voc_palette())
    marked = PngInfo()  # what `fastseg.outputs` reads back: this file is fastseg's own mask
    marked.add_text(*MASK_TEXT)
    image.save(target, format="PNG", compress_level=1, pnginfo=marked)
