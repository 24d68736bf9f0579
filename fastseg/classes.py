"""A data set's classes: names, colours and the mask value that means "not labelled".

Everything that names or draws a class (the model file, predict's PNGs and CSV, report's tables
and charts) takes them from one `Classes`, so a data set of its own is not squeezed into VOC's 21.
Inside fastseg the ignore value is always `VOID_LABEL` (255): a data set whose masks use another
value has it mapped to 255 as they are read (`fastseg.data.dataset`), so padding, the loss and
every metric need no second convention. `ignore_index` records the data set's own value.

A core module, beside the packages rather than in one: the data sets (`fastseg.data`) make a
`Classes`, the model file (`fastseg.model.checkpoint`) stores one, and neither imports the other.
It imports no torch and no data set.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastseg.errors import DatasetError
from fastseg.imaging.masks import VOID_LABEL
from fastseg.imaging.palette import voc_colormap

MAX_CLASSES = 255  # class indices 0-254 fit a uint8 mask beside the void value 255

Colour = tuple[int, int, int]


def default_colors(count: int) -> list[Colour]:
    """VOC's colour map, which gives each of 256 indices its own colour: VOC's 21 first."""
    return voc_colormap(256)[:count]


@functools.lru_cache(maxsize=8)
def _flat_palette(colors: tuple[Colour, ...]) -> tuple[int, ...]:
    """Built once per colour set: predict writes a mask per image with it (0.9 ms to build)."""
    colours = list(colors) + voc_colormap(256)[len(colors) :]
    return tuple(channel for colour in colours for channel in colour)


@dataclass(frozen=True)
class Classes:
    """`names[i]` and `colors[i]` describe class index i; `ignore_index` is the data set's void value."""

    names: tuple[str, ...]
    colors: tuple[Colour, ...]
    ignore_index: int = VOID_LABEL

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        colors = tuple(tuple(int(channel) for channel in colour) for colour in self.colors)
        object.__setattr__(self, "colors", colors)
        if not 2 <= len(self.names) <= MAX_CLASSES:
            raise DatasetError(f"a data set needs 2 to {MAX_CLASSES} classes, got {len(self.names)}")
        if len(self.colors) != len(self.names):
            raise DatasetError(f"{len(self.colors)} colours for {len(self.names)} classes (one per class)")

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def create(cls, names: Sequence[str], colors: Sequence[Colour] | None = None,
               ignore_index: int = VOID_LABEL) -> Classes:  # fmt: skip
        """Classes with VOC's colours unless `colors` are given."""
        return cls(tuple(names), tuple(colors) if colors is not None else tuple(default_colors(len(names))),
                   ignore_index)  # fmt: skip

    def palette(self) -> list[int]:
        """Flat 768-entry palette for `PIL.Image.putpalette`: the class colours first, VOC's map for
        the other indices (void 255 cream, as in VOC)."""
        return list(_flat_palette(self.colors))

    def to_dict(self) -> dict[str, Any]:
        """JSON- and `weights_only`-safe: lists of strings and ints."""
        return {"names": list(self.names), "colors": [list(colour) for colour in self.colors],
                "ignore_index": self.ignore_index}  # fmt: skip
