"""Cityscapes, in its official layout: `leftImg8bit/{train,val}/CITY/*_leftImg8bit.png` and
`gtFine/{train,val}/CITY/*_gtFine_labelIds.png`. The 34 label ids map to the 19 training classes
(cityscapesScripts' `labels.py`: trainId, colour), every other id to void 255, as every
Cityscapes benchmark trains. The official train and val splits are kept; `test` is left out (its
public gtFine files are placeholders without labels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastseg.imaging.masks import VOID_LABEL
from fastseg.importing import raster
from fastseg.importing.source import ReadOptions, Source, shown

# trainId order: (name, label id, colour)
CLASSES = (
    ("road", 7, (128, 64, 128)),
    ("sidewalk", 8, (244, 35, 232)),
    ("building", 11, (70, 70, 70)),
    ("wall", 12, (102, 102, 156)),
    ("fence", 13, (190, 153, 153)),
    ("pole", 17, (153, 153, 153)),
    ("traffic light", 19, (250, 170, 30)),
    ("traffic sign", 20, (220, 220, 0)),
    ("vegetation", 21, (107, 142, 35)),
    ("terrain", 22, (152, 251, 152)),
    ("sky", 23, (70, 130, 180)),
    ("person", 24, (220, 20, 60)),
    ("rider", 25, (255, 0, 0)),
    ("car", 26, (0, 0, 142)),
    ("truck", 27, (0, 0, 70)),
    ("bus", 28, (0, 60, 100)),
    ("train", 31, (0, 80, 100)),
    ("motorcycle", 32, (0, 0, 230)),
    ("bicycle", 33, (119, 11, 32)),
)
LABEL_IDS = 34  # ids 0-33 are Cityscapes' labels; the 15 not trained on become void
IMAGE_SUFFIX = "_leftImg8bit.png"
MASK_SUFFIX = "_gtFine_labelIds.png"


def train_ids() -> np.ndarray:
    """Lookup (256,) uint16: label id -> train id; unused ids void, values past 33 `NOT_A_LABEL`."""
    table = np.full(256, VOID_LABEL, dtype=np.uint16)
    table[LABEL_IDS:] = raster.NOT_A_LABEL
    for train_id, (_, label_id, _) in enumerate(CLASSES):
        table[label_id] = train_id
    return table


def read(path: Path, options: ReadOptions) -> Source:
    problems: list[str] = []
    names = [name for name, _, _ in CLASSES]
    colors = [colour for _, _, colour in CLASSES]
    if not (path / "gtFine").is_dir() or not (path / "leftImg8bit").is_dir():
        problems.append(f"{shown(path)}: not a Cityscapes root (expected gtFine/ and leftImg8bit/ in it)")
        return Source(names, [], colors=colors, problems=problems, fixed_classes=True)
    table = train_ids()
    defined = f"Cityscapes label ids (0-{LABEL_IDS - 1})"
    items = []
    notes = [
        "Cityscapes: label ids mapped to the 19 train ids (others void); test left out (no public labels)"
    ]
    for split in ("train", "val"):
        for mask in sorted((path / "gtFine" / split).glob(f"*/*{MASK_SUFFIX}")):
            prefix = mask.name[: -len(MASK_SUFFIX)]
            image = path / "leftImg8bit" / split / mask.parent.name / f"{prefix}{IMAGE_SUFFIX}"
            items.append(raster.label_item(path, image, mask, split, table, defined))
        if not any(item.split == split for item in items):
            problems.append(f"{shown(path / 'gtFine' / split)}: no *{MASK_SUFFIX} files")
        # an image whose mask is missing (half a download) is left out: said, not silent
        imaged = set((path / "leftImg8bit" / split).glob(f"*/*{IMAGE_SUFFIX}"))
        unmasked = len(imaged - {item.image for item in items})
        if unmasked:
            notes.append(f"{unmasked} image(s) in leftImg8bit/{split} without a *{MASK_SUFFIX}: left out")
    return Source(names, items, colors=colors, problems=problems, notes=notes, fixed_classes=True)
