"""The Python steps of `benchmarks/gpu_check.sh`: generated data, predict throughput, the short
training's figures, and the one results file. Each subcommand writes one JSON file of figures;
`summary` gathers them into `benchmarks/results/<date>-<gpu>.json`.

    python benchmarks/gpu_check.py data DIR --images N [--side-range 375 500]
    python benchmarks/gpu_check.py predict --device cuda --images 256 --json FILE
    python benchmarks/gpu_check.py training RUN --seconds S --exit-code C --json FILE
    python benchmarks/gpu_check.py summary PARTS_DIR --out DIR
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from fastseg.atomic import write_json


def make_data(root: Path, images: int, smallest: int, largest: int) -> None:
    """A VOC-format tree of generated images (`fastseg.data.demo_voc`), a sixth of them validation."""
    from fastseg.data.demo_voc import make_demo_voc

    validation = max(2, images // 6)
    make_demo_voc(
        root, n_train=images - validation, n_val=validation, seed=0, min_size=smallest, max_size=largest
    )


def predict_figures(device: str, images: int, size: int, batch_size: int) -> dict:
    """`fastseg predict` as a whole process on `images` VOC-sized JPEGs with an untrained model of
    the default recipe's shape (`size`² letterboxed; speed does not depend on the weights), and
    the model's forward alone on ready tensors, in the same run."""
    import numpy as np
    import torch
    from PIL import Image
    from shared import untrained_model  # beside this script

    from fastseg.imaging.geometry import LETTERBOX
    from fastseg.inference.segmenter import Segmenter
    from fastseg.model.checkpoint import load_model

    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        model = untrained_model(folder / "model.pth", size, resize=LETTERBOX)
        rng = np.random.default_rng(0)
        (folder / "in").mkdir()
        for index in range(images):
            pixels = rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / "in" / f"{index:05d}.jpg", quality=90)
        command = [sys.executable, "-m", "fastseg", "predict", "--model", str(model), str(folder / "in"),
                   "--out", str(folder / "out"), "--quiet", "--device", device,
                   "--batch-size", str(batch_size)]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode:
            raise SystemExit(
                f"gpu_check: fastseg predict failed: {(done.stdout + done.stderr).strip()[-500:]}"
            )
        segmenter = Segmenter.with_torch(load_model(model, torch.device(device)), torch.device(device))
        batch = torch.randn(batch_size, 3, size, size)
        segmenter.logits(batch)  # warm-up: cuDNN autotuning, allocator
        synchronise = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        synchronise()
        repeats = max(2, 64 // batch_size)
        started = time.perf_counter()
        for _ in range(repeats):
            segmenter.logits(batch)
        synchronise()
        forward = repeats * batch_size / (time.perf_counter() - started)
    return {
        "images": images,
        "input": f"{size}x{size} letterbox, 500x375 JPEGs",
        "batch_size": batch_size,
        "precision": str(getattr(segmenter.runtime, "dtype", None) or "fp32").replace("torch.", ""),
        "whole_process_images_per_s": round(images / wall, 2),
        "whole_process_seconds": round(wall, 1),
        "model_forward_images_per_s": round(forward, 1),
    }


def training_figures(run: Path, seconds: float, exit_code: int, images: int) -> dict:
    """What the time-boxed `fastseg train` reached: epochs, best validation mIoU, throughput, read
    from history.csv as `fastseg runs` reads it (a damaged one stops here in one line naming it)."""
    from fastseg.errors import FastsegError
    from fastseg.runs.folder import HISTORY, RunFolder

    folder = RunFolder(run)
    epochs, best, last_row = 0, None, None
    if folder.file(HISTORY).is_file():
        try:
            history, times = folder.read_history(), folder.read_epoch_seconds()
        except FastsegError as error:
            raise SystemExit(f"gpu_check: {error}") from None
        epochs = len(history)
        if history["valid_miou"].notna().any():
            best = round(float(history["valid_miou"].max()), 4)
        if epochs:
            last = history.iloc[-1]  # the file's last row: a redone epoch's earlier row is dropped
            last_row = {name: float(value) for name, value in last.items()}  # a word read as NaN: null
            if math.isfinite(last_row["epoch"]):
                last_row["epoch"] = int(last_row["epoch"])
            last_row["seconds"] = times[-1] if times else None
    return {
        "seconds": round(seconds, 1),
        "exit_code": exit_code,
        "finished": (run / "model.pth").is_file(),
        "epochs_completed": epochs,
        "training_images": images,
        "best_valid_miou": best,
        "last_row": last_row,
        "images_per_s_including_validation_and_startup": round(epochs * images / seconds, 1)
        if seconds
        else None,
    }


def device_name(device: str) -> str:
    import torch

    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return platform.processor() or platform.machine() or "cpu"


def summary(parts: Path, out: Path, device: str) -> Path:
    """Every part's figures in one file named by date and device: `<date>-<gpu>.json`."""
    import torch

    figures = {path.stem: json.loads(path.read_text()) for path in sorted(parts.glob("*.json"))}
    name = device_name(device)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"
    now = datetime.now(timezone.utc)
    result = {
        "date": now.isoformat(timespec="seconds"),
        "device": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        **figures,
    }
    return write_json(out / f"{now:%Y-%m-%d}-{slug}.json", result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data")
    data.add_argument("root", type=Path)
    data.add_argument("--images", type=int, default=600)
    data.add_argument("--side-range", type=int, nargs=2, default=[375, 500])
    predict = commands.add_parser("predict")
    predict.add_argument("--device", default="cuda")
    predict.add_argument("--images", type=int, default=256)
    predict.add_argument("--size", type=int, default=512)
    predict.add_argument("--batch-size", type=int, default=32)
    predict.add_argument("--json", type=Path, required=True)
    training = commands.add_parser("training")
    training.add_argument("run", type=Path)
    training.add_argument("--seconds", type=float, required=True)
    training.add_argument("--exit-code", type=int, required=True)
    training.add_argument("--images", type=int, required=True)
    training.add_argument("--json", type=Path, required=True)
    gather = commands.add_parser("summary")
    gather.add_argument("parts", type=Path)
    gather.add_argument("--out", type=Path, required=True)
    gather.add_argument("--device", default="cuda")
    arguments = parser.parse_args()
    if arguments.command == "data":
        make_data(arguments.root, arguments.images, *arguments.side_range)
    elif arguments.command == "predict":
        figures = predict_figures(arguments.device, arguments.images, arguments.size, arguments.batch_size)
        write_json(arguments.json, figures)
    elif arguments.command == "training":
        figures = training_figures(arguments.run, arguments.seconds, arguments.exit_code, arguments.images)
        write_json(arguments.json, figures)
    else:
        print(summary(arguments.parts, arguments.out, arguments.device))


if __name__ == "__main__":
    main()
