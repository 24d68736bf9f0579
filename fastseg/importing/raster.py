"""Drawing shapes into masks, the way the tools that made them do, and stacking them.

- Polygons and RLE go through pycocotools (`frPyObjects`, `merge`, `decode`): COCO's own reference
  rasteriser, which CVAT's exports (through datumaro) also use; YOLO and Label Studio polygons are
  drawn by it too, so one well-kept rasteriser decides every polygon's border pixels.
- LabelMe's shapes follow `labelme.utils.shape_to_mask` exactly (Pillow's ImageDraw: polygon with
  outline, rectangle, ellipse for circles, lines of a width), so an import equals what labelme's
  own `labelme_json_to_dataset` draws.
- Overlaps: layers are painted in order, a later one on top (as the tools draw); `stack` counts
  the pixels that a layer of another class took from an earlier one ("contested").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from fastseg.errors import FastsegError
from fastseg.extras import install_hint
from fastseg.importing.source import Item, ItemProblem, shown

EXTRA = "import"  # setup.cfg's extra that brings pycocotools
REACH = 8  # image sizes beyond an edge past which a polygon is cut before pycocotools draws it
NOT_A_LABEL = 256  # in a label PNG's lookup table: a value the data set does not define
# what Pillow raises for a mask it cannot read: a damaged file, or more pixels than it opens
UNREADABLE = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)


def coco_mask_module():  # noqa: ANN201 - pycocotools.mask, typed by pycocotools
    """pycocotools' mask module, or one line naming the extra that installs it."""
    try:
        from pycocotools import mask
    except ImportError:
        raise FastsegError(
            f"this format's polygons and RLE are drawn by pycocotools: {install_hint(EXTRA)}"
        ) from None
    return mask


def polygons(flat_polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Bool `(H, W)`: the union of polygons given as flat [x1, y1, x2, y2, ...] pixel lists.

    A polygon reaching further than `REACH` image sizes beyond an edge (a CVAT ellipse or turned
    box, whose centre alone is checked, with a radius of 1e9) is cut to that window first
    (`within_reach`): pycocotools walks every edge at 5 points a pixel in C ints, so such a vertex
    took memory in proportion to its distance, overflowed (an empty mask) or killed the process
    (SIGSEGV). A polygon within the window is drawn exactly as given; a cut one covers the same part
    of the image up to pycocotools' rounding of each vertex to a fifth of a pixel (a border pixel
    along an edge that was cut may differ)."""
    mask = coco_mask_module()
    reachable = [
        within_reach([float(value) for value in polygon], height, width) for polygon in flat_polygons
    ]
    reachable = [polygon for polygon in reachable if polygon]  # []: wholly outside the window
    if not reachable:
        return np.zeros((height, width), dtype=bool)
    rles = mask.frPyObjects(reachable, height, width)
    return mask.decode(mask.merge(rles)).view(bool)  # (H, W) column-major, as COCO stores masks


def within_reach(flat: list[float], height: int, width: int) -> list[float]:
    """`flat` unchanged when every vertex lies within `REACH` image sizes of the image, else
    the polygon cut to that window (Sutherland-Hodgman, one window edge at a time): the same area
    inside the image, a drawing of bounded cost; [] when nothing of it is inside the window.
    `ItemProblem` for a coordinate that is no finite number (a turned box whose corners left
    float's range)."""
    points = np.asarray(flat, dtype=np.float64).reshape(-1, 2)
    reach = float(REACH * max(height, width))
    low, high = np.array([-reach, -reach]), np.array([width + reach, height + reach])
    if not np.isfinite(points).all():
        raise ItemProblem("its outline's coordinates are not finite numbers")
    if ((points >= low) & (points <= high)).all():
        return flat
    for axis in (0, 1):
        for bound, keeps in ((low[axis], np.greater_equal), (high[axis], np.less_equal)):
            following = np.roll(points, -1, axis=0)
            kept, next_kept = keeps(points[:, axis], bound), keeps(following[:, axis], bound)
            with np.errstate(divide="ignore", invalid="ignore"):  # halves: no overflow at 1e308
                share = (bound / 2 - points[:, axis] / 2) / (following[:, axis] / 2 - points[:, axis] / 2)
            share = np.where(kept != next_kept, share, 0.0)[:, None]
            crossing = points * (1 - share) + following * share
            crossing[:, axis] = bound
            # each edge gives its start (if kept) and its crossing of the bound (if it crosses)
            points = np.stack([points, crossing], axis=1)[np.stack([kept, kept != next_kept], axis=1)]
            if len(points) < 3:
                return []
    if not np.isfinite(points).all():
        raise ItemProblem("its outline's coordinates are not finite numbers")
    return points.ravel().tolist()


def coco_rle(rle: dict, height: int, width: int) -> np.ndarray:
    """Bool `(H, W)` from COCO RLE: `counts` a list (uncompressed) or a string (compressed)."""
    mask = coco_mask_module()
    if isinstance(rle["counts"], list):
        rle = mask.frPyObjects(rle, height, width)
    else:
        counts = rle["counts"].encode("ascii") if isinstance(rle["counts"], str) else rle["counts"]
        covered = sum(compressed_counts(counts))
        if covered != height * width:  # pycocotools would decode it from uninitialised memory
            raise ValueError(f"its runs cover {covered} pixels, a {width}x{height} mask has {height * width}")
        rle = {"size": list(rle["size"]), "counts": counts}
    return mask.decode(rle).view(bool)


def compressed_counts(text: bytes) -> list[int]:
    """The run lengths of COCO's compressed RLE string (pycocotools' `rleFrString`: 5 bits a
    character from "0", a sixth bit for "more", the third run on stored as the difference from the
    run two before), checked: pycocotools reads past the string's end and decodes runs that do
    not add up to the mask's size from uninitialised memory, so a damaged string gave a mask of
    noise. `ValueError` for a character outside the alphabet, a string that ends mid-number or a
    negative run."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise ValueError("the string ends inside a run length")
            code = text[position] - 48
            if not 0 <= code < 64:
                raise ValueError(f"character {chr(text[position])!r} is not in COCO's RLE alphabet")
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        if not 0 <= value < 2**32:
            raise ValueError(f"run {len(counts)} is {value} pixels long")
        counts.append(value)
    return counts


def runs(counts: Sequence[int], height: int, width: int, order: str = "C") -> np.ndarray:
    """Bool `(H, W)` from alternating run lengths that start with a run of 0s (CVAT's mask RLE:
    row-major, `order="C"`); the counts must cover the area exactly."""
    values = np.zeros(sum(counts), dtype=bool)
    position = 0
    for index, count in enumerate(counts):
        if index % 2:
            values[position : position + count] = True
        position += count
    return values.reshape((height, width), order=order)


# --- LabelMe: labelme.utils.shape_to_mask's rules ----------------------------------------------------


def labelme_shape(
    shape_type: str, points: np.ndarray, height: int, width: int, line_width: int = 10, point_size: int = 5
) -> np.ndarray:
    """Bool `(H, W)` of one LabelMe shape, drawn as labelme's `shape_to_mask` draws it."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    xy = [tuple(point) for point in points.tolist()]
    if shape_type == "circle":
        (cx, cy), (px, py) = xy
        radius = math.sqrt((cx - px) ** 2 + (cy - py) ** 2)
        draw.ellipse(((cx - radius, cy - radius), (cx + radius, cy + radius)), outline=1, fill=1)
    elif shape_type == "rectangle":
        (x0, y0), (x1, y1) = xy
        draw.rectangle(((min(x0, x1), min(y0, y1)), (max(x0, x1), max(y0, y1))), outline=1, fill=1)
    elif shape_type in ("line", "linestrip"):
        draw.line(xy=xy, fill=1, width=line_width)
    elif shape_type == "point":
        (cx, cy) = xy[0]
        draw.ellipse(
            ((cx - point_size, cy - point_size), (cx + point_size, cy + point_size)), outline=1, fill=1
        )
    else:  # polygon, oriented_rectangle
        draw.polygon(xy=xy, outline=1, fill=1)
    return np.asarray(canvas, dtype=bool)


# --- stacking -------------------------------------------------------------------------------------


def stack(height: int, width: int, layers: Sequence[tuple[int, np.ndarray]]) -> tuple[np.ndarray, int]:
    """Paint `(class index, bool mask)` layers in order on background 0, later on top; returns the
    class-index mask `(H, W)` uint8 and the number of pixels where a layer covered another class's.

    Each layer's pixels are found once (`flatnonzero`) and only they are touched: whole-image
    boolean arithmetic per layer took half of a 640x480 COCO import's time."""
    labels = np.zeros(height * width, dtype=np.uint8)
    if not layers:
        return labels.reshape(height, width), 0
    painted = np.zeros(height * width, dtype=bool)
    contested = np.zeros(height * width, dtype=bool)
    for label, pixels in layers:
        if pixels.shape != (height, width):
            raise ValueError(f"a layer of {pixels.shape} on a {height}x{width} mask")
        if pixels.flags.f_contiguous and not pixels.flags.c_contiguous:  # pycocotools' column order
            columns = np.flatnonzero(pixels.T)  # no copy: the transpose is row-major
            where = (columns % height) * width + columns // height
        else:
            where = np.flatnonzero(pixels)
        contested[where[painted[where] & (labels[where] != label)]] = True
        labels[where] = label
        painted[where] = True
    return labels.reshape(height, width), int(np.count_nonzero(contested))


# --- label PNGs (Cityscapes, ADE20K) ---------------------------------------------------------------


def label_item(root: Path, image: Path, mask: Path, split: str, table: np.ndarray, defined: str) -> Item:
    """`image` and its one-channel label PNG `mask` (both under `root`), whose values the (256,)
    lookup `table` maps to classes; a value it maps to `NOT_A_LABEL` is a problem naming what the
    values should be (`defined`, e.g. "ADE20K classes (0-150)")."""
    return Item(
        name=image.name,
        where=shown(mask.relative_to(root)),
        image=image,
        split=split,
        render=partial(mapped_labels, mask, table, defined),
    )


def mapped_labels(path: Path, table: np.ndarray, defined: str, height: int, width: int) -> np.ndarray:
    """The label PNG at `path` through `table`: `(H, W)` uint8 class indices."""
    values = label_values(path, height, width)
    mapped = table[values]
    if (mapped == NOT_A_LABEL).any():
        bad = sorted(np.unique(values[mapped == NOT_A_LABEL]).tolist())[:5]
        raise ItemProblem(f"values {bad} are not {defined}")
    return mapped.astype(np.uint8)


def label_values(path: Path, height: int, width: int) -> np.ndarray:
    """A one-channel label PNG `(H, W)` uint8 (Cityscapes, ADE20K), checked against the image's size."""
    if not path.is_file():  # found by a glob: a FIFO named like a mask blocked Pillow's open forever
        raise ItemProblem("not a regular file (a named pipe, a device?)")
    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "P", "I", "I;16"):
                raise ItemProblem(f"mode {image.mode}: expected one channel of label ids")
            values = np.asarray(image)
    except UNREADABLE as error:
        raise ItemProblem(f"cannot read ({error})") from None
    if values.shape != (height, width):
        raise ItemProblem(f"mask is {values.shape[1]}x{values.shape[0]}, the image {width}x{height}")
    if values.max(initial=0) > 255 or values.min(initial=0) < 0:
        raise ItemProblem(f"values up to {int(values.max())}: not label ids")
    return values.astype(np.uint8)
