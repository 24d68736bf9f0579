"""What each `--encoder` costs a `fastseg predict` user (#20 part 3): the whole process's images per
second and its start-up, against the default vgg16_bn measured in the same run.

For each encoder an untrained model file is written (speed does not depend on the weights; CamVid's
11 classes, letterboxed), then, in alternating rounds over the encoders so that drift in the
machine's speed falls on all of them alike:
- start-up: the whole `fastseg predict` process on one image (import, model file read, timm's
  model built, one forward, one PNG written): a user's first wait;
- throughput: the whole process on N generated 480x360 JPEGs (CamVid's size) at `--size S`,
  start-up included, as a user's folder run.
The medians of the rounds are reported, with each encoder's parameter count. `--import-rounds N`
adds what timm's import costs a fresh interpreter that has torch already: plain `import timm`
against fastseg's `import_timm` (which keeps timm from importing wandb), alternating.

    python benchmarks/encoder_speed.py [--encoders vgg16_bn resnet18 ...] [--sizes 96 224] \
        [--images 48] [--rounds 3] [--out benchmarks/results/X.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from peer_ratios import cpu_description  # beside this script, as shared is
from PIL import Image
from shared import FASTSEG, predict_arguments, seconds_and_peak_rss

ENCODERS = ("vgg16_bn", "resnet18", "resnet34", "mobilenetv3_large_100", "efficientnet_b0",
            "convnext_tiny", "regnety_004")  # fmt: skip
CAMVID_CLASSES = 11
WIDTH, HEIGHT = 480, 360


def write_model(path: Path, encoder: str, size: int) -> int:
    """An untrained letterboxing model file with `encoder`; returns its parameter count."""
    from fastseg.classes import Classes
    from fastseg.imaging.geometry import LETTERBOX
    from fastseg.model.checkpoint import save_model
    from fastseg.model.config import ModelConfig
    from fastseg.model.network import SegmentationModel

    torch.manual_seed(0)
    config = ModelConfig(num_classes=CAMVID_CLASSES, encoder=encoder)
    model = SegmentationModel(config).eval()
    classes = Classes.create([f"class{index}" for index in range(CAMVID_CLASSES)])
    save_model(path, model, config, size, classes=classes, resize=LETTERBOX)
    return sum(parameter.numel() for parameter in model.parameters())


def write_images(folder: Path, count: int) -> Path:
    """`count` 480x360 JPEGs of smooth noise (compressible as photos are, unlike white noise)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        small = rng.integers(0, 256, (HEIGHT // 8, WIDTH // 8, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((WIDTH, HEIGHT), Image.BILINEAR)
        image.save(folder / f"{index:04d}.jpg", quality=90)
    return folder


def import_seconds(code: str) -> float:
    """Seconds `code` takes in a fresh interpreter after `import torch` (timed inside it)."""
    timed = f"import time, torch; start = time.perf_counter(); {code}; print(time.perf_counter() - start)"
    return float(
        subprocess.run([sys.executable, "-c", timed], check=True, capture_output=True, text=True).stdout
    )


def timm_import(rounds: int) -> dict[str, float]:
    """Median seconds of plain `import timm` and of fastseg's `import_timm`, alternating rounds."""
    codes = {
        "import timm": "import timm",
        "fastseg import_timm": "from fastseg.model.timm_encoder import import_timm; import_timm()",
    }
    seconds: dict[str, list[float]] = {name: [] for name in codes}
    for _ in range(rounds):
        for name, code in codes.items():
            seconds[name].append(import_seconds(code))
    return {name: statistics.median(values) for name, values in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--encoders", nargs="+", default=list(ENCODERS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 224])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--import-rounds", type=int, default=5, help="0: no timm import timing")
    args = parser.parse_args()
    imports = timm_import(args.import_rounds) if args.import_rounds else {}
    print(json.dumps({"timm_import_seconds": imports}), flush=True)

    with tempfile.TemporaryDirectory() as work_name:
        work = Path(work_name)
        folder = write_images(work / "images", args.images)
        one = write_images(work / "one", 1)
        models = {
            (encoder, size): work / f"{encoder}-{size}.pth"
            for encoder in args.encoders
            for size in args.sizes
        }
        parameters = {encoder: write_model(models[encoder, size], encoder, size)
                      for encoder in args.encoders for size in args.sizes}  # fmt: skip
        timings: dict[tuple[str, int], dict[str, list[float]]] = {
            key: {"startup_s": [], "images_per_second": [], "peak_rss_mib": []} for key in models
        }
        for round_index in range(args.rounds):
            for (encoder, size), model in models.items():
                out = work / f"out-{round_index}-{encoder}-{size}"
                startup, _ = seconds_and_peak_rss([*FASTSEG, *predict_arguments(model, one, out / "one")])
                seconds, rss = seconds_and_peak_rss(
                    [*FASTSEG, *predict_arguments(model, folder, out / "all")]
                )
                timing = timings[encoder, size]
                timing["startup_s"].append(startup)
                timing["images_per_second"].append(args.images / seconds)
                timing["peak_rss_mib"].append(rss)
                print(f"round {round_index} {encoder} @{size}: start-up {startup:.2f} s, "
                      f"{args.images / seconds:.1f} img/s, {rss:.0f} MiB", flush=True)  # fmt: skip

    rows = []
    for (encoder, size), timing in timings.items():
        baseline = timings.get(("vgg16_bn", size))
        row = {"encoder": encoder, "size": size, "parameters": parameters[encoder],
               **{name: statistics.median(values) for name, values in timing.items()}}  # fmt: skip
        if baseline:
            row["images_per_second_vs_vgg16_bn"] = row["images_per_second"] / statistics.median(
                baseline["images_per_second"]
            )
        rows.append(row)
        print(json.dumps(row), flush=True)
    report = {"cpu": cpu_description(), "images": args.images, "rounds": args.rounds,
              "image_size": [WIDTH, HEIGHT], "torch": torch.__version__,
              "timm_import_seconds": imports, "rows": rows}  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
