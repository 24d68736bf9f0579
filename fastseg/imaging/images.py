"""Opening any image a user points fastseg at, or saying in one line why it cannot be used."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"})


class UnreadableImage(ValueError):
    """A file that is named like an image but cannot be segmented; the message is the reason."""


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB from any Pillow mode: L, LA, P, RGBA, CMYK, and 16-bit / float greys scaled to 8 bits."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        pixels = np.asarray(image, dtype=np.float32) / 257.0
        return Image.fromarray(pixels.round().astype(np.uint8)).convert("RGB")
    if image.mode in ("I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) / (high - low) * 255 if high > low else np.zeros_like(pixels)
        return Image.fromarray(scaled.round().astype(np.uint8)).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


TURNING_ORIENTATIONS = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height


def turned_by_exif(path: Path | str) -> bool:
    """Whether the file's EXIF orientation swaps its width and height as `load_rgb` applies it:
    what explains a mask whose size is its image's turned (drawn on the stored pixels)."""
    try:
        with Image.open(path) as image:
            return image.getexif().get(0x0112) in TURNING_ORIENTATIONS
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def load_rgb(path: Path | str | bytes) -> Image.Image:
    """Decode, apply EXIF orientation, convert to RGB; `UnreadableImage` says what is wrong.

    `path` may also be a file's bytes (an upload to `fastseg serve`): the same decoding and the
    same limits (Pillow's decompression-bomb pixel limit), so a served mask is predict's mask.
    An RGB file is decoded once and never copied (4 bytes a pixel: 350 MB at 9400x9400): the
    orientation is applied in place and the decoded image itself is returned."""
    in_memory = isinstance(path, bytes)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            # closing our file keeps the pixels (Image.close drops them)
            with io.BytesIO(path) if in_memory else Path(path).open("rb") as file:
                image = Image.open(file)
                ImageOps.exif_transpose(image, in_place=True)
                image.load()
            return to_rgb(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise UnreadableImage(f"too large to decode safely ({error.args[0].split('.')[0]})") from None
        except PermissionError:
            raise UnreadableImage("permission denied") from None
        except UnidentifiedImageError:
            size = len(path) if in_memory else (Path(path).stat().st_size if Path(path).exists() else 0)
            raise UnreadableImage("empty file" if size == 0 else "not an image Pillow can read") from None
        except (OSError, SyntaxError, ValueError) as error:
            raise UnreadableImage(f"corrupt or truncated image ({error})") from None
