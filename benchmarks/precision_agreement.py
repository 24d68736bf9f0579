"""How far bf16 masks differ from fp32 masks on real photos (issue #26).

`--precision auto` runs bf16 autocast on CPUs with native bf16 (AVX512-BF16, AMX), fp32 elsewhere,
so the same `model.pth` writes slightly different masks on the two kinds of CPU. This measures by
how much: for each model, every image of a data set's split is segmented in fp32 and in bf16
(torch autocast, which also runs, emulated and slowly, on CPUs without native bf16, so the figure
does not depend on the CPU measuring it), and it reports the share of pixels whose label differs,
the worst image's share, and the mIoU of each against the masks.

    python benchmarks/precision_agreement.py --data ../shared/data/camvid-dev --split val \
        --model fast=RUN_A/model.pth --model seed=RUN_B/model.pth \
        --out benchmarks/results/precision-agreement.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from peer_ratios import cpu_description  # beside this script

from fastseg.data.factory import open_dataset
from fastseg.inference.segmenter import Segmenter
from fastseg.metrics import ConfusionMatrix
from fastseg.model.checkpoint import load_model


def labels_of(segmenter: Segmenter, path: Path) -> np.ndarray:
    item = segmenter.dataset([path])[0]  # decoded once: it carries the original size
    logits = segmenter.logits(item["image"][None])[0]
    return segmenter.labels(logits, item["height"], item["width"])


def compare(model_path: Path, data_path: Path, split: str) -> dict:
    data = open_dataset(data_path)
    ids = sorted(data.listed_splits()[split])
    loaded = load_model(model_path)
    cpu = torch.device("cpu")
    fp32 = Segmenter.with_torch(loaded, cpu, precision="fp32")
    bf16 = Segmenter.with_torch(load_model(model_path), cpu, precision="bf16")
    matrices = {name: ConfusionMatrix(len(loaded.classes)) for name in ("fp32", "bf16")}
    differing, total, worst = 0, 0, 0.0
    for image_id in ids:
        path = data.image_path(image_id)
        a, b = labels_of(fp32, path), labels_of(bf16, path)
        truth = torch.from_numpy(data.read_mask(image_id).astype(np.int64))
        matrices["fp32"].update(torch.from_numpy(a.astype(np.int64)), truth)
        matrices["bf16"].update(torch.from_numpy(b.astype(np.int64)), truth)
        changed = int((a != b).sum())
        differing, total = differing + changed, total + a.size
        worst = max(worst, changed / a.size)
    return {
        "images": len(ids),
        "pixels_differing": round(differing / total, 6),
        "worst_image_differing": round(worst, 6),
        "miou_fp32": round(float(matrices["fp32"].scores().mean_iou), 4),
        "miou_bf16": round(float(matrices["bf16"].scores().mean_iou), 4),
        "recipe": loaded.metadata.get("train_config", {}).get("recipe"),
        "resize": loaded.resize,
        "size": loaded.size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--model", action="append", required=True, help="NAME=PATH, repeatable")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    report = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_description(), "data": str(args.data),
              "split": args.split, "models": {}}  # fmt: skip
    for entry in args.model:
        name, _, path = entry.partition("=")
        report["models"][name] = compare(Path(path), args.data, args.split)
        print(name, json.dumps(report["models"][name]), flush=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
