"""Where the tiles of a sliding window fall, and how much each tile's pixels count in the blend.

A large photo letterboxed into the model's square input loses whatever is thinner than its
scale-down factor (a 6000x4000 photo into 512² shrinks 11.7 times: a wire 5 pixels wide becomes
half a pixel). `--tile N` instead runs the model on N² windows of the image at its own
resolution, as mmsegmentation's `slide_inference` does: windows start every
`stride = round(N x (1 - overlap))` pixels and the last one is moved back to end at the image's
edge, so only an image smaller than one tile is padded (bottom and right, ImageNet's mean colour:
the letterbox padding of `fastseg.imaging.geometry`).

Overlapping logits are blended with a separable window rather than averaged flat (mmseg counts
every pixel once; pytorch-toolbelt weights a tile's centre above its edges): a tile's borders see
the least context, so their logits are the least trustworthy. The window is a linear ramp across
the overlap, strictly positive (no pixel, not even at the image's border where only one tile
covers it, divides by zero), and where at most two windows overlap (overlap up to 0.5) the two
ramps sum to exactly one at the regular stride.

No torch here: the CLI reads `MIN_TILE` and `DEFAULT_OVERLAP` for `--help`. The run itself is
`fastseg.inference.sliding`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastseg.errors import OptionError

MIN_TILE = 32  # the encoder halves the input five times: a smaller tile has no 1x1 bottleneck left
# The largest input side a model is run at (model.config.MAX_SIZE, not imported: no torch here). An
# image smaller than a tile is padded to a whole tile, so `--tile 100000` asked for tens of GB.
MAX_TILE = 8192
DEFAULT_OVERLAP = 0.25


@dataclass(frozen=True)
class Tiling:
    """`tile`² windows of the image at its own resolution, overlapping by `overlap` of a tile."""

    tile: int
    overlap: float = DEFAULT_OVERLAP

    @property
    def stride(self) -> int:
        return max(1, round(self.tile * (1 - self.overlap)))

    def starts(self, length: int) -> list[int]:
        """First pixel of each window along a side of `length` pixels: every `stride`, the last
        moved back to end at the edge (a window never reaches past the image unless the image is
        shorter than a tile, which is then padded)."""
        if length <= self.tile:
            return [0]
        return [*range(0, length - self.tile, self.stride), length - self.tile]

    def ramp(self) -> np.ndarray:
        """Weights `(tile,)` of one side: 1 in the middle, falling linearly to `1 / (margin + 1)`
        over the `margin = tile - stride` pixels a neighbour also covers. At the regular stride a
        pixel's weights from two windows sum to 1: `(tile - i) + (i - stride + 1) = margin + 1`
        (with more overlap than half a tile the ramps meet below 1; the blend divides by the sum)."""
        margin = self.tile - self.stride
        position = np.arange(self.tile, dtype=np.float32)
        ramp = np.minimum(position + 1, self.tile - position) / (margin + 1)
        return np.minimum(1.0, ramp).astype(np.float32)

    def window(self) -> np.ndarray:
        """Weights `(tile, tile)` of one window's logits: the outer product of the ramps."""
        ramp = self.ramp()
        return np.outer(ramp, ramp)


def make_tiling(tile: int | None, overlap: float | None, size: int | None = None) -> Tiling | None:
    """`--tile/--overlap` checked together (one line each, a usage error): None without `--tile`
    (or `--tile 0`), today's whole-image fit. `--size` is refused with `--tile`: tiles are taken at
    the image's own resolution and the model's input side is the tile's."""
    if not tile:
        if overlap is not None:
            raise OptionError("--overlap needs --tile (the side of the sliding window in pixels)")
        return None
    if tile < MIN_TILE:
        raise OptionError(f"--tile {tile}: at least {MIN_TILE} pixels (or 0: the whole image, fitted)")
    if tile > MAX_TILE:
        raise OptionError(f"--tile {tile}: at most {MAX_TILE} pixels (the largest side a model runs at)")
    overlap = DEFAULT_OVERLAP if overlap is None else overlap
    if not 0 <= overlap < 1:
        raise OptionError(f"--overlap {overlap}: a fraction of the tile, at least 0 and below 1")
    if size is not None:
        raise OptionError("--size and --tile exclude each other: tiles are at the image's own resolution")
    return Tiling(tile, overlap)
