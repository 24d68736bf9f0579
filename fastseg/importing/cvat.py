"""CVAT's two exports that carry masks.

- "Segmentation mask 1.1" (a folder): `labelmap.txt` (`name:R,G,B:parts:actions` lines; the
  colours are the classes'), `SegmentationClass/NAME.png` colour masks, `ImageSets/Segmentation/
  SUBSET.txt` lists and, when saved with images, `JPEGImages/`. A colour no label has is a problem.
- "CVAT for images 1.1" (`annotations.xml`, or a folder holding it and `images/`): polygons, boxes
  and ellipses (both turned about their centre by `rotation` degrees), masks (CVAT's RLE: run
  lengths over the mask's box, row by row, starting with a run of 0s), painted by `z_order` and
  then in file order, as CVAT draws them; polylines, points and tags have no area and are skipped
  with a note. Label colours (`#rrggbb`) are the classes'.

A label named `background` is class 0; otherwise the background (black) is added as class 0.
Subsets named train / val(idation) / test become the splits.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from fastseg.classes import Colour
from fastseg.errors import clipped, quoted
from fastseg.imaging.images import IMAGE_SUFFIXES
from fastseg.importing import raster
from fastseg.importing.source import (
    BACKGROUND,
    Item,
    ItemProblem,
    Layer,
    ReadOptions,
    Source,
    image_under,
    listed_lines,
    shown,
)
from fastseg.paths import UNUSABLE_PATH, path_problem

SUBSETS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
AREALESS = ("polyline", "points", "tag", "skeleton", "cuboid")


def read(path: Path, options: ReadOptions) -> Source:
    if path.is_file() and path.suffix.lower() == ".xml":
        return _read_xml(path, options)
    if (path / "labelmap.txt").is_file():
        return _read_masks(path, options)
    if (path / "annotations.xml").is_file():
        return _read_xml(path / "annotations.xml", options)
    return Source(
        [BACKGROUND],
        [],
        problems=[
            f"{shown(path)}: neither a CVAT mask export (labelmap.txt) nor a CVAT XML (annotations.xml)"
        ],
    )


def _with_background(names: list[str], colors: list[Colour]) -> tuple[list[str], list[Colour]]:
    if BACKGROUND in names:
        at = names.index(BACKGROUND)
        return [names[at], *names[:at], *names[at + 1 :]], [colors[at], *colors[:at], *colors[at + 1 :]]
    return [BACKGROUND, *names], [(0, 0, 0), *colors]


# --- Segmentation mask 1.1 ------------------------------------------------------------------------


def _labelmap(path: Path, problems: list[str]) -> tuple[list[str], list[Colour]]:
    names: list[str] = []
    colors: list[Colour] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        problems.append(f"{shown(path)}: cannot read ({shown(error)})")
        return names, colors
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(":")
        try:
            colour = tuple(int(value) for value in fields[1].split(","))
        except (IndexError, ValueError):
            colour = ()
        if (
            len(fields) < 2
            or not fields[0]
            or len(colour) != 3
            or not all(0 <= value <= 255 for value in colour)
        ):
            problems.append(
                f"{shown(path)}:{number}: expected name:R,G,B[:parts:actions], got {quoted(shown(line))}"
            )
            continue
        if fields[0] in names:
            problems.append(f"{shown(path)}:{number}: label {quoted(shown(fields[0]))} is given twice")
            continue
        names.append(fields[0])
        colors.append(colour)  # type: ignore[arg-type]
    repeated = sorted({colour for colour in colors if colors.count(colour) > 1})
    if repeated:
        problems.append(f"{shown(path)}: colour {list(repeated[0])} is given to more than one label")
    return names, colors


def _read_masks(root: Path, options: ReadOptions) -> Source:
    problems: list[str] = []
    names, colors = _with_background(*_labelmap(root / "labelmap.txt", problems))
    codes = {colour: index for index, colour in enumerate(colors)}
    masks = root / "SegmentationClass"
    subsets: dict[str, str | None] = {}
    for listing in sorted((root / "ImageSets" / "Segmentation").glob("*.txt")):
        if not listing.is_file():  # a FIFO named like a list blocked its read forever
            problems.append(f"{shown(listing)}: not a regular file")
            continue
        for line in listed_lines(listing, problems):
            if line.strip():
                subsets.setdefault(line.strip(), SUBSETS.get(listing.stem.lower()))
    if not subsets:
        subsets = {path.stem: None for path in sorted(masks.glob("*.png"))}
    images_dir = options.images or root / "JPEGImages"
    items = []
    for stem, split in subsets.items():
        where = f"{shown(stem)}"
        mask = masks / f"{stem}.png"
        try:
            leaves = not mask.resolve().is_relative_to(masks.resolve())
            image = None if leaves else _find_image(images_dir, stem)
            present = not leaves and mask.is_file()
        except UNUSABLE_PATH as error:  # a name over the file system's limit, a link loop
            problems.append(f"{where}: the name cannot be used ({path_problem(error)})")
            continue
        if leaves:
            problems.append(f"{where}: the name leaves SegmentationClass/; list names of files in it")
            continue
        if not present:
            problems.append(f"{where}: no mask {shown(mask)}")
            continue
        if image is None:
            problems.append(
                f"{where}: no image {shown(stem)}.* in {shown(images_dir)} (export with images, "
                "or point --images at them)"
            )
            continue
        items.append(
            Item(
                name=image.name,
                where=f"{shown(mask)}",
                image=image,
                split=split,
                render=partial(_colour_mask, mask, codes),
            )
        )
    if not items and not problems:
        problems.append(f"{shown(root)}: no masks in SegmentationClass/")
    return Source(names, items, colors=colors, problems=problems)


def _find_image(folder: Path, stem: str) -> Path | None:
    candidates = [folder / f"{stem}{suffix}" for suffix in sorted(IMAGE_SUFFIXES)]
    candidates += [folder / f"{stem}{suffix.upper()}" for suffix in sorted(IMAGE_SUFFIXES)]
    inside = [path for path in candidates if path.resolve().is_relative_to(folder.resolve())]
    return next((path for path in inside if path.is_file()), None)


def _colour_mask(path: Path, codes: dict[Colour, int], height: int, width: int) -> np.ndarray:
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except raster.UNREADABLE as error:
        raise ItemProblem(f"cannot read the mask ({error})") from None
    if pixels.shape[:2] != (height, width):
        raise ItemProblem(f"mask is {pixels.shape[1]}x{pixels.shape[0]}, the image {width}x{height}")
    packed = pixels[..., 0].astype(np.int32) << 16 | pixels[..., 1].astype(np.int32) << 8 | pixels[..., 2]
    found, inverse = np.unique(packed, return_inverse=True)
    table = np.full(len(found), -1, dtype=np.int32)
    for position, code in enumerate(found.tolist()):
        table[position] = codes.get((code >> 16, code >> 8 & 255, code & 255), -1)
    unknown = [found[position] for position in np.flatnonzero(table < 0)]
    if unknown:
        shown_colours = ", ".join(f"({code >> 16}, {code >> 8 & 255}, {code & 255})" for code in unknown[:3])
        raise ItemProblem(f"colours {shown_colours} are no label's in labelmap.txt")
    return table[inverse.reshape(height, width)].astype(np.uint8)


# --- CVAT for images 1.1 XML ----------------------------------------------------------------------


def _read_xml(path: Path, options: ReadOptions) -> Source:
    problems: list[str] = []
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        return Source([BACKGROUND], [], problems=[f"{shown(path)}: not valid XML ({error})"])
    except OSError as error:
        return Source([BACKGROUND], [], problems=[f"{shown(path)}: cannot read ({shown(error)})"])
    if root.tag != "annotations":
        return Source([BACKGROUND], [], problems=[f"{shown(path)}: not a CVAT XML (root <{root.tag}>)"])
    names, colors = [], []
    meta = root.find("meta")
    for label in meta.iter("label") if meta is not None else []:
        name = (label.findtext("name") or "").strip()
        if not name or name in names:
            continue
        names.append(name)
        colors.append(_hex_colour(label.findtext("color")))
    if not names:
        problems.append(f"{shown(path)}: no labels in <meta>")
    names, colors = _with_background(names, colors)
    images_dir = options.images or path.parent / "images"
    items, skipped = [], 0
    for number, image in enumerate(root.iter("image")):
        where = f"{shown(path.name)}: image {clipped(shown(image.get('name', f'#{number}')))}"
        try:
            width, height = int(image.get("width", "")), int(image.get("height", ""))
        except ValueError:
            problems.append(f"{where}: width and height must be whole numbers")
            continue
        located = (
            image_under(images_dir, image.get("name", ""), where, problems) if image.get("name") else None
        )
        if located is None:
            if not image.get("name"):
                problems.append(f"{where}: no name")
            continue
        item = Item(
            name=located.name,
            where=where,
            image=located,
            size=(width, height),
            split=SUBSETS.get((image.get("subset") or "").lower()),
        )
        shapes = sorted(enumerate(image), key=lambda pair: (_z_order(pair[1]), pair[0]))
        for index, shape in shapes:
            if shape.tag in AREALESS:
                skipped += 1
                continue
            layer = _layer(shape, f"{where} {shape.tag} {index}", names, problems)
            if layer is not None:
                item.layers.append(layer)
        items.append(item)
    notes = [f"{skipped} shape(s) without area (polylines, points, tags) skipped"] if skipped else []
    return Source(names, items, colors=colors, problems=problems, notes=notes)


def _hex_colour(text: str | None) -> Colour:
    text = (text or "").strip().lstrip("#")
    try:
        value = int(text, 16) if len(text) == 6 else -1
    except ValueError:
        value = -1
    return (value >> 16, value >> 8 & 255, value & 255) if value >= 0 else (0, 0, 0)


def _z_order(shape: ElementTree.Element) -> int:
    try:
        return int(shape.get("z_order", "0"))
    except ValueError:
        return 0


def _floats(
    shape: ElementTree.Element, keys: tuple[str, ...], where: str, problems: list[str]
) -> list[float] | None:
    try:
        values = [float(shape.get(key) or _OPTIONAL.get(key, "")) for key in keys]
    except ValueError:
        problems.append(f"{where}: {', '.join(keys)} must be numbers")
        return None
    if not all(math.isfinite(value) for value in values):
        problems.append(f"{where}: {', '.join(keys)} must be finite numbers")
        return None
    return values


def _layer(shape: ElementTree.Element, where: str, names: list[str], problems: list[str]) -> Layer | None:
    if shape.tag not in ("polygon", "mask", *_OUTLINED):  # an XInclude, a wrapper: no label to name
        problems.append(f"{where}: <{shown(shape.tag)}> is not a CVAT shape")
        return None
    label = shape.get("label")
    if label is None:
        problems.append(f"{where}: no label (a CVAT shape names its label)")
        return None
    if label not in names:
        problems.append(f"{where}: label {quoted(shown(label))} is not declared in <meta>")
        return None
    where = f"{where} ({clipped(shown(label))})"
    if shape.tag == "polygon":
        try:
            points = np.array(
                [[float(value) for value in pair.split(",")] for pair in shape.get("points", "").split(";")]
            )
        except ValueError:  # "1,2,3;;x": no x,y numbers (was told as "0 point(s)")
            points = None
        if points is None or points.ndim != 2 or points.shape[1:] != (2,) or not np.isfinite(points).all():
            problems.append(f"{where}: points must be 'x,y;x,y;...'")
            return None
        if len(points) < 3:
            problems.append(f"{where}: polygon has {len(points)} point(s); a polygon needs at least 3")
            return None
        return Layer(label, partial(_polygon, points.ravel().tolist()), where, points)
    if shape.tag in _OUTLINED:
        attributes, outline_of = _OUTLINED[shape.tag]
        values = _floats(shape, attributes, where, problems)
        if values is None:
            return None
        outline, points = outline_of(*values)
        return Layer(label, partial(_polygon, outline.ravel().tolist()), where, points)
    return _mask(shape, label, where, problems)


def _box(x0: float, y0: float, x1: float, y1: float, rotation: float) -> tuple[np.ndarray, np.ndarray]:
    """A box's outline `(4, 2)`: its corners turned by `rotation` degrees about its centre, as
    CVAT turns them (its RotatedBoxesToPolygons; the same turn as `_ellipse`). Checked against the
    image: an upright box's corners; a turned box's centre, as an ellipse's (its turned corners
    may leave the image, as CVAT lets them, and are cut off when drawn)."""
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    if rotation == 0:
        return corners, corners
    # halves first: corners at +-1e308 summed to inf (a centre of "inf", a warning on stderr)
    angle, centre = math.radians(rotation), np.array([x0 / 2 + x1 / 2, y0 / 2 + y1 / 2])
    turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    with np.errstate(over="ignore", invalid="ignore"):  # corners past float's range: named when drawn
        return (corners - centre) @ turn.T + centre, centre[None]


def _ellipse(cx: float, cy: float, rx: float, ry: float, rotation: float) -> tuple[np.ndarray, np.ndarray]:
    """An ellipse's outline, turned by `rotation` degrees, as a 72-gon `(72, 2)`; the point
    checked is its centre."""
    angle = math.radians(rotation)
    steps = np.linspace(0, 2 * math.pi, 72, endpoint=False)
    x, y = rx * np.cos(steps), ry * np.sin(steps)
    outline = np.stack(
        [cx + x * math.cos(angle) - y * math.sin(angle), cy + x * math.sin(angle) + y * math.cos(angle)],
        axis=1,
    )
    return outline, np.array([[cx, cy]])


# The shapes drawn as a polygon from numeric attributes: tag -> (attributes, the function giving
# the outline and the points `Layer` checks from their values).
_OUTLINED = {
    "box": (("xtl", "ytl", "xbr", "ybr", "rotation"), _box),
    "ellipse": (("cx", "cy", "rx", "ry", "rotation"), _ellipse),
}
_OPTIONAL = {"rotation": "0"}  # an attribute CVAT leaves out (or empty) for its default


def _mask(shape: ElementTree.Element, label: str, where: str, problems: list[str]) -> Layer | None:
    box = _floats(shape, ("left", "top", "width", "height"), where, problems)
    try:
        counts = [int(value) for value in (shape.get("rle") or "").split(",")]
    except ValueError:
        counts = [-1]
    if box is None:
        return None
    left, top, width, height = (int(value) for value in box)
    if any(count < 0 for count in counts) or sum(counts) != width * height or width < 1 or height < 1:
        problems.append(f"{where}: rle must be run lengths covering its {width}x{height} box")
        return None
    corners = np.array([[left, top], [left + width, top + height]], dtype=np.float64)
    # unpacked when drawn, after `corners` are checked against the image: a huge box is a problem
    # then, not gigabytes taken while the XML is read
    return Layer(label, partial(_placed, (counts, height, width), left, top), where, corners)


def _polygon(flat: list[float], height: int, width: int) -> np.ndarray:
    return raster.polygons([flat], height, width)


def _placed(runs: tuple[list[int], int, int], left: int, top: int, height: int, width: int) -> np.ndarray:
    """The mask's runs unpacked into its box at (left, top), cut off at the image's edges (a box
    may start a pixel before them, within `EDGE_TOLERANCE`, as it may end a pixel past them)."""
    pixels = raster.runs(*runs)
    mask = np.zeros((height, width), dtype=bool)
    first_row, first_column = max(0, -top), max(0, -left)
    bottom, right = min(height, top + pixels.shape[0]), min(width, left + pixels.shape[1])
    if bottom > max(0, top) and right > max(0, left):
        mask[max(0, top) : bottom, max(0, left) : right] = pixels[
            first_row : first_row + bottom - max(0, top), first_column : first_column + right - max(0, left)
        ]
    return mask
