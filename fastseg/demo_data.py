"""A small, deterministic VOC-format dataset for the demo and the tests.

Real `VOCdevkit/VOC2012` layout (JPEGs of varied sizes, palette PNG masks with void borders,
list files), so every code path that reads VOC runs on it. Each class has its own colour and
stripe texture, with noise and lighting changes: a model learns it in a few CPU minutes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fastseg.classes import VOID_LABEL
from fastseg.voc import write_mask

DEMO_CLASSES = (15, 7, 8, 1, 12)  # person, car, cat, aeroplane, dog
# A base colour per class, far apart in RGB so colour alone nearly decides the class.
CLASS_COLOURS = {
    15: (220, 60, 60), 7: (60, 200, 70), 8: (70, 90, 230), 1: (230, 210, 60), 12: (200, 70, 220),
    2: (60, 210, 210), 3: (240, 140, 40), 19: (140, 240, 150), 20: (130, 130, 250),
}  # fmt: skip


def _colour_for(label: int) -> tuple[int, int, int]:
    if label in CLASS_COLOURS:
        return CLASS_COLOURS[label]
    rng = np.random.default_rng(label)
    return tuple(int(v) for v in rng.integers(40, 240, 3))


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


def make_sample(rng: np.random.Generator, classes: Sequence[int], min_size: int, max_size: int):
    """One `(image (H, W, 3) uint8, mask (H, W) uint8)` pair: textured background and 1-3 objects."""
    width, height = (int(v) for v in rng.integers(min_size, max_size + 1, 2))
    grey = rng.integers(90, 150)
    image = rng.normal(grey, 18, (height, width, 3))
    labels = np.zeros((height, width), np.uint8)
    columns = np.arange(width)[None, :]
    for _ in range(int(rng.integers(1, 4))):
        label = int(rng.choice(classes))
        w, h = (int(v) for v in rng.integers(min(width, height) // 4, min(width, height) * 3 // 4, 2))
        x0, y0 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        box, shape = (x0, y0, x0 + w, y0 + h), int(rng.integers(0, 3))
        inside, border = Image.new("L", (width, height)), Image.new("L", (width, height))
        _draw_object(ImageDraw.Draw(inside), shape, box, fill=255)
        _draw_object(ImageDraw.Draw(border), shape, box, fill=0, outline_width=int(rng.integers(1, 4)))
        inside_pixels, border_pixels = np.array(inside) > 0, np.array(border) > 0
        stripes = 25 * np.sin(columns * (0.5 + 0.1 * (label % 5)))
        colour = np.array(_colour_for(label)) * rng.uniform(0.8, 1.15)
        texture = colour + stripes[..., None] + rng.normal(0, 12, (height, width, 3))
        image[inside_pixels] = texture[inside_pixels]
        labels[inside_pixels] = label
        labels[border_pixels] = VOID_LABEL  # VOC marks object outlines as void
    return np.clip(image, 0, 255).astype(np.uint8), labels


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

    The same arguments always give byte-identical files.
    """
    voc = Path(root) / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = [f"2007_{index:06d}" for index in range(n_train + n_val)]
    for image_id in ids:
        image, mask = make_sample(rng, classes or DEMO_CLASSES, min_size, max_size)
        Image.fromarray(image).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=95)
        write_mask(voc / "SegmentationClass" / f"{image_id}.png", mask)
    lists = {"train": ids[:n_train], "val": ids[n_train:], "trainval": ids}
    for name, members in lists.items():
        (voc / "ImageSets" / "Segmentation" / f"{name}.txt").write_text("".join(f"{i}\n" for i in members))
    return voc
