"""What every format's reader produces: the classes, and per image the shapes to draw (or the mask
to map), with every problem of the export collected rather than raised, so the import can name
them all at once and write nothing.

A reader never draws and never opens an image: the writer (`fastseg.importing.writer`) does both
once it knows each image's true, EXIF-upright size, which the shapes are checked against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from fastseg.classes import Colour
from fastseg.errors import DatasetError, quoted, shown
from fastseg.paths import UNUSABLE_PATH, path_problem

BACKGROUND = "background"
EDGE_TOLERANCE = 1.0  # pixels a vertex may lie beyond the image's edge before it is "outside"


class ImportProblems(DatasetError):
    """An export that cannot be imported: every problem found, one line each."""


class ItemProblem(Exception):
    """Raised by an item's `render` for a mask it cannot map (an unknown value or colour)."""


@dataclass
class Layer:
    """One annotation to paint: `label` is a class name (None: void, as COCO's crowd regions),
    `draw(height, width)` its pixels as a bool `(H, W)` array. `points` `(N, 2)` in pixels, when
    the shape has vertices, are checked against the image's size before drawing."""

    label: str | None
    draw: Callable[[int, int], np.ndarray]
    where: str
    points: np.ndarray | None = None


@dataclass
class Item:
    """One image of the export. `name` is its file name in the data set (stems are unique);
    `image` the file, or `image_bytes` when the export embeds the picture (LabelMe's imageData);
    `size` the (width, height) the annotation declares; `split` the export's own split if it has
    one. Shapes come as `layers`, or an already drawn mask through `render(height, width)` ->
    class-index `(H, W)` uint8 (void 255), raising `ItemProblem`."""

    name: str
    where: str
    image: Path | None = None
    image_bytes: bytes | None = None
    # the embedded picture read again when the image is written (`image_bytes` is then filled
    # for that call only): bytes held from the read on would take memory in proportion to the export
    embedded: Callable[[], bytes] | None = None
    size: tuple[int, int] | None = None
    split: str | None = None
    layers: list[Layer] = field(default_factory=list)
    render: Callable[[int, int], np.ndarray] | None = None


@dataclass
class Source:
    """A read export. `names[0]` is the background (what no shape covers); `colors`, when the
    export declares them, one per name. `fixed_classes`: the data set's classes are its definition
    (Cityscapes, ADE20K), so `--classes` does not apply."""

    names: list[str]
    items: list[Item]
    colors: list[Colour] | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fixed_classes: bool = False


def declared_names(labels: Iterable[str]) -> list[str]:
    """Background first, then the labels in sorted order (the same classes whatever order the
    files are listed in)."""
    found = sorted({label for label in labels if label != BACKGROUND})
    return [BACKGROUND, *found]


JSON_NUMBERS = {int, float}  # the types json gives a number: bool is an int to Python, not one


def numbers(values: object) -> np.ndarray | None:
    """float64 array of a JSON list of numbers, or of lists of numbers (one level down); None when
    anything in it is no JSON number. The one place every reader turns an export's coordinates
    into numbers: `true` / `false` are no 1 / 0 (bool is an int to Python), a string "3" is no 3
    (numpy would parse it), null, a dict or a number past float's range (an OverflowError) none."""
    if not isinstance(values, list):
        return None
    kinds = set(map(type, values))
    if not kinds <= JSON_NUMBERS and not (
        kinds == {list} and all(set(map(type, inner)) <= JSON_NUMBERS for inner in values)
    ):
        return None
    try:
        return np.asarray(values, dtype=np.float64)
    except (OverflowError, ValueError):  # past float's range; lists of different lengths
        return None


def polygon_points(
    values: object, where: str, problems: list[str], scale: tuple[float, float] = (1, 1), flat: bool = True
) -> np.ndarray | None:
    """`(N, 2)` float pixel coordinates from a flat [x1, y1, x2, y2, ...] list (`flat`) or a list
    of [x, y] pairs, scaled by (sx, sy); None (and a problem) when it is not a polygon."""
    points = numbers(values)
    if points is None:
        problems.append(f"{where}: polygon coordinates are not numbers")
        return None
    if flat:
        if points.ndim != 1 or points.size % 2:
            problems.append(f"{where}: polygon has {points.size} coordinates; expected x, y pairs")
            return None
        points = points.reshape(-1, 2)
    elif points.ndim != 2 or points.shape[1] != 2:
        problems.append(f"{where}: polygon points are not [x, y] pairs")
        return None
    if not np.isfinite(points).all():
        problems.append(f"{where}: polygon coordinates are not finite numbers")
        return None
    if len(points) < 3:
        problems.append(f"{where}: polygon has {len(points)} point(s); a polygon needs at least 3")
        return None
    return points * np.asarray(scale, dtype=np.float64)


def outside(points: np.ndarray, width: int, height: int) -> str | None:
    """Why `points` do not fit a `width` x `height` image (a vertex more than `EDGE_TOLERANCE`
    beyond an edge: the tools clip to the image, so such a vertex means another image or another
    orientation), or None."""
    low = -EDGE_TOLERANCE
    bad = (
        (points[:, 0] < low)
        | (points[:, 0] > width + EDGE_TOLERANCE)
        | (points[:, 1] < low)
        | (points[:, 1] > height + EDGE_TOLERANCE)
    )
    if not bad.any():
        return None
    x, y = points[np.flatnonzero(bad)[0]]
    return f"point ({x:g}, {y:g}) lies outside the {width}x{height} image"


def image_under(base: Path, relative: str, where: str, problems: list[str]) -> Path | None:
    """`relative` (a name from the export, Windows or POSIX separators) under `base`; a path that
    leaves `base` (`../`, absolute) is a problem, never followed."""
    parts = PureWindowsPath(relative).as_posix() if "\\" in relative else relative
    candidate = base / PurePosixPath(parts)
    try:  # a NUL byte, a name longer than the file system takes: a problem here, not an OSError later
        leaves = PurePosixPath(parts).is_absolute() or not candidate.resolve().is_relative_to(base.resolve())
        candidate.exists()  # raises for what pathlib does not read as "no such file"
    except UNUSABLE_PATH as error:
        problems.append(
            f"{where}: image path {quoted(shown(relative))} cannot be used ({path_problem(error)})"
        )
        return None
    if leaves:
        problems.append(
            f"{where}: image path {quoted(shown(relative))} leaves {shown(base)}; images must lie under it"
        )
        return None
    return candidate


def listed_lines(path: Path, problems: list[str]) -> list[str]:
    """The lines of one of the export's lists of names (CVAT's ImageSets, a YOLO split's .txt),
    bytes that are not UTF-8 replaced (such a name matches no file, and is named so). A list that
    cannot be read (permissions, an I/O error) is a problem listed with the others, not an OSError."""
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        problems.append(f"{shown(path)}: cannot read ({error.strerror or shown(error)})")
        return []


@dataclass(frozen=True)
class ReadOptions:
    """What a reader may need besides the export's path (each format uses its own)."""

    images: Path | None = None  # --images: where the export's image files are
    crowd_as_class: bool = False  # COCO: iscrowd regions keep their class instead of void
    line_width: int = 10  # LabelMe lines and linestrips: labelme's own default width


MAX_EXPORT_BYTES = 2 * 1024**3  # an export, not a config: COCO's own train2017 JSON is 448 MB


def read_json(path: Path, what: str, problems: list[str]) -> object | None:
    """An export's JSON through the one strict loader (`fastseg.structured_files`); a file that is
    not JSON is a problem (listed with the others), not an exception."""
    from fastseg.structured_files import StructuredFileError, load_json

    try:
        return load_json(path, what, max_bytes=MAX_EXPORT_BYTES)
    except StructuredFileError as error:
        problems.append(str(error))
        return None
