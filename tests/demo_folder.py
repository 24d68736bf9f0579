"""A generated data set in the `dataset.yaml` layout, for the tests of own data (only tests use
it, so it lives with them: `from demo_folder import make_demo_folder`).

The same pictures as the VOC demo set (`fastseg.data.demo_voc.make_sample`: textured objects on
a grey background, void outlines), with any number of classes, any void value and index or
colour masks, so every path of `fastseg.data.folder_dataset` runs without anyone's data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from fastseg.classes import Colour, default_colors
from fastseg.data.demo_voc import make_sample
from fastseg.imaging.masks import VOID_LABEL


def make_demo_folder(
    root: Path | str,
    names: Sequence[str],
    counts: dict[str, int] | None = None,
    ignore_index: int = VOID_LABEL,
    mask_format: str = "index",
    seed: int = 0,
    min_size: int = 32,
    max_size: int = 64,
    colors: Sequence[Colour] | None = None,
    ignore_color: Colour = (255, 255, 255),
) -> Path:
    """Write `root/dataset.yaml`, `root/images/<split>/*.jpg` and `root/masks/<split>/*.png`;
    returns the YAML file. `counts` maps split -> images (default 12 train, 6 val, 6 test; leave a
    split out to leave it out of the YAML). Class 0 is the background; objects take classes
    1 .. C-1. Index masks are 8-bit greyscale PNGs holding `ignore_index` on void pixels; colour
    masks paint class i in `colors[i]` and void in `ignore_color`. Deterministic in `seed`."""
    counts = {"train": 12, "val": 6, "test": 6} if counts is None else counts
    root = Path(root)
    drawn = list(colors) if colors is not None else default_colors(len(names))
    palette = np.array([*drawn, *([(0, 0, 0)] * (256 - len(drawn)))], dtype=np.uint8)
    palette[VOID_LABEL] = ignore_color
    rng = np.random.default_rng(seed)
    objects = list(range(1, len(names)))
    for split, count in counts.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "masks" / split).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image, labels = make_sample(rng, objects, min_size, max_size)
            Image.fromarray(image).save(root / "images" / split / f"{split}_{index:04d}.jpg", quality=95)
            if mask_format == "rgb":
                mask = Image.fromarray(palette[labels])
            else:
                mask = Image.fromarray(
                    np.where(labels == VOID_LABEL, ignore_index, labels).astype(np.uint8), "L"
                )
            mask.save(root / "masks" / split / f"{split}_{index:04d}.png")
    values = {"names": list(names), **{split: f"images/{split}" for split in counts}}
    if colors is not None:
        values["colors"] = [list(colour) for colour in colors]
    if ignore_index != VOID_LABEL:
        values["ignore_index"] = ignore_index
    if mask_format == "rgb":
        values.update(mask_format="rgb", ignore_color=list(ignore_color))
    path = root / "dataset.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path
