"""A stranger's hostile pass over train's options that contradict each other, a resume under
another number of processes, and the loader-worker cap's reading of the launcher's variables.

Each test here failed before its fix. Tiny generated data (`--size 32`), at most a few epochs.
"""

from __future__ import annotations

import json

import pytest
import torch
from test_hostile_training_s32 import invoke, usage_error_line

TINY = ["--size", "32", "--crop-size", "32", "--batch-size", "4", "--num-workers", "0", "--device", "cpu",
        "--train-set", "train", "--epochs", "1", "--quiet"]  # fmt: skip


# --- 1. options that contradict each other -------------------------------------------------------


@pytest.fixture
def weights_file(tmp_path):
    path = tmp_path / "encoder.pth"
    torch.save({}, path)
    return path


@pytest.mark.parametrize("source", ["command line", "yaml", "run config.json", "yaml + command line"])
def test_no_pretrained_with_encoder_weights_is_one_usage_line_naming_both(voc_root, tmp_path, weights_file,
                                                                          source):  # fmt: skip
    """`--no-pretrained --encoder-weights FILE`: the file's weights were loaded and --no-pretrained
    dropped without a word (load_encoder_weights: the file wins); from a --config file the same."""
    run = tmp_path / "run"
    options = ["--data", voc_root, "--out", run, *TINY]
    if source == "command line":
        result = invoke("train", *options, "--no-pretrained", "--encoder-weights", weights_file)
    else:
        config = tmp_path / ("config.json" if source == "run config.json" else "options.yaml")
        if source == "run config.json":  # as a run writes it: every field under `train`
            from fastseg.training.recipes import recipe

            values = recipe("fast", data=str(voc_root), pretrained=False).to_dict()
            values["encoder_weights"] = str(weights_file)
            config.write_text(json.dumps({"train": values, "model": {}}))
        elif source == "yaml":
            config.write_text(f"pretrained: false\nencoder_weights: {weights_file}\n")
        else:
            config.write_text(f"encoder_weights: {weights_file}\n")
        extra = ["--no-pretrained"] if source == "yaml + command line" else []
        result = invoke("train", "--config", config, *options, *extra)
    line = usage_error_line(result)
    assert "--encoder-weights" in line and "--no-pretrained" in line, line
    assert not run.exists()


def test_lr_find_refuses_the_same_contradiction(voc_root, tmp_path, weights_file):
    """lr-find reads train's options through the same recipe: the same line."""
    out = tmp_path / "find"
    result = invoke("lr-find", "--data", voc_root, "--out", out, "--size", "32", "--crop-size", "32",
                    "--batch-size", "4", "--num-workers", "0", "--train-set", "train", "--no-pretrained",
                    "--encoder-weights", weights_file)  # fmt: skip
    line = usage_error_line(result)
    assert "--encoder-weights" in line and "--no-pretrained" in line, line
    assert not out.exists()


def test_crop_size_with_squish_from_a_yaml_file_names_both(voc_root, tmp_path):
    """The older rule of the same kind (a crop only random-scale crops take), now from the same
    table: named the same way from a file as from the command line."""
    config = tmp_path / "options.yaml"
    config.write_text("crop_size: 32\nrandom_scale_crop: false\n")
    run = tmp_path / "run"
    result = invoke("train", "--config", config, "--data", voc_root, "--out", run, "--size", "32",
                    "--batch-size", "4", "--no-pretrained", "--train-set", "train", "--epochs", "1",
                    "--quiet")  # fmt: skip
    line = usage_error_line(result)
    assert "--crop-size" in line and "--squish" in line, line
    assert not run.exists()
