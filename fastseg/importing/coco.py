"""COCO instances or stuff JSON: polygons and RLE (compressed or not), drawn by pycocotools.

Categories keep their names; their ids, however sparse (COCO's 1..90 with gaps, stuff's 92..182),
become classes 1..N in id order, 0 the background (a category named `background` is class 0).
Crowd regions (`iscrowd: 1`) become void, as COCO's evaluation ignores them, unless
`--crowd-as-class`. Images are looked up under `--images DIR` (the JSON's folder by default) by
their `file_name`, which may hold subfolders but never leaves DIR.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from fastseg.importing import raster
from fastseg.importing.source import (
    BACKGROUND,
    Item,
    ItemProblem,
    Layer,
    ReadOptions,
    Source,
    image_under,
    polygon_points,
    read_json,
    shown,
)
from fastseg.structured_files import finite_number


def read(path: Path, options: ReadOptions) -> Source:
    """The export at `path` (the JSON file, or a folder holding exactly one) as a `Source`."""
    problems: list[str] = []
    path = _json_file(path, problems)
    if path is None:
        return Source([BACKGROUND], [], problems=problems)
    data = read_json(path, "COCO JSON", problems)
    if data is None:
        return Source([BACKGROUND], [], problems=problems)
    if not isinstance(data, dict) or not all(
        isinstance(data.get(key), list) for key in ("images", "categories")
    ):
        return Source(
            [BACKGROUND],
            [],
            problems=[
                f"{shown(path)}: not a COCO JSON (needs lists 'images', 'annotations' and 'categories')"
            ],
        )
    images_dir = options.images or path.parent
    name = path.name
    categories = _categories(data["categories"], name, problems)
    names = [BACKGROUND, *[category for _, category in sorted(categories.items()) if category != BACKGROUND]]
    colors = _colors(data["categories"], names)
    items: dict[Any, Item] = {}
    for number, image in enumerate(data["images"]):
        item = _item(image, number, name, images_dir, problems)
        if item is not None:
            if image["id"] in items:
                problems.append(f"{name}: image id {shown(image['id'])} is given twice")
                continue
            items[image["id"]] = item
    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        problems.append(f"{name}: 'annotations' is not a list")
        annotations = []
    for number, annotation in enumerate(annotations):
        _annotation(annotation, number, name, items, categories, options.crowd_as_class, problems)
    return Source(names, list(items.values()), colors=colors, problems=problems)


def _json_file(path: Path, problems: list[str]) -> Path | None:
    if path.is_dir():
        found = sorted(path.glob("*.json"))
        if len(found) != 1:
            problems.append(f"{shown(path)}: name the COCO JSON file itself ({len(found)} .json files here)")
            return None
        return found[0]
    if not path.is_file():
        problems.append(f"{shown(path)}: no such COCO JSON file")
        return None
    return path


def _categories(categories: list[Any], name: str, problems: list[str]) -> dict[Any, str]:
    """category id -> name; repeated ids or names are problems (a class must mean one thing)."""
    found: dict[Any, str] = {}
    for number, category in enumerate(categories):
        if not (
            isinstance(category, dict)
            and type(category.get("id")) is int
            and isinstance(category.get("name"), str)
            and category["name"].strip()
        ):
            problems.append(f"{name}: categories[{number}] needs an integer 'id' and a 'name'")
            continue
        if category["id"] in found:
            problems.append(f"{name}: category id {category['id']} is given twice")
        elif category["name"] in found.values():
            problems.append(f"{name}: category name {shown(category['name'])!r} is given to two ids")
        else:
            found[category["id"]] = category["name"]
    return found


def _colors(categories: list[Any], names: list[str]) -> list | None:
    """Panoptic-style `color: [R, G, B]` on every category: the export's own colours."""
    given = {
        category.get("name"): category.get("color") for category in categories if isinstance(category, dict)
    }
    colours = [given.get(category) for category in names[1:]]
    valid = all(
        isinstance(colour, list)
        and len(colour) == 3
        and all(type(value) is int and 0 <= value <= 255 for value in colour)
        for colour in colours
    )
    return [(0, 0, 0), *[tuple(colour) for colour in colours]] if colours and valid else None


def _item(image: Any, number: int, name: str, images_dir: Path, problems: list[str]) -> Item | None:
    if not (
        isinstance(image, dict)
        and _is_id(image.get("id"))
        and isinstance(image.get("file_name"), str)
        and image["file_name"]
    ):
        problems.append(f"{name}: images[{number}] needs an 'id' (a number or text) and a 'file_name'")
        return None
    where = f"{name}: image {shown(image['id'])} ({shown(image['file_name'])})"
    width, height = image.get("width"), image.get("height")
    if width is None and height is None:  # some exporters leave them out: the image's own size decides
        size = None
    elif type(width) is int and type(height) is int and width > 0 and height > 0:
        size = (width, height)
    else:
        problems.append(f"{where}: 'width' and 'height' must be positive whole numbers")
        return None
    path = image_under(images_dir, image["file_name"], where, problems)
    if path is None:
        return None
    return Item(name=Path(image["file_name"].replace("\\", "/")).name, where=where, image=path, size=size)


def _annotation(
    annotation: Any,
    number: int,
    name: str,
    items: dict[Any, Item],
    categories: dict[Any, str],
    crowd_as_class: bool,
    problems: list[str],
) -> None:
    if not isinstance(annotation, dict):
        problems.append(f"{name}: annotations[{number}] is not an object")
        return
    where = f"{name}: annotation {shown(annotation.get('id', f'#{number}'))}"
    image_id, category = annotation.get("image_id"), annotation.get("category_id")
    item = items.get(image_id) if _is_id(image_id) else None
    if item is None:
        problems.append(f"{where}: image id {shown(annotation.get('image_id'))} is not among the images")
        return
    if not _is_id(category) or category not in categories:
        problems.append(f"{where}: category id {shown(category)} is not among the categories")
        return
    crowd = annotation.get("iscrowd", 0)
    if crowd is None:  # null: not given
        crowd = 0
    # "no" or 2 would silently make the region void; {} or "" were read as 0
    if type(crowd) not in (int, bool, float) or crowd not in (0, 1):
        problems.append(f"{where}: iscrowd {shown(crowd)!r} is neither 0 nor 1")
        return
    label = categories[category] if crowd_as_class or not crowd else None
    segmentation = annotation.get("segmentation")
    if isinstance(segmentation, list) and segmentation:
        found = [
            polygon_points(polygon, f"{where} polygon {index}", problems)
            for index, polygon in enumerate(segmentation)
        ]
        if any(points is None for points in found):
            return
        flat = [points.ravel().tolist() for points in found]
        item.layers.append(Layer(label, partial(_polygons, flat), where, np.concatenate(found)))
    elif isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if not (
            isinstance(size, list) and len(size) == 2 and all(type(side) is int and side > 0 for side in size)
        ):
            problems.append(f"{where}: RLE size {shown(size)} is not [height, width]")
            return
        if item.size is not None and size != [item.size[1], item.size[0]]:
            problems.append(f"{where}: RLE size {size} is not the image's [height, width] "
                            f"[{item.size[1]}, {item.size[0]}]")  # fmt: skip
            return
        if isinstance(counts, list) and all(
            finite_number(count) and count >= 0 and int(count) == count for count in counts
        ):
            if sum(counts) != size[0] * size[1]:
                problems.append(f"{where}: RLE counts cover {sum(counts)} pixels, its size {size} has "
                                f"{size[0] * size[1]}")  # fmt: skip
                return
        elif not isinstance(counts, str):
            problems.append(f"{where}: RLE counts must be a list of run lengths or a compressed string")
            return
        item.layers.append(Layer(label, partial(_rle, segmentation), where))
    else:
        problems.append(f"{where}: no segmentation (polygons or RLE); a box alone is not a mask")


def _is_id(value: Any) -> bool:
    """An id the export can give: a JSON number or text (a list or object is no key to look up)."""
    return isinstance(value, (int, float, str)) and not isinstance(value, bool)


def _polygons(flat: list[list[float]], height: int, width: int) -> np.ndarray:
    return raster.polygons(flat, height, width)


def _rle(segmentation: dict, height: int, width: int) -> np.ndarray:
    if segmentation["size"] != [height, width]:
        raise ItemProblem(
            f"RLE size {segmentation['size']} is not the image's [height, width] [{height}, {width}]"
        )
    try:
        return raster.coco_rle(segmentation, height, width)
    except (ValueError, TypeError, UnicodeError) as error:
        raise ItemProblem(f"RLE cannot be decoded ({error})") from None
