"""YOLO segmentation (ultralytics' format): a `data.yaml` naming the classes and the split folders
(or .txt lists of images), and per image a `labels/.../NAME.txt` of lines
`class x1 y1 x2 y2 ...`, coordinates normalised to 0-1 (ultralytics' documented polygon format).

The background is added as class 0, so YOLO class k becomes class k + 1 (a YOLO class named
`background` is class 0 itself). An image without a label file is all background, as ultralytics
reads it. The YAML's train / val / test splits are kept. Polygons are drawn by pycocotools at the
image's pixel size (ultralytics draws with OpenCV's fillPoly; the two can differ on border pixels).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from fastseg.errors import quoted
from fastseg.imaging.images import IMAGE_SUFFIXES
from fastseg.importing import raster
from fastseg.importing.source import (
    BACKGROUND,
    MAX_EXPORT_BYTES,
    Item,
    Layer,
    ReadOptions,
    Source,
    listed_lines,
    shown,
)
from fastseg.paths import UNREADABLE_FOLDER, UNUSABLE_PATH, path_problem, walk
from fastseg.structured_files import StructuredFileError, load_yaml, read_utf8

NORMALISED_TOLERANCE = 1e-3  # rounding in exporters: 1.0004 is the edge, 1.2 another image


def read(path: Path, options: ReadOptions) -> Source:
    problems: list[str] = []
    yaml_file = _yaml_file(path, problems)
    if yaml_file is None:
        return Source([BACKGROUND], [], problems=problems)
    try:
        data = load_yaml(yaml_file, "YOLO data.yaml")
    except StructuredFileError as error:
        return Source([BACKGROUND], [], problems=[str(error)])
    if not isinstance(data, dict):
        return Source([BACKGROUND], [], problems=[f"{shown(yaml_file)}: not a YOLO data.yaml (a mapping)"])
    names = _names(data.get("names"), yaml_file, problems)
    root = yaml_file.parent
    if isinstance(data.get("path"), str) and data["path"]:
        given = Path(data["path"])
        candidate = given if given.is_absolute() else root / given
        try:
            root = candidate if candidate.is_dir() else root
        except UNUSABLE_PATH as error:  # a name past the file system's limit, a link loop
            problems.append(f"{shown(yaml_file)}: path: {quoted(shown(data['path']))} cannot be used "
                            f"({path_problem(error)})")  # fmt: skip
    if options.images is not None:
        root = options.images
    items: list[Item] = []
    for split in ("train", "val", "test"):
        for image in _split_images(root, data.get(split), split, yaml_file, problems):
            label_file = _label_path(image)
            item = Item(name=image.name, where=shown(image), image=image, split=split)
            # none: all background, as ultralytics reads it; a folder or a FIFO there is a problem
            if label_file is not None and (label_file.exists() or label_file.is_symlink()):
                _read_labels(label_file, names, item, problems)
            items.append(item)
    return Source([BACKGROUND, *[name for name in names if name != BACKGROUND]], items, problems=problems)


def _yaml_file(path: Path, problems: list[str]) -> Path | None:
    if path.is_file():
        return path
    found = [path / "data.yaml"] if (path / "data.yaml").is_file() else sorted(path.glob("*.yaml"))
    if len(found) != 1:
        problems.append(f"{shown(path)}: name the YOLO data.yaml ({len(found)} .yaml files here)")
        return None
    return found[0]


def _names(names: Any, yaml_file: Path, problems: list[str]) -> list[str]:
    if (
        isinstance(names, dict)
        and all(type(key) is int for key in names)
        and sorted(names) == list(range(len(names)))
    ):
        names = [names[index] for index in range(len(names))]
    if not isinstance(names, list) or not names or not all(isinstance(name, str) and name for name in names):
        problems.append(f"{shown(yaml_file)}: names must list the classes (a list, or {{0: name, 1: name}})")
        return []
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        problems.append(f"{shown(yaml_file)}: names {', '.join(map(shown, repeated))} given twice")
    return [str(name) for name in names]


def _split_images(root: Path, given: Any, split: str, yaml_file: Path, problems: list[str]) -> list[Path]:
    if given is None:
        return []
    entries = given if isinstance(given, list) else [given]
    images: list[Path] = []
    for entry in entries:
        if not isinstance(entry, str):
            problems.append(f"{shown(yaml_file)}: {split}: expected a folder or a .txt list")
            continue
        location = Path(entry) if Path(entry).is_absolute() else root / entry
        try:
            listed = location.suffix == ".txt" and location.is_file()
            kind = "folder" if location.is_dir() else "list" if listed else None
        except UNUSABLE_PATH as error:  # a name past the file system's limit, a link loop
            reason = path_problem(error)
            problems.append(f"{shown(yaml_file)}: {split}: {quoted(shown(entry))} cannot be used ({reason})")
            continue
        if kind == "folder":
            unreadable: list[Path] = []
            walked = walk(location, unreadable)
            images += sorted(path for path in walked if path.suffix.lower() in IMAGE_SUFFIXES)
            problems += [f"{shown(folder)}: {UNREADABLE_FOLDER}" for folder in unreadable]
        elif kind == "list":
            for line in listed_lines(location, problems):
                if line.strip():
                    listed = Path(line.strip())
                    images.append(listed if listed.is_absolute() else location.parent / listed)
        else:
            problems.append(f"{shown(yaml_file)}: {split}: {shown(location)} not found")
    return images


def _label_path(image: Path) -> Path | None:
    """ultralytics' rule: the last `images` folder in the path becomes `labels`, suffix `.txt`."""
    parts = list(image.parts)
    if "images" not in parts:
        return None
    index = len(parts) - 1 - parts[::-1].index("images")
    parts[index] = "labels"
    return Path(*parts).with_suffix(".txt")


def _read_labels(label_file: Path, names: list[str], item: Item, problems: list[str]) -> None:
    try:  # read_utf8: a folder or a FIFO named like a label had been read as no label at all
        lines = read_utf8(label_file, "YOLO label file", MAX_EXPORT_BYTES).splitlines()
    except StructuredFileError as error:
        problems.append(shown(error))
        return
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{shown(label_file)}:{number}"
        try:
            values = [float(field) for field in fields]
        except ValueError:
            problems.append(f"{where}: not numbers (expected: class x1 y1 x2 y2 ...)")
            continue
        if not values[0].is_integer() or not 0 <= values[0] < len(names):
            problems.append(f"{where}: class id {fields[0]} is not among the {len(names)} names of data.yaml")
            continue
        coordinates = np.asarray(values[1:])
        if len(values) == 5:
            problems.append(f"{where}: a box (class cx cy w h) is detection, not a segmentation polygon")
            continue
        if coordinates.size % 2 or coordinates.size < 6:
            problems.append(
                f"{where}: polygon has {coordinates.size} coordinates; at least 3 x, y pairs needed"
            )
            continue
        if not np.isfinite(coordinates).all():
            problems.append(f"{where}: coordinates are not finite numbers")
            continue
        if coordinates.min() < -NORMALISED_TOLERANCE or coordinates.max() > 1 + NORMALISED_TOLERANCE:
            problems.append(
                f"{where}: coordinates outside 0-1: the polygon lies outside the image "
                "(YOLO coordinates are fractions of the width and height)"
            )
            continue
        label = names[int(values[0])]
        item.layers.append(Layer(label, partial(_polygon, coordinates), where))


def _polygon(normalised: np.ndarray, height: int, width: int) -> np.ndarray:
    points = normalised.reshape(-1, 2) * np.array([width, height], dtype=np.float64)
    return raster.polygons([points.ravel().tolist()], height, width)
