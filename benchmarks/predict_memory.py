"""Peak memory of a whole `fastseg predict` process on huge images, against a small image's.

Each case is one `fastseg predict` process (start-up, model load, decode, model, full-size labels,
palette PNG, CSV) with `--num-workers 0`, so decoding happens in the process measured; its peak
RSS is `ru_maxrss` of a wrapper's children (`getrusage(RUSAGE_CHILDREN)`: only that process). The
baseline is the same process on one 500x375 JPEG, in the same run; what a huge image adds is
reported in MiB and in bytes per pixel above it.

Cases: a 6000x4000 photo-like JPEG (24 Mpx) and a 9400x9400 greyscale PNG (88 Mpx, under Pillow's
decompression-bomb limit of 89.5 Mpx, about 0.1 MB on disk), each with and without `--overlay`,
and with `--tile N` each also through the sliding window (`--tile N --overlap F`: N² tiles at
the image's own resolution, a buffer of N rows of class scores).

    python benchmarks/predict_memory.py [--cases photo grey] [--overlay] [--tile 512 [--overlap 0.25]]
                                        [--checkout PATH]

`--checkout` runs `fastseg` from another source tree (e.g. a `git worktree` of an older commit)
with this environment's packages, to measure the code before a change in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from itertools import product
from pathlib import Path

import numpy as np
from PIL import Image
from shared import untrained_model  # beside this script

IMAGES = {"small": (500, 375), "photo": (6000, 4000), "grey": (9400, 9400)}


def make_image(kind: str, folder: Path) -> Path:
    """`small`/`photo`: smooth colour gradients with noise, as JPEG; `grey`: an 8-bit greyscale PNG
    of a few flat regions (compresses to ~0.1 MB, like a scanned page or a mask)."""
    width, height = IMAGES[kind]
    if kind == "grey":
        pixels = np.zeros((height, width), dtype=np.uint8)
        pixels[height // 4 : height // 2, width // 3 : 2 * width // 3] = 200
        path = folder / "grey.png"
        Image.fromarray(pixels, mode="L").save(path)
        return path
    rows = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    columns = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    noise = np.random.default_rng(0).integers(0, 24, (height, width), dtype=np.uint8)
    channels = [(rows + noise) % 256, (columns + noise) % 256, ((rows + columns) / 2 + noise) % 256]
    path = folder / f"{kind}.jpg"
    Image.fromarray(np.stack(channels, -1).astype(np.uint8)).save(path, quality=90)
    return path


def make_model(folder: Path, size: int) -> Path:
    """An untrained model of the default (fast) recipe's shape: `size`² letterboxed input."""
    from fastseg.imaging.geometry import LETTERBOX

    return untrained_model(folder / "model.pth", size, resize=LETTERBOX)


def peak_rss(
    model: Path, image: Path, out: Path, overlay: bool, checkout: Path | None, tiles: list[str] | None = None
) -> tuple[int, str]:
    """Peak RSS in bytes of one `fastseg predict` process on `image` (`tiles`: the `--tile` and
    `--overlap` options, if any), and its last output line."""
    measure = (
        "import resource, subprocess, sys; "
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, done.returncode); "
        "print((done.stdout + done.stderr).strip().splitlines()[-1])"
    )
    command = [sys.executable, "-m", "fastseg", "predict", "--model", str(model), str(image),
               "--out", str(out), "--quiet", "--num-workers", "0", "--batch-size", "1",
               *(["--overlay"] if overlay else []), *(tiles or [])]  # fmt: skip
    environment = dict(os.environ)
    if checkout is not None:
        environment["PYTHONPATH"] = str(checkout)
    result = subprocess.run([sys.executable, "-c", measure, *command], capture_output=True, text=True,
                            check=True, cwd=checkout, env=environment)  # fmt: skip
    numbers, last_line = result.stdout.splitlines()[:2]
    rss_kib, returncode = map(int, numbers.split())
    return rss_kib * 1024, last_line if returncode == 0 else f"exit {returncode}: {last_line}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", choices=[kind for kind in IMAGES if kind != "small"],
                        default=["photo", "grey"])  # fmt: skip
    parser.add_argument("--overlay", action="store_true", help="Also measure each case with --overlay.")
    parser.add_argument("--size", type=int, default=512, help="The model's input side.")
    parser.add_argument("--checkout", type=Path, default=None, help="Run fastseg from this source tree.")
    parser.add_argument("--tile", type=int, default=0, help="Also run each large case with --tile N.")
    parser.add_argument("--overlap", type=float, default=0.25, help="The --overlap of the tiled cases.")
    arguments = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} CPU threads, Python {platform.python_version()}"
          f"{f', fastseg from {arguments.checkout}' if arguments.checkout else ''}")  # fmt: skip
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        model = make_model(folder, arguments.size)
        overlays = [False, True] if arguments.overlay else [False]
        baseline = {}
        print(f"{'case':<34}{'peak RSS MiB':>14}{'above small MiB':>17}{'bytes/pixel':>13}  result")
        tilings = [None] + ([["--tile", str(arguments.tile), "--overlap", str(arguments.overlap)]]
                            if arguments.tile else [])  # fmt: skip
        for kind in ["small", *arguments.cases]:
            image = make_image(kind, folder)
            width, height = IMAGES[kind]
            for overlay, tiles in product(overlays, tilings if kind != "small" else [None]):
                out = folder / f"out-{kind}-{overlay}-{bool(tiles)}"
                started = time.perf_counter()
                rss, outcome = peak_rss(model, image, out, overlay, arguments.checkout, tiles)
                outcome = f"{outcome} ({time.perf_counter() - started:.0f} s)"
                baseline.setdefault(overlay, rss)
                above = rss - baseline[overlay]
                name = f"{kind} {width}x{height}{' --overlay' if overlay else ''}{' tiled' if tiles else ''}"
                figures = f"{rss / 2**20:>14,.0f}{above / 2**20:>17,.0f}{above / (width * height):>13.1f}"
                print(f"{name:<34}{figures}  {outcome[-70:]}")


if __name__ == "__main__":
    main()
