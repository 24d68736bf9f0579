"""A stranger's hostile pass over the class set-ups of one's own data (`dataset.yaml`) through
`train` and `report`: each test is a defect it found, and failed before its fix. The promise: for
a set-up that can work, numbers that are right and finite; no silent NaN in history.csv."""

import csv
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from demo_folder import make_demo_folder
from PIL import Image

from cli.main import main
from fastseg.training.losses import build_loss


def run_cli(*arguments):
    return CliRunner().invoke(main, [str(argument) for argument in arguments])


@pytest.mark.parametrize("name", ["ce", "ce+dice"])
def test_a_batch_labelled_only_with_zero_weight_classes_gives_a_finite_loss(name):
    """A class with no training pixel gets weight 0 (class_weights.json); a validation batch whose
    labelled pixels are all of such classes divided 0 by 0 in the weighted cross-entropy: NaN."""
    weight = torch.tensor([0.4, 1.3, 0.0])
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    target = torch.full((2, 8, 8), 255)
    target[:, :4] = 2  # only the class the training masks never showed, and void
    loss = build_loss(name, weight)(logits, target)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(logits.grad).all() and not logits.grad.any()


def test_a_labelled_batch_keeps_its_weighted_cross_entropy():
    """The guard changes nothing where some labelled pixel has a weight: torch's weighted mean."""
    weight = torch.tensor([0.4, 1.3, 0.0])
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))
    target[0, 0] = 255
    expected = torch.nn.functional.cross_entropy(logits, target, weight=weight, ignore_index=255)
    assert build_loss("ce", weight)(logits, target).item() == expected.item()


@pytest.mark.slow
def test_a_class_absent_from_training_but_all_of_validation_keeps_history_finite(tmp_path):
    """Class 'car' has no training pixel (balanced weight 0) and the validation masks label only
    car: history.csv's valid_loss was nan, beside finite accuracy and mIoU."""
    data = make_demo_folder(tmp_path / "data", ["background", "road", "car"], counts={"train": 4, "val": 2})
    for path in sorted((data.parent / "masks").glob("*/*.png")):
        mask = np.array(Image.open(path))
        if path.parent.name == "train":
            mask = np.where(mask == 2, 1, mask)
        else:  # only car, and void
            mask = np.where(mask == 255, 255, np.where(mask == 0, 255, 2))
        Image.fromarray(mask.astype(np.uint8), "L").save(path)
    out = tmp_path / "run"
    result = run_cli("train", "--data", data, "--out", out, "--size", "32", "--batch-size", "2",
                     "--epochs", "1", "--no-pretrained", "--num-workers", "0",
                     "--class-weights", "balanced")  # fmt: skip
    assert result.exit_code == 0, result.output
    [row] = list(csv.DictReader((out / "history.csv").open()))
    assert math.isfinite(float(row["valid_loss"])), row
    assert float(row["valid_loss"]) == 0.0  # no labelled pixel carries a weight
    assert 0.0 <= float(row["valid_pixel_accuracy"]) <= 1.0


def test_a_void_of_0_before_classes_from_1_is_pointed_at_mask_values(tmp_path):
    """Masks with void 0 and the classes stored from 1 (a common export) set `ignore_index: 0`;
    the error told them to pick 3-255 or drop class 0 from names, neither of which reads those
    masks; `mask_values` does (README "Your own data"), and the line now names it."""
    data = make_demo_folder(tmp_path / "data", ["background", "road", "car"], counts={"train": 2, "val": 1})
    data.write_text(data.read_text() + "ignore_index: 0\n")
    result = run_cli("check-data", "--data", data)
    assert result.exit_code == 1 and "Traceback" not in result.output
    [line] = [line for line in result.output.splitlines() if "ignore_index 0" in line]
    assert line.startswith(f"Error: {data}: ignore_index 0 is the index of class 'background'")
    assert "mask_values: {0: void, 1: 0, 2: 1, 3: 2}" in line
