"""What each input size costs in mIoU, and what INT8 costs, on a held-out generated set.

A model is trained briefly with `fastseg train` (the fast recipe shrunk for a CPU, as `fastseg
demo` does: 64² random-scale crops, here of 96-192 px pictures letterboxed at 128), exported to
ONNX fp32 and, with `fastseg export --int8`, to INT8 (calibrated on its training images, checked
on its validation half). Then a held-out set drawn with another seed, never seen in training or
validation, is scored at each `--sizes` side with the torch model, the fp32 ONNX file and the
INT8 file: one confusion matrix per row, as `fastseg report` scores (full resolution, void
excluded). The default sizes are 0.44, 0.625, 0.75, 1 and 1.5 times the training side: what
224, 320, 384, 512 and 768 are to the fast recipe's 512 (training at 512 is out of a CPU's reach).

    python benchmarks/size_accuracy.py [--epochs 15] [--sizes 56 80 96 128 192] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from fastseg.data.demo_voc import make_demo_voc
from fastseg.data.voc import find_voc
from fastseg.inference.report import evaluate
from fastseg.inference.segmenter import Segmenter


def train_run(data: Path, run: Path, epochs: int, size: int, crop: int) -> float:
    """`fastseg train` on the generated set; returns its wall seconds."""
    command = [
        sys.executable,
        "-m",
        "fastseg",
        "train",
        "--data",
        str(data),
        "--out",
        str(run),
        "--train-set",
        "train",
        "--batch-size",
        "8",
        "--epochs",
        str(epochs),
        "--patience",
        str(epochs),
        "--lr",
        "3e-3",
        "--encoder-lr-ratio",
        "1.0",
        "--no-pretrained",
        "--num-workers",
        "0",
        "--size",
        str(size),
        "--crop-size",
        str(crop),
        "--force",
        "--quiet",
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def held_out_miou(model: Path, data: Path, size: int) -> float:
    folder = find_voc(data)
    ids = (folder.root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    segmenter = Segmenter.open(model, torch.device("cpu"), precision="fp32", size=size)
    total, _ = evaluate(segmenter, folder, ids, None, batch_size=4, num_workers=0)
    return total.scores().mean_iou


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--train-size", type=int, default=128)
    parser.add_argument("--crop-size", type=int, default=64)
    parser.add_argument("--sizes", type=int, nargs="+", default=[56, 80, 96, 128, 192])
    parser.add_argument("--held-out", type=int, default=40, help="held-out images")
    parser.add_argument("--out", type=Path, default=None, help="keep the run and data here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        base = args.out or Path(scratch)
        data, held_out, run = base / "data", base / "held_out", base / "run"
        make_demo_voc(data, n_train=48, n_val=16, seed=0, min_size=96, max_size=192)
        make_demo_voc(held_out, n_train=1, n_val=args.held_out, seed=12345, min_size=96, max_size=192)
        seconds = train_run(data, run, args.epochs, args.train_size, args.crop_size)
        subprocess.run([sys.executable, "-m", "fastseg", "export", str(run), "--quiet"], check=True)
        int8 = subprocess.run(
            [sys.executable, "-m", "fastseg", "export", str(run), "--int8", "--force", "--quiet"],
            check=True,
            capture_output=True,
            text=True,
        )
        print(int8.stdout, end="")
        rows = {}
        for size in args.sizes:
            rows[size] = {
                name: round(held_out_miou(run / file, held_out, size), 4)
                for name, file in (
                    ("torch", "model.pth"),
                    ("onnx_fp32", "model.onnx"),
                    ("onnx_int8", "model.int8.onnx"),
                )
            }
            print(size, rows[size], flush=True)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "training": {
            "epochs": args.epochs,
            "size": args.train_size,
            "crop_size": args.crop_size,
            "seconds": round(seconds),
            "images": 48,
        },
        "export_int8": int8.stdout.strip().splitlines()[0],
        "held_out_images": args.held_out,
        "held_out_miou_by_size": rows,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
