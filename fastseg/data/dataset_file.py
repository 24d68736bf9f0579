"""`dataset.yaml`: what a folder of one's own images and masks holds, read and checked whole.

The keys follow what users of other tools already write (ultralytics' data YAML, mmseg's
`classes` / `palette` / `ignore_index`):

    names: [background, road, car]     # or {0: background, 1: road, 2: car}
    colors: [[0, 0, 0], [128, 64, 128], [0, 0, 142]]   # optional: VOC's colour map by default
    ignore_index: 255                   # optional: the mask value meaning "not labelled"
    train: images/train                 # a folder, or a .txt list of image stems / paths
    val: images/val
    test: images/test                   # optional: without it, val is halved the seed's way
    masks: masks                        # optional: replaces `images` in each image's path
    mask_format: index                  # or rgb: each pixel's colour is its class's `colors` entry
    ignore_color: [255, 255, 255]       # optional, rgb masks: the colour of void pixels

Every problem of the file is collected, and they are raised together, one line each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastseg.classes import MAX_CLASSES, Classes, Colour, default_colors
from fastseg.errors import DatasetError, quoted
from fastseg.imaging.masks import VOID_LABEL
from fastseg.paths import UNUSABLE_PATH, path_problem
from fastseg.structured_files import StructuredFileError, load_yaml

KEYS = (
    "names",
    "colors",
    "ignore_index",
    "train",
    "val",
    "test",
    "masks",
    "mask_format",
    "ignore_color",
    "mask_values",
)
SPLITS = ("train", "val", "test")
MASK_FORMATS = ("index", "rgb")


@dataclass(frozen=True)
class DatasetFile:
    """A checked `dataset.yaml`: where each split's images are, and how masks are read."""

    path: Path
    classes: Classes
    splits: dict[str, Path]  # split -> a folder of images, or a .txt list (absolute paths)
    masks: str  # the folder name that replaces `images` in an image's path
    mask_format: str
    ignore_color: Colour | None
    # index masks: a stored value -> its class index, or VOID_LABEL (`mask_values` in the YAML:
    # binary masks stored as 0 / 255, as most tools export them, map with {0: 0, 255: 1})
    mask_values: dict[int, int] | None = None

    @property
    def root(self) -> Path:
        return self.path.parent


def read_dataset_file(path: Path) -> DatasetFile:
    """Parse and check `path`; every problem at once in one `DatasetError`, a line each."""
    try:
        values = load_yaml(path, "dataset.yaml")
    except StructuredFileError as error:
        raise DatasetError(str(error)) from None
    if not isinstance(values, dict):
        kind = type(values).__name__
        raise DatasetError(f"{path}: expected a mapping of keys ({', '.join(KEYS)}), got {kind}")
    problems: list[str] = []
    unknown = [str(key) for key in values if key not in KEYS]
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)} (known: {', '.join(KEYS)})")
    names = _names(values.get("names"), problems)
    colors = _colors(values.get("colors"), names, problems)
    ignore_index = _ignore_index(values.get("ignore_index", VOID_LABEL), names, problems)
    mask_format = values.get("mask_format", "index")
    if mask_format not in MASK_FORMATS:
        problems.append(f"mask_format {mask_format!r}: choose one of {', '.join(MASK_FORMATS)}")
    ignore_color = values.get("ignore_color")
    if ignore_color is not None and not _is_colour(ignore_color):
        problems.append(f"ignore_color {ignore_color!r}: expected [R, G, B], each 0-255")
    if mask_format == "rgb":
        _distinct_colours(colors, ignore_color, problems)
    splits = _splits(path.parent, values, problems)
    masks = values.get("masks", "masks")
    if not _relative_name(masks) or ".." in Path(masks).parts:  # it replaces `images` in a path
        problems.append(f"masks {masks!r}: expected a folder name relative to {path.name}, e.g. masks")
    else:
        try:
            (path.parent / masks).exists()
        except UNUSABLE_PATH as error:  # a name over the file system's limit
            problems.append(f"masks: {quoted(masks)} cannot be used ({path_problem(error)})")
    mask_values = _mask_values(values.get("mask_values"), len(names), mask_format, problems)
    if problems:
        raise DatasetError(lines=[f"{path}: {problem}" for problem in problems])
    classes = Classes.create(names, colors, ignore_index)
    return DatasetFile(path, classes, splits, masks, mask_format,
                       tuple(ignore_color) if ignore_color is not None else None, mask_values)  # fmt: skip


def _mask_values(given: Any, num_classes: int, mask_format: str,
                 problems: list[str]) -> dict[int, int] | None:  # fmt: skip
    """`mask_values: {stored value: class index or "void"}` for index masks; None when absent."""
    if given is None:
        return None
    if mask_format != "index":
        problems.append("mask_values: only for index masks (mask_format: index)")
        return None
    if not isinstance(given, dict) or not given:
        problems.append(
            'mask_values: expected a mapping of mask value -> class index or "void", e.g. {0: 0, 255: 1}'
        )
        return None
    mapped = {}
    for value, label in given.items():
        if type(value) is not int or not 0 <= value <= 255:
            problems.append(f"mask_values: {value!r} is not a mask value (0-255)")
        elif label == "void":
            mapped[value] = VOID_LABEL
        elif type(label) is not int or not 0 <= label < num_classes:
            problems.append(
                f'mask_values: {value} -> {label!r}: expected a class index 0-{num_classes - 1} or "void"'
            )
        else:
            mapped[value] = label
    return mapped


def _names(names: Any, problems: list[str]) -> list[str]:
    """`names` as a list or an index -> name mapping, indices 0 .. C-1 each once."""
    if names is None:
        problems.append("names is missing: list the classes, e.g. names: [background, road, car]")
        return []
    if isinstance(names, dict):
        if not all(type(index) is int for index in names) or sorted(names) != list(range(len(names))):
            problems.append(f"names: a mapping's keys must be the indices 0 .. {len(names) - 1}, got "
                            f"{sorted(names, key=str)[:8]}")  # fmt: skip
            return []
        names = [names[index] for index in range(len(names))]
    if not isinstance(names, list) or not all(isinstance(name, str) and name.strip() for name in names):
        problems.append("names: expected a list of class names (non-empty strings)")
        return []
    if not 2 <= len(names) <= MAX_CLASSES:
        problems.append(f"names: {len(names)} classes; fastseg takes 2 to {MAX_CLASSES}")
        return []
    unprintable = [name for name in names if not name.isprintable()]
    if unprintable:  # a newline or tab in a name garbles every table and figure it reaches
        listed = ", ".join(map(repr, unprintable))
        problems.append(f"names: {listed}: control characters (newlines, tabs) are not allowed in a name")
        return []
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        problems.append(f"names: {', '.join(repeated)} named more than once")
    return names


def _is_colour(value: Any) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == 3
            and all(type(channel) is int and 0 <= channel <= 255 for channel in value))  # fmt: skip


def _colors(colors: Any, names: list[str], problems: list[str]) -> list[Colour]:
    if colors is None:
        return default_colors(len(names))
    if not isinstance(colors, list) or not all(_is_colour(colour) for colour in colors):
        problems.append("colors: expected a list of [R, G, B] triples, each 0-255")
        return default_colors(len(names))
    if names and len(colors) != len(names):
        problems.append(f"colors: {len(colors)} colours for {len(names)} classes (one per class, in order)")
        return default_colors(len(names))
    return [tuple(colour) for colour in colors]


def _distinct_colours(colors: list[Colour], ignore_color: Any, problems: list[str]) -> None:
    """Colour masks need one colour per class, and a void colour that is no class's."""
    repeated = sorted({colour for colour in colors if colors.count(colour) > 1})
    if repeated:
        problems.append(f"colors: {list(repeated[0])} is given to more than one class; colour masks need "
                        "a colour per class")  # fmt: skip
    if ignore_color is not None and _is_colour(ignore_color) and tuple(ignore_color) in colors:
        problems.append(f"ignore_color {list(ignore_color)} is also a class colour")


def _ignore_index(value: Any, names: list[str], problems: list[str]) -> int:
    """The void value must be a byte that is not a class: a class index would make it trainable."""
    if type(value) is not int or not 0 <= value <= 255:
        problems.append(f"ignore_index {value!r}: expected an integer 0-255")
        return VOID_LABEL
    if value < len(names):
        fix = f"use a value from {len(names)} to 255, or remove that class from names"
        if value == 0:  # void 0 and classes stored from 1, as some tools export: map them instead
            shifted = ", ".join(f"{index + 1}: {index}" for index in range(min(len(names), 4)))
            more = ", ..." if len(names) > 4 else ""
            fix += (f"; masks storing void as 0 and classes from 1 map them: "
                    f"mask_values: {{0: void, {shifted}{more}}}")  # fmt: skip
        problems.append(f"ignore_index {value} is the index of class {names[value]!r}: {fix}")
    return value


def _relative_name(value: Any, absolute: bool = False) -> bool:
    """Text that can name a path: not empty, no NUL (which no file system allows and `Path`
    refuses with a ValueError), no other control character; absolute only if `absolute` (then
    `_inside` decides)."""
    return (isinstance(value, str) and bool(value.strip()) and value.isprintable()
            and (absolute or not Path(value).is_absolute()))  # fmt: skip


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or lies under it once `..` and links are resolved."""
    return path.resolve().is_relative_to(folder.resolve())


def _splits(root: Path, values: dict[str, Any], problems: list[str]) -> dict[str, Path]:
    splits = {}
    for split in SPLITS:
        given = values.get(split)
        if given is None:
            continue
        if not _relative_name(given, absolute=True):
            problems.append(f"{split}: expected a folder or a .txt list, relative to the YAML file")
            continue
        location = root / given  # an absolute `given` stays itself
        try:
            inside = _inside(location, root)
            kind = "folder" if location.is_dir() else "file" if location.exists() else None
        except UNUSABLE_PATH as error:  # a link loop, a name over the file system's limit
            problems.append(f"{split}: {quoted(given)} cannot be used ({path_problem(error)})")
            continue
        if not inside:
            problems.append(f"{split}: {given!r} is outside the data folder {root}; "
                            "name a folder or list under it, e.g. images/{split}")  # fmt: skip
            continue
        if kind is None:
            problems.append(f"{split}: {location} not found")
        elif not (kind == "folder" or location.suffix == ".txt"):
            problems.append(f"{split}: {location} is neither a folder nor a .txt list")
        splits[split] = location
    if "train" not in values:
        problems.append("train is missing: name the training images' folder, e.g. train: images/train")
    if "val" not in values:
        problems.append("val is missing: name a validation folder, e.g. val: images/val "
                        "(without test, val is halved into validation and test)")  # fmt: skip
    return splits
