"""ADE20K SceneParsing (ADEChallengeData2016), in its official layout: `images/{training,
validation}/*.jpg`, `annotations/{training,validation}/*.png` (0 = "other", not labelled; 1-150
the classes) and `objectInfo150.txt` (or the `.csv` of the sceneparsing repository) naming them.
Value 0 becomes void 255 and value k class k - 1, as mmsegmentation's `reduce_zero_label` trains
the 150 classes; each class is named by the first of its synonyms ("building, edifice" ->
building). The official training / validation splits are kept (as train / val).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from fastseg.imaging.images import IMAGE_SUFFIXES
from fastseg.imaging.masks import VOID_LABEL
from fastseg.importing import raster
from fastseg.importing.source import ReadOptions, Source, shown

CLASS_COUNT = 150
SPLITS = {"training": "train", "validation": "val"}


def read(path: Path, options: ReadOptions) -> Source:
    problems: list[str] = []
    names = _names(path, problems)
    items, notes = [], []
    table = np.full(256, raster.NOT_A_LABEL, dtype=np.uint16)
    table[0] = VOID_LABEL
    table[1 : CLASS_COUNT + 1] = np.arange(CLASS_COUNT)
    defined = f"ADE20K classes (0-{CLASS_COUNT})"
    for folder, split in SPLITS.items():
        masks = path / "annotations" / folder
        if not masks.is_dir():
            problems.append(f"{shown(masks)}: not found (ADEChallengeData2016 has annotations/{folder}/)")
            continue
        stems = set()
        for mask in sorted(masks.glob("*.png")):
            found = [
                path / "images" / folder / f"{mask.stem}{suffix}"
                for suffix in (".jpg", *sorted(IMAGE_SUFFIXES))
            ]
            image = next((candidate for candidate in found if candidate.is_file()), found[0])
            items.append(raster.label_item(path, image, mask, split, table, defined))
            stems.add(mask.stem)
        # an image whose mask is missing (half a download) is left out: said, not silent
        images = (path / "images" / folder).glob("*")
        unmasked = sum(
            1 for image in images if image.suffix.lower() in IMAGE_SUFFIXES and image.stem not in stems
        )
        if unmasked:
            notes.append(
                f"{unmasked} image(s) in images/{folder} without a mask in annotations/{folder}: left out"
            )
    notes = ["ADE20K: value 0 (other) is void, values 1-150 are classes 0-149", *notes]
    return Source(names, items, problems=problems, notes=notes, fixed_classes=True)


def _names(path: Path, problems: list[str]) -> list[str]:
    placeholder = [f"class{index:03d}" for index in range(CLASS_COUNT)]
    listing = next(
        (path / name for name in ("objectInfo150.txt", "objectInfo150.csv") if (path / name).is_file()), None
    )
    if listing is None:
        problems.append(f"{shown(path)}: objectInfo150.txt (ADEChallengeData2016's class list) not found")
        return placeholder
    try:
        text = listing.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        problems.append(f"{shown(listing)}: cannot read ({shown(error)})")
        return placeholder
    rows = (
        [line.split("\t") for line in text.splitlines()]
        if "\t" in text
        else list(csv.reader(text.splitlines()))
    )
    names: dict[int, str] = {}
    for row in rows[1:]:
        # isdigit takes "²", which int() refuses; a number of 4,300+ digits int() refuses too
        if len(row) >= 5 and row[0].strip().isdecimal() and len(row[0].strip()) <= 9:
            names[int(row[0])] = row[4].replace(";", ",").split(",")[0].strip()
    if sorted(names) != list(range(1, CLASS_COUNT + 1)) or not all(names.values()):
        problems.append(f"{shown(listing)}: expected {CLASS_COUNT} rows Idx 1-{CLASS_COUNT} with a Name")
        return placeholder
    ordered = [names[index] for index in range(1, CLASS_COUNT + 1)]
    repeated = sorted({name for name in ordered if ordered.count(name) > 1})
    if repeated:  # a first synonym shared by two classes: keep them apart by their index
        ordered = [f"{name} {index + 1}" if name in repeated else name for index, name in enumerate(ordered)]
    return ordered
