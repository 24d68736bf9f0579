"""Validation masks that label no pixel are refused before training (helper G's finding): the run
trained, history.csv held nan scores, epoch 0 was kept as "best" and early stopping ended the run
without a word. And the binary 0/255 hint is given only where the training masks hold void: for
masks of 0 alone it advised a mapping of 255 that was not there."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner
from demo_folder import make_demo_folder
from PIL import Image

from cli.main import main


def run_cli(*arguments):
    return CliRunner().invoke(main, [str(argument) for argument in arguments])


def rewrite_masks(data, split, change):
    for path in sorted((data.parent / "masks" / split).glob("*.png")):
        mask = np.array(Image.open(path))
        Image.fromarray(change(mask).astype(np.uint8), "L").save(path)


def test_validation_masks_that_label_no_pixel_are_refused_before_training(tmp_path):
    data = make_demo_folder(tmp_path / "data", ["background", "road", "car"],
                            counts={"train": 4, "val": 2, "test": 2})  # fmt: skip
    rewrite_masks(data, "val", lambda mask: np.full_like(mask, 255))
    out = tmp_path / "run"
    result = run_cli("train", "--data", data, "--out", out, "--size", "32", "--batch-size", "2",
                     "--epochs", "2", "--no-pretrained", "--num-workers", "0")  # fmt: skip
    assert result.exit_code == 1, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "the validation masks label no pixel (all 2 are void)" in line, line
    assert not (out / "history.csv").exists()
    check = run_cli("check-data", "--data", data)
    assert check.exit_code == 1
    said = "the validation masks label no pixel (all 2 are void)"
    assert any(said in line for line in check.output.splitlines()), check.output


def test_binary_masks_of_0_alone_get_no_0_255_hint(tmp_path):
    """Class 1 absent from training masks that hold no void: the 0/255 advice would not help."""
    counts = {"train": 3, "val": 2, "test": 2}
    data = make_demo_folder(tmp_path / "data", ["background", "object"], counts=counts)
    rewrite_masks(data, "train", lambda mask: np.zeros_like(mask))
    check = run_cli("check-data", "--data", data)
    assert "mask_values: {0: 0, 255: 1}" not in check.output, check.output
    def object_as_255(mask):  # 0/255 masks, as most tools export them: the hint
        mask[: mask.shape[0] // 3] = 255
        return mask

    rewrite_masks(data, "train", object_as_255)
    check = run_cli("check-data", "--data", data)
    assert "mask_values: {0: 0, 255: 1}" in check.output, check.output
