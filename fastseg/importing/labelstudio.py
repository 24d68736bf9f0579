"""Label Studio: its JSON export (a list of tasks), with BrushLabels (Label Studio's RLE of an RGBA
image, its alpha channel the brush), PolygonLabels and RectangleLabels; coordinates are percents
of `original_width` / `original_height`. Each task's first annotation that was not cancelled is
used (predictions are not annotations). Images are found under `--images DIR` (the JSON's folder
by default) by the path in the task's URL (`/data/local-files/?d=PATH`, or the uploaded file's
name, hash prefix included, as Label Studio stores it in its media folder).
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np

from fastseg.errors import clipped
from fastseg.importing import raster
from fastseg.importing.source import (
    BACKGROUND,
    Item,
    ItemProblem,
    Layer,
    ReadOptions,
    Source,
    declared_names,
    image_under,
    numbers,
    read_json,
    shown,
)

KINDS = {"polygonlabels": "polygon", "brushlabels": "brush", "rectanglelabels": "rectangle"}
BRUSH_ALPHA = 128  # a pixel is the brush's where its alpha is at least half


def read(path: Path, options: ReadOptions) -> Source:
    problems: list[str] = []
    if path.is_dir():
        found = sorted(path.glob("*.json"))
        if len(found) != 1:
            return Source(
                [BACKGROUND],
                [],
                problems=[
                    f"{shown(path)}: name the Label Studio JSON export ({len(found)} .json files here)"
                ],
            )
        path = found[0]
    data = read_json(path, "Label Studio JSON", problems)
    if data is None:
        return Source([BACKGROUND], [], problems=problems)
    if not isinstance(data, list):
        return Source(
            [BACKGROUND], [], problems=[f"{shown(path)}: not a Label Studio JSON export (a list of tasks)"]
        )
    images_dir = options.images or path.parent
    items, labels, skipped = [], set(), 0
    for number, task in enumerate(data):
        task_id = clipped(shown(task.get("id", number))) if isinstance(task, dict) else number
        where = f"{shown(path.name)}: task {task_id}"
        item = _item(task, where, images_dir, problems)
        if item is None:
            continue
        for result_number, result in enumerate(_results(task, where, problems)):
            layer = _layer(result, f"{where} result {result_number}", item, problems)
            if layer == "skip":
                skipped += 1
            elif layer is not None:
                item.layers.append(layer)
                labels.add(layer.label)
        items.append(item)
    notes = [f"{skipped} result(s) without area (choices, keypoints, text) skipped"] if skipped else []
    return Source(declared_names(labels), items, problems=problems, notes=notes)


def _results(task: dict[str, Any], where: str, problems: list[str]) -> list[Any]:
    """The first annotation's results that was not cancelled (`annotations: 5` or `result: 7`, no
    list, is a problem: iterating it was a TypeError)."""
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list):
        problems.append(f"{where}: annotations is not a list")
        return []
    for annotation in annotations:
        if isinstance(annotation, dict) and not annotation.get("was_cancelled"):
            results = annotation.get("result") or []
            if not isinstance(results, list):
                problems.append(f"{where}: an annotation's result is not a list")
                return []
            return results
    return []


def _item(task: Any, where: str, images_dir: Path, problems: list[str]) -> Item | None:
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        problems.append(f"{where}: not a task (no 'data')")
        return None
    url = task["data"].get("image")
    if not isinstance(url, str):
        url = next((value for value in task["data"].values() if isinstance(value, str)), None)
    if not url:
        problems.append(f"{where}: its data names no image")
        return None
    try:
        parsed = urlparse(url)
    except ValueError as error:  # "Invalid IPv6 URL": a "[" in the host part
        problems.append(f"{where}: its image URL {shown(url)!r} cannot be read ({error})")
        return None
    relative = unquote(parse_qs(parsed.query).get("d", [""])[0]) or unquote(parsed.path)
    candidates = [relative.lstrip("/"), PurePosixPath(unquote(parsed.path)).name]
    local = [image_under(images_dir, candidate, where, []) for candidate in candidates if candidate]
    image = next((path for path in local if path is not None and path.is_file()), None)
    if image is None:
        name = clipped(shown(PurePosixPath(relative).name))
        problems.append(f"{where}: image {name} not found under {shown(images_dir)} (--images DIR)")
        return None
    return Item(name=image.name, where=where, image=image)


def _layer(result: Any, where: str, item: Item, problems: list[str]) -> Layer | str | None:
    if not isinstance(result, dict) or not isinstance(result.get("value"), dict):
        problems.append(f"{where}: not a result (no 'value')")
        return None
    kind = result.get("type")
    if not isinstance(kind, str):  # a list or object: no type at all (and unhashable)
        problems.append(f"{where}: type {clipped(shown(kind))} is not a result type")
        return None
    if kind not in KINDS:
        return "skip"
    value = result["value"]
    names = value.get(kind)
    if not isinstance(names, list) or len(names) != 1 or not isinstance(names[0], str):
        problems.append(f"{where}: a region needs exactly one label in {kind}, got {clipped(shown(names))}")
        return None
    label = names[0]
    where = f"{where} ({clipped(shown(label))}, {KINDS[kind]})"
    width, height = result.get("original_width"), result.get("original_height")
    if not (type(width) is int and type(height) is int and width > 0 and height > 0):
        problems.append(f"{where}: original_width and original_height must be positive whole numbers")
        return None
    if item.size is not None and item.size != (width, height):
        problems.append(
            f"{where}: original size {width}x{height}, another result says {item.size[0]}x{item.size[1]}"
        )
        return None
    item.size = (width, height)
    scale = np.array([width / 100, height / 100])
    if kind == "polygonlabels":
        points = numbers(value.get("points"))
        if points is None or points.ndim != 2 or points.shape[1] != 2 or not np.isfinite(points).all():
            problems.append(f"{where}: points must be [x, y] pairs of numbers")
            return None
        if len(points) < 3:
            problems.append(f"{where}: polygon has {len(points)} point(s); a polygon needs at least 3")
            return None
        pixels = points * scale
        return Layer(label, partial(_polygon, pixels.ravel().tolist()), where, pixels)
    if kind == "rectanglelabels":
        rotation = value.get("rotation")
        corner_and_size = [value.get(key) for key in ("x", "y", "width", "height")]
        given = numbers([*corner_and_size, 0 if rotation is None else rotation])  # None: upright
        if given is None:
            problems.append(f"{where}: x, y, width and height must be numbers")
            return None
        x, y, w, h, degrees = given.tolist()
        angle = math.radians(degrees)
        corners = np.array([[0, 0], [w, 0], [w, h], [0, h]]) * scale
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        pixels = corners @ rotation.T + np.array([x, y]) * scale
        if not np.isfinite(pixels).all():
            problems.append(f"{where}: x, y, width and height must be finite numbers")
            return None
        return Layer(label, partial(_polygon, pixels.ravel().tolist()), where, pixels)
    rle = value.get("rle", result.get("rle"))  # the converter's flattened results carry it beside
    if value.get("format", "rle") != "rle" or not isinstance(rle, list):
        problems.append(f"{where}: a brush needs format 'rle' and an rle list")
        return None
    try:
        _brush_header(rle, height, width)
    except ValueError as error:
        problems.append(f"{where}: its rle cannot be decoded ({error})")
        return None
    # decoded when drawn, once the image is known to be original_width x original_height: a
    # header claiming a 32768 x 32767 image took 4 GB while the JSON was read
    return Layer(label, partial(_brush, rle), where)


def _polygon(flat: list[float], height: int, width: int) -> np.ndarray:
    return raster.polygons([flat], height, width)


def _brush(rle: list[int], height: int, width: int) -> np.ndarray:
    try:
        return decode_brush(rle, height, width) >= BRUSH_ALPHA
    except ValueError as error:
        raise ItemProblem(f"its rle cannot be decoded ({error})") from None


def _brush_header(rle: list[int], height: int, width: int) -> None:
    """`decode_brush`'s checks of the bytes and of the value count, without decoding."""
    if not all(type(byte) is int and 0 <= byte <= 255 for byte in rle):
        raise ValueError("rle must be a list of bytes 0-255")
    if len(rle) < 4:
        raise ValueError("it ends early")
    total = int.from_bytes(bytes(rle[:4]), "big")
    if total != height * width * 4:
        raise ValueError(f"it holds {total} values, a {width}x{height} RGBA image has {height * width * 4}")


def decode_brush(rle: list[int], height: int, width: int) -> np.ndarray:
    """The alpha channel `(H, W)` uint8 of Label Studio's brush RLE (the `@thi.ng/rle-pack` layout
    its converter decodes): a 32-bit value count, a 5-bit word size - 1, four 4-bit run-length
    sizes - 1, then runs: 1 bit repeat flag, 2 bits choosing a run-length size, the length - 1,
    and one word (repeat) or that many words."""
    if not all(type(byte) is int and 0 <= byte <= 255 for byte in rle):
        raise ValueError("rle must be a list of bytes 0-255")
    # only the bytes a stream of this image's values can use (the header, then at worst a run of
    # one value each: 1 + 2 + 16 + 32 bits) are unpacked, one list item a bit: bytes past them
    # were unpacked too, 64 bytes of memory each, whatever the image's size
    usable = (32 + 5 + 16 + height * width * 4 * (1 + 2 + 16 + 32)) // 8 + 1
    bits = np.unpackbits(np.asarray(rle[:usable], dtype=np.uint8)).tolist()
    position = 0

    def take(count: int) -> int:
        nonlocal position
        if position + count > len(bits):
            raise ValueError("it ends early")
        value = 0
        for bit in bits[position : position + count]:
            value = value << 1 | bit
        position += count
        return value

    def byte(value: int) -> int:  # a word wider than 8 bits may hold more than a channel takes
        if value > 255:
            raise ValueError(f"a value of {value}, past a byte (0-255)")
        return value

    total = take(32)
    if total != height * width * 4:
        raise ValueError(f"it holds {total} values, a {width}x{height} RGBA image has {height * width * 4}")
    word = take(5) + 1
    sizes = [take(4) + 1 for _ in range(4)]
    out = np.zeros(total, dtype=np.uint8)
    index = 0
    while index < total:
        repeat = take(1)
        end = min(total, index + 1 + take(sizes[take(2)]))
        if repeat:
            out[index:end] = byte(take(word))
            index = end
        else:
            while index < end:
                out[index] = byte(take(word))
                index += 1
    return out.reshape(height, width, 4)[:, :, 3]
