"""A small, deterministic VOC-format dataset for the demo and the tests.

Real `VOCdevkit/VOC2012` layout (JPEGs of varied sizes, palette PNG masks with void borders,
list files), so every code path that reads VOC runs on it without a 2 GB download. Each class
has its own colour and stripe texture, with noise and lighting changes: not trivial, but a
model learns it in a few CPU minutes.

Masks are written with :func:`fastseg.imaging.masks.write_mask`, the one writer of palette PNGs.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fastseg.atomic import TEMPORARY, atomic_path, remove_stale_temporaries, write_text
from fastseg.data.voc import NUM_CLASSES
from fastseg.imaging.masks import VOID_LABEL, write_mask
from fastseg.outputs import written_by_fastseg
from fastseg.paths import make_folders, walk

DEMO_CLASSES: tuple[int, ...] = (15, 7, 8, 1, 12)  # person, car, cat, aeroplane, dog
# A base colour per class, far apart in RGB and from the grey background, so colour nearly
# decides the class; the stripe texture and noise keep it from being a per-pixel lookup.
CLASS_COLOURS: dict[int, tuple[int, int, int]] = {
    15: (220, 60, 60), 7: (60, 200, 70), 8: (70, 90, 230), 1: (230, 210, 60), 12: (200, 70, 220),
    2: (60, 210, 210), 3: (240, 140, 40), 19: (140, 240, 150), 20: (130, 130, 250),
}  # fmt: skip
MIN_IMAGE_SIZE = 16  # below this the smallest objects are all void border
_GOLDEN = (math.sqrt(5) - 1) / 2  # spreads hues and stripe angles evenly over any set of labels


def _colour_for(label: int) -> tuple[int, int, int]:
    """Fixed colour of a class: the table above, else a saturated hue from the label."""
    if label in CLASS_COLOURS:
        return CLASS_COLOURS[label]
    red, green, blue = colorsys.hsv_to_rgb((label * _GOLDEN) % 1.0, 0.7, 0.9)
    return round(red * 255), round(green * 255), round(blue * 255)


def _stripes(label: int, rows: np.ndarray, columns: np.ndarray, phase: float) -> np.ndarray:
    """`(H, W)` sinusoidal stripes whose angle and period belong to the class (a texture cue)."""
    angle = math.pi * ((label * _GOLDEN) % 1.0)
    frequency = 0.4 + 0.06 * (label % 7)
    along = columns * math.cos(angle) + rows * math.sin(angle)
    return 25.0 * np.sin(frequency * along + phase)


def _draw_object(
    draw: ImageDraw.ImageDraw, shape: int, box: tuple[int, int, int, int], fill: int, outline_width: int = 0
) -> None:
    """Ellipse, rectangle or triangle; with `outline_width` only the outline is drawn (in 255)."""
    x0, y0, x1, y1 = box
    style = {"fill": fill or None, "outline": 255 if outline_width else None, "width": outline_width or 1}
    if shape == 0:
        draw.ellipse(box, **style)
    elif shape == 1:
        draw.rectangle(box, **style)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], **style)


def make_sample(
    rng: np.random.Generator, classes: Sequence[int], min_size: int, max_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """One `(image (H, W, 3) uint8, mask (H, W) uint8)` pair: textured background and 1-3 objects.

    Later objects may hide earlier ones; every object keeps a 1-3 px void (255) outline, drawn
    over its own edge as in VOC, where annotators left boundary pixels unlabelled.
    """
    width, height = (int(v) for v in rng.integers(min_size, max_size + 1, 2))
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float64)
    # Background: grey with a gentle lighting gradient and pixel noise, so "not an object" is
    # not one flat colour either.
    gradient_angle = rng.uniform(0, 2 * math.pi)
    gradient = (columns * math.cos(gradient_angle) + rows * math.sin(gradient_angle)) / max(width, height)
    grey = rng.uniform(90, 150) + 30 * gradient
    image = grey[..., None] + rng.normal(0, 18, (height, width, 3))
    labels = np.zeros((height, width), np.uint8)
    shortest = min(width, height)
    for _ in range(int(rng.integers(1, 4))):
        label = int(rng.choice(classes))
        w, h = (int(v) for v in rng.integers(max(shortest // 4, 8), shortest * 3 // 4, 2))
        x0, y0 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        box, shape = (x0, y0, x0 + w, y0 + h), int(rng.integers(0, 3))
        # Thin objects get thin borders, so some labelled interior is always left.
        border_width = min(int(rng.integers(1, 4)), max(1, min(w, h) // 8))
        inside, border = Image.new("L", (width, height)), Image.new("L", (width, height))
        _draw_object(ImageDraw.Draw(inside), shape, box, fill=255)
        _draw_object(ImageDraw.Draw(border), shape, box, fill=0, outline_width=border_width)
        inside_pixels, border_pixels = np.array(inside) > 0, np.array(border) > 0
        colour = np.array(_colour_for(label)) * rng.uniform(0.8, 1.15)  # lighting varies
        stripes = _stripes(label, rows, columns, phase=rng.uniform(0, 2 * math.pi))
        texture = colour + stripes[..., None] + rng.normal(0, 12, (height, width, 3))
        image[inside_pixels] = texture[inside_pixels]
        labels[inside_pixels] = label
        labels[border_pixels] = VOID_LABEL
    return np.clip(image, 0, 255).astype(np.uint8), labels


def _check_arguments(n_train: int, n_val: int, min_size: int, max_size: int, classes: Sequence[int]) -> None:
    """Refuse arguments that would crash halfway through writing, leaving a partial dataset."""
    if n_train < 1 or n_val < 1:
        raise ValueError(f"n_train and n_val must be at least 1, got {n_train} and {n_val}")
    if not MIN_IMAGE_SIZE <= min_size <= max_size:
        raise ValueError(
            f"need {MIN_IMAGE_SIZE} <= min_size <= max_size, got min_size={min_size}, max_size={max_size}"
        )
    if not classes:
        raise ValueError("classes is empty: give at least one class index in 1..20")
    wrong = sorted({int(label) for label in classes} - set(range(1, NUM_CLASSES)))
    if wrong:
        raise ValueError(f"classes must be object classes 1..{NUM_CLASSES - 1}, got {wrong}")


def make_demo_voc(
    root: Path | str,
    n_train: int = 48,
    n_val: int = 32,
    seed: int = 0,
    min_size: int = 48,
    max_size: int = 96,
    classes: Sequence[int] | None = None,
) -> Path:
    """Write `root/VOCdevkit/VOC2012` with `n_train` + `n_val` pairs; returns the VOC2012 folder.

    Writes `JPEGImages/<id>.jpg`, `SegmentationClass/<id>.png` (palette indices, 255 = void) and
    `ImageSets/Segmentation/{train,val,trainval}.txt`; ids look like VOC's (`2007_000000`).
    Width and height are drawn independently in `[min_size, max_size]`, so resizing and padding
    code meets non-square images. `classes` defaults to :data:`DEMO_CLASSES`. The same arguments
    always give byte-identical files (one `np.random.default_rng(seed)` drives everything), so
    tests can compare outputs and the demo is reproducible. Existing files are overwritten; each is
    written whole (`fastseg.atomic`), the list files last, and a killed run's temporaries are
    removed, so a run killed midway and run again leaves the same files as one that was not.
    `fastseg demo` checks first that the folder is the demo's own (`foreign_file`).
    """
    classes = DEMO_CLASSES if classes is None else tuple(int(label) for label in classes)
    _check_arguments(n_train, n_val, min_size, max_size, classes)
    voc = Path(root) / "VOCdevkit" / "VOC2012"
    for sub in DEMO_FOLDERS:
        make_folders(voc / sub)
        remove_stale_temporaries(voc / sub)
    rng = np.random.default_rng(seed)
    ids = demo_ids(n_train + n_val)
    for image_id in ids:
        image, mask = make_sample(rng, classes, min_size, max_size)
        with atomic_path(voc / "JPEGImages" / f"{image_id}.jpg") as temporary:
            Image.fromarray(image).save(temporary, format="JPEG", quality=95)
        write_mask(voc / "SegmentationClass" / f"{image_id}.png", mask)
    lists = {"train": ids[:n_train], "val": ids[n_train:], "trainval": ids}
    for name, members in lists.items():
        write_text(voc / "ImageSets" / "Segmentation" / f"{name}.txt", "".join(f"{i}\n" for i in members))
    return voc


DEMO_FOLDERS = ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation")


def demo_ids(count: int) -> list[str]:
    """The ids of a demo set of `count` images, VOC-like: `2007_000000`, `2007_000001`, ..."""
    return [f"2007_{index:06d}" for index in range(count)]


def foreign_file(root: Path) -> Path | None:
    """A file or folder under `root` that `make_demo_voc` did not write, or None: `fastseg demo`
    writes its data set only where nothing else is (`--out .` beside `fastseg download`'s `data/`
    replaced a real VOC's list files and its images and masks of the same ids). Ours: the folders
    of its layout, an image named as the demo names them, a mask that carries fastseg's mark, a
    list file of demo ids, and the temporary of a killed run. A real VOC always holds more (its
    masks carry no mark; `Annotations/`), so it is never taken for the demo's."""
    root = Path(root)
    voc = root / "VOCdevkit" / "VOC2012"
    folders = {root / "VOCdevkit", voc, voc / "ImageSets", *(voc / sub for sub in DEMO_FOLDERS)}
    for path in walk(root):  # stops at the first: a real VOC's 35,000 files are not all read
        if path.is_symlink() or not (path in folders if path.is_dir() else _demo_file(path, voc)):
            return path
    return None


def _demo_file(path: Path, voc: Path) -> bool:
    folder = path.parent.relative_to(voc).as_posix() if path.parent.is_relative_to(voc) else None
    if folder not in DEMO_FOLDERS or not path.is_file():
        return False
    if TEMPORARY.match(path.name):
        return True
    if folder == "ImageSets/Segmentation":
        try:
            ids = path.read_text(encoding="utf-8").split("\n")
        except (OSError, UnicodeDecodeError):
            return False
        return path.stem in ("train", "val", "trainval") and ids[-1] == "" and all(map(_demo_id, ids[:-1]))
    suffix = ".jpg" if folder == "JPEGImages" else ".png"
    if path.suffix != suffix or not _demo_id(path.stem):
        return False
    return folder == "JPEGImages" or written_by_fastseg(path, "mask")


def _demo_id(text: str) -> bool:
    """`2007_` and six digits: any id the demo could have written (`demo_ids`)."""
    number = text.removeprefix("2007_")
    return len(text) == 11 and len(number) == 6 and number.isascii() and number.isdigit()
