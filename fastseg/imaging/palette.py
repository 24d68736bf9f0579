"""Class colours: PASCAL VOC's colour map, which gives every index 0-255 a distinct colour.

Masks are stored as palette PNGs: the pixel value *is* the class index and the palette only
decides how it looks, so every writer of a mask goes through :func:`voc_palette`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np


def voc_colormap(num_colors: int = 256) -> list[tuple[int, int, int]]:
    """The official VOC colour map: bit-interleaved RGB from the class index (devkit `labelcolormap`)."""

    def bit(value: int, index: int) -> int:
        return (value >> index) & 1

    colours = []
    for label in range(num_colors):
        red = green = blue = 0
        code = label
        for shift in range(7, -1, -1):
            red |= bit(code, 0) << shift
            green |= bit(code, 1) << shift
            blue |= bit(code, 2) << shift
            code >>= 3
        colours.append((red, green, blue))
    return colours


@functools.cache
def _palette() -> tuple[int, ...]:
    return tuple(channel for colour in voc_colormap() for channel in colour)


def voc_palette() -> list[int]:
    """Flat 768-entry palette for `PIL.Image.putpalette`; void (255) comes out cream, as in VOC.
    Computed once: every predicted mask is written with it."""
    return list(_palette())


def colorize(mask: np.ndarray, colors: Sequence[tuple[int, int, int]] | None = None) -> np.ndarray:
    """RGB `(H, W, 3)` uint8 picture of a class-index mask `(H, W)`: `colors[i]` for class i, VOC's
    colour map for every other index (and for all of them when `colors` is None)."""
    if colors is None:
        return _COLOUR_TABLE[mask]
    return colour_table(tuple(map(tuple, colors)))[mask]


@functools.lru_cache(maxsize=8)
def colour_table(colors: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    """`(256, 3)` uint8 lookup table: the given colours first, VOC's for the remaining indices."""
    table = _COLOUR_TABLE.copy()
    table[: len(colors)] = np.array(colors, dtype=np.uint8).reshape(-1, 3)
    return table


_COLOUR_TABLE = np.array(voc_colormap(), dtype=np.uint8)
