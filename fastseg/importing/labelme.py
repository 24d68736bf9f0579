"""LabelMe: a folder (searched recursively) of LabelMe JSON files, one per image.

Shapes are drawn by labelme's own rules (`labelme.utils.shape_to_mask`, see `raster.labelme_shape`):
polygons, rectangles, circles, lines and linestrips (`--line-width`, labelme's default 10),
oriented rectangles and labelme 5's `mask` shapes (a PNG inside its box); points are skipped with
a note (a point has no area). The image is `imageData` when embedded, else `imagePath` beside the
JSON file. `group_id`, `flags` and `description` are ignored. labelme2voc's conventions hold:
`_background_` is the background, `__ignore__` is void.
"""

from __future__ import annotations

import base64
import binascii
import io
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from fastseg.importing import raster
from fastseg.importing.source import (
    BACKGROUND,
    MAX_EXPORT_BYTES,
    Item,
    ItemProblem,
    Layer,
    ReadOptions,
    Source,
    declared_names,
    image_under,
    numbers,
    polygon_points,
    read_json,
    shown,
)
from fastseg.paths import UNREADABLE_FOLDER, walk
from fastseg.structured_files import StructuredFileError, load_json

TWO_POINTS = ("rectangle", "circle", "line")
POLYGONS = ("polygon", "oriented_rectangle", None)
SHAPES = (*TWO_POINTS, *POLYGONS, "linestrip", "point", "points", "mask")
ALIASES = {"_background_": BACKGROUND, "__ignore__": None}


def read(path: Path, options: ReadOptions) -> Source:
    problems: list[str] = []
    if path.is_file():
        files, root = [path], path.parent
    else:
        # hidden files and folders are no labeller's: an import's own marker and temporary folder
        unreadable: list[Path] = []
        found = sorted(file for file in walk(path, unreadable) if file.name.endswith(".json"))
        files, root = [file for file in found if not _hidden(file, path)], path
        problems += [f"{shown(folder)}: {UNREADABLE_FOLDER}" for folder in unreadable]
    if not files:
        problems.append(f"{shown(path)}: no LabelMe .json files here")
    items, labels, points = [], set(), 0
    for file in files:
        where = shown(file.relative_to(root) if file.is_relative_to(root) else file)
        data = read_json(file, "LabelMe JSON", problems)
        if data is None:
            continue
        if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
            problems.append(f"{where}: not a LabelMe file (no 'shapes' list)")
            continue
        item = _item(file, root, data, where, problems)
        if item is None:
            continue
        for number, shape in enumerate(data["shapes"]):
            layer = _layer(shape, f"{where}: shape {number}", options.line_width, problems)
            if layer == "point":
                points += 1
            elif layer is not None:
                item.layers.append(layer)
                if layer.label is not None:
                    labels.add(layer.label)
        items.append(item)
    notes = [f"{points} point shape(s) skipped: a point has no area to label"] if points else []
    return Source(declared_names(labels), items, problems=problems, notes=notes)


def _embedded(file: Path) -> bytes:
    """`file`'s imageData, read again when its image is written (not held from the read on)."""
    try:
        data = load_json(file, "LabelMe JSON", max_bytes=MAX_EXPORT_BYTES)
        return base64.b64decode(data["imageData"], validate=True)
    except (StructuredFileError, binascii.Error, ValueError, TypeError, KeyError):
        raise ItemProblem("its imageData cannot be read again (did the file change meanwhile?)") from None


def _hidden(file: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in file.relative_to(root).parts)


def _item(file: Path, root: Path, data: dict[str, Any], where: str, problems: list[str]) -> Item | None:
    width, height = data.get("imageWidth"), data.get("imageHeight")
    size = (
        (width, height) if type(width) is int and type(height) is int and width > 0 and height > 0 else None
    )
    if size is None and (width is not None or height is not None):
        problems.append(f"{where}: imageWidth and imageHeight must be positive whole numbers")
        return None
    image_path = data.get("imagePath")
    embedded = data.get("imageData")
    if embedded:
        try:
            base64.b64decode(embedded, validate=True)  # checked now, decoded again when written
        except (binascii.Error, ValueError, TypeError):
            problems.append(f"{where}: imageData is not base64")
            return None
        stem = Path(str(image_path or file.name).replace("\\", "/")).stem or file.stem
        return Item(name=f"{stem}.img", where=where, embedded=partial(_embedded, file), size=size)
    if not isinstance(image_path, str) or not image_path:
        problems.append(f"{where}: neither imageData nor imagePath names the image")
        return None
    # beside the JSON, or anywhere under SOURCE (`../images/a.jpg` from an annotations folder), never outside
    beside = PurePosixPath(file.parent.relative_to(root).as_posix()) / image_path.replace("\\", "/")
    located = image_under(root, str(beside), where, problems)
    if located is None:
        return None
    return Item(name=located.name, where=where, image=located, size=size)


def _layer(shape: Any, where: str, line_width: int, problems: list[str]) -> Layer | str | None:
    if not isinstance(shape, dict) or not isinstance(shape.get("label"), str):
        problems.append(f"{where}: a shape needs a 'label' and 'points'")
        return None
    kind = shape.get("shape_type", "polygon")
    label = ALIASES.get(shape["label"], shape["label"])
    where = f"{where} ({shown(shape['label'])}, {kind})"
    if kind not in SHAPES:
        problems.append(f"{where}: shape type {shown(kind)!r} is not one LabelMe writes")
        return None
    if kind in ("point", "points"):
        return "point"
    if kind in POLYGONS:
        points = polygon_points(shape.get("points"), where, problems, flat=False)
    else:
        points = _pairs(shape.get("points"), where, problems)
        if points is not None and kind in TWO_POINTS and len(points) != 2:
            problems.append(f"{where}: a {kind} has 2 points, this one {len(points)}")
            points = None
        elif points is not None and kind in ("linestrip", "mask") and len(points) < 2:
            problems.append(f"{where}: a {kind} needs at least 2 points")
            points = None
    if points is None:
        return None
    if kind == "mask":
        return _mask_layer(label, shape.get("mask"), points, where, problems)
    return Layer(label, partial(_shape, kind or "polygon", points, line_width), where, points)


def _shape(kind: str, points: np.ndarray, line_width: int, height: int, width: int) -> np.ndarray:
    return raster.labelme_shape(kind, points, height, width, line_width)


def _pairs(values: Any, where: str, problems: list[str]) -> np.ndarray | None:
    points = numbers(values)
    if points is None or points.ndim != 2 or points.shape[1] != 2 or not np.isfinite(points).all():
        problems.append(f"{where}: points must be [x, y] pairs of numbers")
        return None
    return points


def _mask_layer(
    label: str | None, encoded: Any, points: np.ndarray, where: str, problems: list[str]
) -> Layer | None:
    """labelme 5's mask shape: a PNG of the box from its first point to its second, inclusive."""
    try:
        with Image.open(io.BytesIO(base64.b64decode(encoded, validate=True))) as image:
            pixels = np.asarray(image).astype(bool)
    except (binascii.Error, TypeError, *raster.UNREADABLE):
        problems.append(f"{where}: its 'mask' is not a base64 PNG")
        return None
    if pixels.ndim == 3:
        pixels = pixels.any(axis=2)
    (x1, y1), (x2, y2) = np.asarray(points[:2]).astype(int)
    if pixels.shape != (y2 - y1 + 1, x2 - x1 + 1):
        problems.append(
            f"{where}: its mask is {pixels.shape[1]}x{pixels.shape[0]}, its box {x2 - x1 + 1}x{y2 - y1 + 1}"
        )
        return None
    return Layer(label, partial(_placed, pixels, int(x1), int(y1)), where, points[:2].astype(float))


def _placed(pixels: np.ndarray, left: int, top: int, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    if left < 0 or top < 0 or top + pixels.shape[0] > height or left + pixels.shape[1] > width:
        raise ItemProblem(f"a mask shape at ({left}, {top}) does not fit the {width}x{height} image")
    mask[top : top + pixels.shape[0], left : left + pixels.shape[1]] = pixels
    return mask
