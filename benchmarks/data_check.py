"""The start-up data check on 10,000 pairs: a dataset.yaml data set against VOC, and against the
code before own data sets existed, in the same run.

Every case checks the same VOC-sized pairs (JPEG images 375-500 px, 8-bit PNG masks): a few
hundred distinct pairs generated once and hard-linked under 10,000 names, in both layouts (the
page cache holds them after the first pass, so each case measures the check's own work, not the
disk: the first, warming pass is not counted). Each case is a fresh process timing what
`fastseg train` does before its first batch: open the data set (find VOC / read dataset.yaml and
list its folders), make the split, open every image and mask once on the check's thread pool.

    python benchmarks/data_check.py [--pairs 10000] [--distinct 200] [--repeats 3] [--baseline PATH]

`--baseline` is a source tree of the code before this change (`git worktree add /tmp/before
27183c1`); its VOC check runs with this environment's packages.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent

CHECK = """
import sys, time
sys.path.insert(0, {source!r})
from fastseg.data.check import check_dataset
start = time.perf_counter()
if {own}:
    from fastseg.data.factory import open_dataset
    folder = open_dataset({data!r})
    split = folder.split(None, 42)
else:
    from fastseg.data.split import seed_split
    from fastseg.data.voc import find_voc
    folder = find_voc({data!r})
    split = seed_split(folder.ids("train"), folder.ids("val"))
counts = check_dataset(folder, split)
print(time.perf_counter() - start, counts.shape[0])
"""


def make_pairs(root: Path, pairs: int, distinct: int) -> tuple[Path, Path, Path]:
    """The same pairs as a VOC tree, a dataset.yaml tree with index masks, and one with colour masks."""
    from fastseg.classes import default_colors
    from fastseg.data.demo_voc import DEMO_CLASSES, make_sample
    from fastseg.imaging.masks import write_mask

    rng = np.random.default_rng(0)
    sources = root / "distinct"
    sources.mkdir()
    colours = np.array(default_colors(256), dtype=np.uint8)
    colours[255] = (255, 255, 255)
    for index in range(distinct):
        image, mask = make_sample(rng, DEMO_CLASSES, 375, 500)
        Image.fromarray(image).save(sources / f"{index}.jpg", quality=90)
        write_mask(sources / f"{index}.png", mask)
        Image.fromarray(colours[mask]).save(sources / f"{index}.rgb.png")
    voc = root / "voc" / "VOCdevkit" / "VOC2012"
    own, rgb = root / "own", root / "rgb"
    folders = [voc / "JPEGImages", voc / "SegmentationClass", voc / "ImageSets" / "Segmentation"]
    folders += [
        tree / kind / split
        for tree in (own, rgb)
        for kind in ("images", "masks")
        for split in ("train", "val")
    ]
    for folder in folders:
        folder.mkdir(parents=True)
    ids = [f"{index:06d}" for index in range(pairs)]
    train, val = ids[: pairs * 3 // 4], ids[pairs * 3 // 4 :]
    for position, image_id in enumerate(ids):
        source = position % distinct
        split = "train" if position < len(train) else "val"
        os.link(sources / f"{source}.jpg", voc / "JPEGImages" / f"{image_id}.jpg")
        os.link(sources / f"{source}.png", voc / "SegmentationClass" / f"{image_id}.png")
        for tree, mask in ((own, f"{source}.png"), (rgb, f"{source}.rgb.png")):
            os.link(sources / f"{source}.jpg", tree / "images" / split / f"{image_id}.jpg")
            os.link(sources / mask, tree / "masks" / split / f"{image_id}.png")
    lists = voc / "ImageSets" / "Segmentation"
    (lists / "train.txt").write_text("".join(f"{i}\n" for i in train))
    (lists / "val.txt").write_text("".join(f"{i}\n" for i in val))
    from fastseg.data.voc import VOC_CLASSES

    common = {"names": list(VOC_CLASSES), "train": "images/train", "val": "images/val"}
    (own / "dataset.yaml").write_text(yaml.safe_dump(common))
    (rgb / "dataset.yaml").write_text(
        yaml.safe_dump({**common, "mask_format": "rgb", "ignore_color": [255] * 3})
    )
    return root / "voc", own, rgb


def time_check(source: Path, data: Path, own: bool) -> float:
    script = CHECK.format(source=str(source), own=own, data=str(data))
    output = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    return float(output.split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--distinct", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="source tree of the code before own data sets")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; {args.pairs} pairs")
    with tempfile.TemporaryDirectory() as scratch:
        voc, own, rgb = make_pairs(Path(scratch), args.pairs, args.distinct)
        cases = [("VOC, this code", ROOT, voc, False), ("dataset.yaml, index masks", ROOT, own, True),
                 ("dataset.yaml, colour masks", ROOT, rgb, True)]  # fmt: skip
        if args.baseline:
            cases.insert(0, ("VOC, code before own data sets", args.baseline, voc, False))
        for _, source, data, own_data in cases:  # warm the page cache; not counted
            time_check(source, data, own_data)
        times = {name: [] for name, *_ in cases}
        for _ in range(args.repeats):  # interleaved, so a change in the machine's load hits every case
            for name, source, data, own_data in cases:
                times[name].append(time_check(source, data, own_data))
        reference = statistics.median(times[cases[0][0]])
        print(f"{'case':<32} {'median s':>9} {'pairs/s':>8} {'vs first':>9}   runs")
        for name, values in times.items():
            median = statistics.median(values)
            runs = " ".join(f"{value:.2f}" for value in values)
            print(f"{name:<32} {median:9.2f} {args.pairs / median:8.0f} {median / reference:8.2f}x   {runs}")


if __name__ == "__main__":
    main()
