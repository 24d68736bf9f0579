"""`fastseg import coco` speed: 10,000 generated COCO annotations on 2,000 generated images (#22:
under a minute on 2 cores).

Images are 640x480 JPEGs (COCO's typical size); each carries 5 annotations: 4 polygons of 6-20
vertices and 1 compressed RLE, 5 categories with sparse ids. Timed: the whole `fastseg import`
process (read the JSON, check every image's header, draw every mask with pycocotools, hard-link
the images, write the masks, rename into place) and, separately, the check-data survey it prints
afterwards (which decodes every image and mask once more). Generation is not timed.

    python benchmarks/import_speed.py [--images 2000] [--annotations 10000] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask

WIDTH, HEIGHT = 640, 480
CATEGORY_IDS = (1, 3, 18, 44, 90)


def polygon(rng: np.random.Generator) -> list[float]:
    """A star-shaped polygon of 6-20 vertices somewhere in the image."""
    count = int(rng.integers(6, 21))
    centre = rng.uniform([60, 60], [WIDTH - 60, HEIGHT - 60])
    angles = np.sort(rng.uniform(0, 2 * np.pi, count))
    radii = rng.uniform(15, 55, count)
    points = centre + np.stack([np.cos(angles), np.sin(angles)], axis=1) * radii[:, None]
    return points.clip([0, 0], [WIDTH, HEIGHT]).round(2).ravel().tolist()


def generate(root: Path, images: int, annotations: int) -> Path:
    rng = np.random.default_rng(0)
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    base = rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    per_image = annotations // images
    records, entries = [], []
    for index in range(images):
        name = f"{index:012d}.jpg"
        pixels = np.roll(base, index * 7, axis=1)
        Image.fromarray(pixels).save(folder / name, quality=85)
        records.append({"id": index, "file_name": name, "width": WIDTH, "height": HEIGHT})
        for number in range(per_image):
            entry = {"id": len(entries) + 1, "image_id": index, "iscrowd": 0,
                     "category_id": int(CATEGORY_IDS[int(rng.integers(len(CATEGORY_IDS)))])}  # fmt: skip
            if number == per_image - 1:  # one RLE per image, compressed as COCO's tools write it
                blob = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
                x, y = int(rng.integers(0, WIDTH - 80)), int(rng.integers(0, HEIGHT - 80))
                blob[y : y + 70, x : x + 80] = 1
                encoded = coco_mask.encode(np.asfortranarray(blob))
                entry["segmentation"] = {"size": [HEIGHT, WIDTH], "counts": encoded["counts"].decode()}
            else:
                entry["segmentation"] = [polygon(rng)]
            entries.append(entry)
    categories = [{"id": category, "name": f"class{category}"} for category in CATEGORY_IDS]
    path = root / "instances.json"
    path.write_text(json.dumps({"images": records, "annotations": entries, "categories": categories}))
    return path


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--annotations", type=int, default=10000)
    parser.add_argument("--work", type=Path, default=None, help="Where to generate (a temporary folder).")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=arguments.work) as scratch:
        root = Path(scratch)
        started = time.perf_counter()
        export = generate(root / "export", arguments.images, arguments.annotations)
        generated = time.perf_counter() - started
        out = root / "data"
        command = [
            sys.executable,
            "-m",
            "fastseg",
            "import",
            "coco",
            str(export),
            "--out",
            str(out),
            "--quiet",
            "--images",
            str(export.parent / "images"),
        ]
        started = time.perf_counter()
        finished = subprocess.run(
            command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1]
        )
        whole = time.perf_counter() - started
        if finished.returncode != 0:
            sys.exit(f"import failed:\n{finished.stdout}\n{finished.stderr}")
        # the import alone, without the survey: the same import into a second folder, in-process
        from fastseg.importing.importer import import_dataset
        from fastseg.importing.source import ReadOptions

        started = time.perf_counter()
        import_dataset(
            "coco", export, root / "again", read_options=ReadOptions(images=export.parent / "images")
        )
        import_only = time.perf_counter() - started
    result = {
        "images": arguments.images,
        "annotations": arguments.annotations,
        "size": f"{WIDTH}x{HEIGHT}",
        "generation_s": round(generated, 1),
        "fastseg_import_process_s": round(whole, 1),
        "import_without_survey_s": round(import_only, 1),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "load_average_after": [round(load, 1) for load in os.getloadavg()],  # above the cores: shared, noisy
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
