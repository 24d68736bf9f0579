"""Where the tiles of a sliding window fall, and how much each tile's pixels count in the blend.

A large photo letterboxed into the model's square input loses whatever is thinner than its
scale-down factor (a 6000x4000 photo into 512² shrinks 11.7 times: a wire 5 pixels wide becomes
half a pixel). `--tile N` instead runs the model on N² windows of the image at its own
resolution, as mmsegmentation's `slide_inference` does: windows start every
`stride = round(N x (1 - overlap))` pixels and the last one is moved back to end at the image's
edge. Along a side shorter than a tile the window shrinks to the image, its length rounded up to
a multiple of 32 (the deepest map's stride; mmseg crops its window to the image and pads it to its
`size_divisor` the same way), padded bottom and right with ImageNet's mean colour (the letterbox
padding of `fastseg.imaging.geometry`): a 1x1 upload under `tile=2048` is one 32² pass, not a
2048² one (5 GB and 47 s on a CPU). An image one window covers gets the mask of the smallest tile
that covers it, whatever larger tile is asked for.

How often each pixel runs through the model, `(tile / stride)²`, is bounded (`MAX_PASSES`):
`--tile 32 --overlap 0.99` started a window every pixel, 161,000 windows for a 500x375 photo with
no word of it. A cost is refused before work starts, not announced: it is known from the two
options alone, and no result needs more than 64 blended opinions of a pixel (overlap 0.875).

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

import math
from dataclasses import dataclass

import numpy as np

from fastseg.errors import OptionError

MIN_TILE = 32  # the encoder halves the input five times: a smaller tile has no 1x1 bottleneck left
DEEPEST_STRIDE = 32  # every encoder's last map is at 1/32: a shrunk window is a multiple of it
# The largest input side a model is run at (model.config.MAX_SIZE, not imported: no torch here): a
# window of a large image is a whole tile, so `--tile 100000` on a photo asked for tens of GB.
MAX_TILE = 8192
DEFAULT_OVERLAP = 0.25
MAX_PASSES = 64  # how often a pixel may run through the model: overlap 0.875 at most


@dataclass(frozen=True)
class Tiling:
    """`tile`² windows of the image at its own resolution, overlapping by `overlap` of a tile."""

    tile: int
    overlap: float = DEFAULT_OVERLAP

    @property
    def stride(self) -> int:
        return max(1, round(self.tile * (1 - self.overlap)))

    @property
    def passes(self) -> float:
        """How many windows cover a pixel away from the image's edges: the model's work over
        `overlap 0`'s (`(tile / stride)²`)."""
        return (self.tile / self.stride) ** 2

    def side(self, length: int) -> int:
        """The window's side along a side of the image `length` pixels long: the tile, or for an
        image shorter than a tile, `length` rounded up to a multiple of `DEEPEST_STRIDE` (at least
        `MIN_TILE`, at most the tile): padding past that only costs memory and time."""
        if length >= self.tile:
            return self.tile
        rounded = -(-length // DEEPEST_STRIDE) * DEEPEST_STRIDE
        return min(self.tile, max(MIN_TILE, rounded))

    def starts(self, length: int) -> list[int]:
        """First pixel of each window along a side of `length` pixels: every `stride`, the last
        moved back to end at the edge (a window never reaches past the image unless the image is
        shorter than a tile: one window of `side(length)`, padded)."""
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
    the image's own resolution and the model's input side is the tile's. A pair running each pixel
    through the model more than `MAX_PASSES` times is refused, naming both and the largest overlap
    that works for the tile."""
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
    tiling = Tiling(tile, overlap)
    if tiling.passes > MAX_PASSES:
        raise OptionError(
            f"--tile {tile} --overlap {overlap}: a window every {tiling.stride} px, "
            f"{10**6 / tiling.stride**2:,.0f} windows a megapixel, each pixel through the model "
            f"{tiling.passes:,.0f} times; at most {MAX_PASSES} (--overlap {largest_overlap(tile):g} or less)"
        )
    return tiling


def largest_overlap(tile: int) -> float:
    """The largest overlap (to 3 decimals, rounded down) whose stride keeps `passes` within
    `MAX_PASSES`: a stride of at least `tile / sqrt(MAX_PASSES)`, whole pixels."""
    least_stride = math.ceil(tile / math.sqrt(MAX_PASSES))
    return math.floor((1 - least_stride / tile) * 1000) / 1000
