"""DDP training under torchrun on CPU (gloo, 2 processes): the run completes, rank 0 alone writes
the run folder, and the validation metrics it logged equal a single-process evaluation."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from fastseg.data.check import check_dataset
from fastseg.data.class_weights import class_weights
from fastseg.data.demo_voc import make_demo_voc
from fastseg.data.voc import NUM_CLASSES, find_voc
from fastseg.metrics import ConfusionMatrix
from fastseg.model.checkpoint import load_model
from fastseg.runs.folder import RunFolder
from fastseg.training.data import build_dataloaders


def single_process_scores(run: Path, voc_root: Path):
    folder = find_voc(voc_root)
    split = RunFolder(run).read_split()
    config = RunFolder(run).read_train_config()
    dls = build_dataloaders(
        folder, split.train, split.valid, size=config.size, batch_size=4, num_workers=0, device="cpu",
        augment=config.augment, crop_size=config.train_size,
    )  # fmt: skip
    model = load_model(run).model
    matrix = ConfusionMatrix(NUM_CLASSES)
    with torch.no_grad():
        for images, masks in dls.valid:
            matrix.update(model(images.as_subclass(torch.Tensor)).argmax(1), masks)
    return matrix.scores()


@pytest.mark.slow
def test_two_process_training_matches_single_process_evaluation(tmp_path):
    voc_root = tmp_path / "data"
    make_demo_voc(voc_root, n_train=16, n_val=14, seed=2, min_size=32, max_size=48)  # 7 validation ids
    run = tmp_path / "run"
    torchrun = Path(sys.executable).parent / "torchrun"
    command = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "fastseg",
        "train",
        "--data",
        str(voc_root),
        "--out",
        str(run),
        "--device",
        "cpu",
        "--epochs",
        "5",
        "--size",
        "48",
        "--crop-size",
        "32",
        "--train-set",
        "train",
        "--batch-size",
        "4",
        "--lr",
        "3e-3",
        "--encoder-lr-ratio",
        "1",
        "--no-pretrained",
        "--num-workers",
        "0",
        "--quiet",
    ]  # fmt: skip  (the default, fast recipe: letterboxed validation; the demo data has no SBD)
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("done:") == 1  # rank 0 alone reports
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == list(range(5))  # one writer: no duplicated rows
    best = history.loc[history["valid_miou"].idxmax()]
    assert best["valid_miou"] > 0.05, "the run must learn something for the comparison to mean anything"
    assert RunFolder(run).read_train_config().resize == "letterbox"
    # Each process checked half the pairs; the gathered counts are the single-process ones
    split = RunFolder(run).read_split()
    counts = check_dataset(find_voc(voc_root), split)
    weights = json.loads((run / "class_weights.json").read_text())
    assert weights["pixel_counts"] == [int(count) for count in counts.sum(0)]
    assert weights["weights"] == pytest.approx(class_weights(counts, weights["method"]).tolist(), abs=1e-6)
    scores = single_process_scores(run, voc_root)
    # 7 validation images over 2 processes: fastai's DistributedDL repeats one to even the shards;
    # the repeat must not be scored, or these would differ
    assert scores.mean_iou == pytest.approx(best["valid_miou"], abs=1e-9)
    assert scores.pixel_accuracy == pytest.approx(best["valid_pixel_accuracy"], abs=1e-9)
