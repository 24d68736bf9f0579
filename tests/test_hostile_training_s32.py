"""A stranger's hostile pass over `fastseg train`, `fastseg lr-find` and their files.

Each test here failed before its fix (a traceback for a user's mistake, an option silently
dropped, or hours of training on nothing); each now ends in one line naming the option or file,
exit 1, and nothing made. Tiny generated data, `--size 32/64`, at most one epoch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from demo_folder import make_demo_folder
from fastai.callback.core import Callback
from PIL import Image

from cli.main import main
from fastseg.training.recipes import recipe
from fastseg.training.resume import TrainingInterrupted
from fastseg.training.trainer import train

TINY = ["--size", "32", "--crop-size", "32", "--batch-size", "4", "--no-pretrained", "--num-workers", "0",
        "--quiet"]  # fmt: skip


def invoke(*arguments):
    return CliRunner().invoke(main, [str(argument) for argument in arguments])


def one_error_line(result) -> str:
    """The one line of a refused command (exit 1, no traceback)."""
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and len(lines) == 1, result.output
    return lines[0]


def usage_error_line(result) -> str:
    """The `Error:` line of options that cannot work together (exit 2, as click's own usage errors)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


# --- an output folder whose name the file system refuses ---------------------------------------


@pytest.mark.parametrize("command", ["train", "lr-find", "train --config"])
def test_a_run_folder_name_too_long_for_the_file_system_is_one_line(voc_root, tmp_path, command):
    """`--out` (or a --config file's `out:`) naming a 300-byte folder: the file system's
    ENAMETOOLONG was a traceback (pathlib's exists() raises it) from train's lock and lr-find's
    output check."""
    too_long = tmp_path / ("x" * 300)
    options = ["--data", voc_root, "--train-set", "train", "--epochs", "1", *TINY]
    if command == "lr-find":
        options.remove("--epochs"), options.remove("1")
        result = invoke("lr-find", "--out", too_long, *options)
    elif command == "train":
        result = invoke("train", "--out", too_long, *options)
    else:
        config = tmp_path / "my.yaml"
        config.write_text(f"out: {too_long}\n")
        result = invoke("train", "--config", config, *options)
    line = one_error_line(result)
    assert str(too_long) in line and "name too long" in line.lower(), line
    assert sorted(path.name for path in tmp_path.iterdir()) == (["my.yaml"] if "config" in command else [])


# --- --resume with options it would ignore ----------------------------------------------------


class InterruptAfterFirstEpoch(Callback):
    order = 100  # after ResumableCheckpoint wrote last.pth

    def after_epoch(self):
        if self.learn.epoch == 0:
            raise KeyboardInterrupt


@pytest.fixture
def interrupted_run(voc_root, tmp_path) -> Path:
    """A 3-epoch run stopped by Ctrl-C after its first epoch: resumable, 1 epoch done."""
    run_dir = tmp_path / "run"
    config = recipe("fast", data=str(voc_root), out=str(run_dir), train_set="train", size=32, crop_size=32,
                    batch_size=4, epochs=3, pretrained=False, num_workers=0, seed=3)  # fmt: skip
    with pytest.raises(TrainingInterrupted):
        train(config, run_dir, show_progress=False, callbacks=[InterruptAfterFirstEpoch()])
    return run_dir


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--epochs", "5"], "--epochs"),
        (["--lr", "0.5", "--batch-size", "2"], "--lr, --batch-size"),
        (["--data", "elsewhere"], "--data"),
        (["--log", "tensorboard"], "--log"),
        (["--force"], "--force"),
    ],
)
def test_resume_refuses_the_options_it_would_silently_ignore(interrupted_run, options, named):
    """`train --resume RUN --epochs 5` trained RUN's own 3 epochs and exited 0: the options given
    with --resume were dropped without a word (the run continues with its config.json). Now
    they are refused as a usage error (exit 2, as any two options that cannot go together), in one
    line naming them, before the run is touched."""
    before = {path.name: path.read_bytes() for path in interrupted_run.iterdir() if path.is_file()}
    line = usage_error_line(invoke("train", "--resume", interrupted_run, *options))
    assert named in line and "config.json" in line, line
    after = {path.name: path.read_bytes() for path in interrupted_run.iterdir() if path.is_file()}
    assert after == before
    assert json.loads((interrupted_run / "last.json").read_text())["completed_epochs"] == 1


def test_resume_with_quiet_still_continues(interrupted_run):
    """--quiet and --verbose only change what is printed, so they stay allowed with --resume."""
    result = invoke("train", "--resume", interrupted_run, "--quiet", "--verbose")
    assert result.exit_code == 0, result.output
    assert json.loads((interrupted_run / "last.json").read_text()) == {
        "finished": True,
        "completed_epochs": 3,
    }


# --- data a batch of one cannot train, data with nothing to learn -------------------------------


def one_image_data(tmp_path: Path) -> Path:
    return make_demo_folder(tmp_path / "one", ["background", "thing"], counts={"train": 1, "val": 2})


@pytest.mark.parametrize("command", ["train", "lr-find"])
def test_a_batch_of_one_at_a_32_pixel_input_is_refused_before_anything(tmp_path, command):
    """One training image makes batches of one; at --size 32 VGG's deepest map is 1x1, so
    BatchNorm sees one value per channel and raised ValueError mid-epoch: a traceback from
    train, and from lr-find a line blaming --iterations."""
    out = tmp_path / "out"
    extra = ["--epochs", "1"] if command == "train" else []
    line = one_error_line(invoke(command, "--data", one_image_data(tmp_path), "--out", out, *TINY, *extra))
    assert "batch" in line and "--size 64" in line and "iterations" not in line, line
    assert not out.exists()


def test_an_explicit_batch_size_of_one_at_size_32_is_refused(voc_root, tmp_path):
    out = tmp_path / "run"
    options = ["--data", voc_root, "--train-set", "train", "--out", out, "--epochs", "1", *TINY]
    options[options.index("--batch-size") + 1] = "1"
    line = one_error_line(invoke("train", *options))
    assert "--batch-size 1" in line and "--size 64" in line, line
    assert not out.exists()


def test_a_batch_of_one_at_size_64_still_trains(tmp_path):
    """The refusal is for the inputs BatchNorm cannot train on, not for small data sets."""
    options = [*TINY]
    options[options.index("--size") + 1] = options[options.index("--crop-size") + 1] = "64"
    result = invoke("train", "--data", one_image_data(tmp_path), "--out", tmp_path / "run", "--epochs", "1",
                    *options)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["batch_size"] == 1


def void_training_masks(tmp_path: Path) -> Path:
    """Three classes: with two, check_dataset's binary-mask hint (0/255 masks) speaks first."""
    data = make_demo_folder(tmp_path / "void", ["background", "a", "b"], counts={"train": 4, "val": 2})
    for mask in (tmp_path / "void" / "masks" / "train").glob("*.png"):
        Image.fromarray(np.full_like(np.asarray(Image.open(mask)), 255), "L").save(mask)
    return data


@pytest.mark.parametrize("command", ["train", "lr-find"])
def test_training_masks_that_are_all_void_are_refused(tmp_path, command):
    """Training masks labelling no pixel (all void): train ran every epoch at loss 0 and exited
    0 with an untrained model, and lr-find suggested a rate from a flat loss of 0."""
    out = tmp_path / "out"
    extra = ["--epochs", "1"] if command == "train" else []
    line = one_error_line(
        invoke(command, "--data", void_training_masks(tmp_path), "--out", out, *TINY, *extra)
    )
    assert "void" in line and "training masks" in line and "no pixel" in line, line
    assert not out.exists()


# --- a YAML file with a `train` mapping beside other options ----------------------------------


def test_a_yaml_config_with_a_train_key_beside_options_is_not_read_as_a_run_config(voc_root, tmp_path):
    """`epochs: 2` next to `train: {lr: 0.1}` was read as a run's config.json: `train`'s values
    taken and every other key, typos included, dropped without a word."""
    config = tmp_path / "my.yaml"
    config.write_text("epochs: 2\nepoch: 3\ntrain: {lr: 0.1}\n")
    out = tmp_path / "run"
    line = one_error_line(invoke("train", "--config", config, "--data", voc_root, "--out", out, *TINY))
    assert str(config) in line and "unknown keys: epoch, train" in line, line
    assert not out.exists()


# --- a batch too big for the memory --------------------------------------------------------------


def run_out_of_memory(monkeypatch):
    """The network's forward fails as torch's CUDA allocator does when a batch does not fit."""
    import torch

    from fastseg.model.network import SegmentationModel

    def forward(self, images):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(SegmentationModel, "forward", forward)


@pytest.mark.parametrize("command", ["train", "lr-find"])
def test_out_of_memory_says_to_take_a_smaller_batch_or_size(voc_root, tmp_path, monkeypatch, command):
    """A batch too big for the GPU (the first thing a user tries on a new machine) was a
    traceback from train, and lr-find's line advised "a larger --batch-size". Now one line saying
    what ran out and which options to lower, exit 1, and nothing left behind."""
    run_out_of_memory(monkeypatch)
    out = tmp_path / "out"
    extra = ["--epochs", "1"] if command == "train" else []
    line = one_error_line(
        invoke(command, "--data", voc_root, "--train-set", "train", "--out", out, *TINY, *extra)
    )
    assert "out of memory" in line and "--batch-size 4" in line and "32 px" in line, line
    assert "smaller --batch-size or --size" in line and "larger" not in line, line
    assert not out.exists()


# --- a config.json edited between the interruption and --resume ---------------------------------


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("epochs", 5, "epochs 3 -> 5"),
        ("size", 64, "size 32 -> 64"),
        ("freeze_epochs", 2, "freeze_epochs 0 -> 2"),
    ],
)
def test_resume_refuses_a_config_json_edited_since_the_checkpoint(interrupted_run, field, value, named):
    """--resume trains what config.json says, and config.json can be edited: `epochs` 3 -> 5 after
    epoch 1 trained the rest on another one-cycle schedule (the done epoch's learning rates
    belonged to a 3-epoch run), a new `size` on other inputs, a new `freeze_epochs` a warm-up in
    the middle, each exiting 0 as if the run had always been so. The checkpoint now holds the
    options it was trained with, and a resume whose config.json differs is one line naming the
    changes, before any epoch is spent."""
    path = interrupted_run / "config.json"
    values = json.loads(path.read_text())
    values["train"][field] = value
    if field == "size":
        values["train"]["crop_size"] = value
    path.write_text(json.dumps(values))
    before = {path.name: path.read_bytes() for path in interrupted_run.iterdir() if path.is_file()}
    line = one_error_line(invoke("train", "--resume", interrupted_run, "--quiet"))
    assert str(path) in line and named in line, line
    after = {path.name: path.read_bytes() for path in interrupted_run.iterdir() if path.is_file()}
    assert after == before


def test_resume_still_takes_a_moved_data_set_and_another_device(interrupted_run, voc_root, tmp_path):
    """What does not change what is trained (where the data lives, the device, loader workers)
    may differ between the checkpoint and the resume."""
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(voc_root, moved)
    path = interrupted_run / "config.json"
    values = json.loads(path.read_text())
    values["train"].update(data=str(moved), device="cpu", num_workers=0)
    path.write_text(json.dumps(values))
    result = invoke("train", "--resume", interrupted_run, "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads((interrupted_run / "last.json").read_text()) == {
        "finished": True,
        "completed_epochs": 3,
    }


# --- an option the run would ignore ---------------------------------------------------------------


def test_patience_with_the_final_epoch_kept_is_said(voc_root, tmp_path, monkeypatch):
    """`--patience 3` on the fast recipe (which keeps the final epoch, no early stopping) trained
    every epoch without a word: patience is only read with --keep best. Now a note says so (not
    an error: scripts pass `--patience EPOCHS` to mean no early stop, as
    benchmarks/size_accuracy.py does)."""
    import fastseg.training.trainer
    from fastseg.training.result import TrainResult

    seen = {}

    def fake_train(config, run_dir, **kw):
        seen.update(c=config)
        return TrainResult(run_dir, epochs_run=1, best_epoch=None, best_miou=None, best_pixel_accuracy=None,
                           stopped_early=False)  # fmt: skip

    monkeypatch.setattr(fastseg.training.trainer, "train", fake_train)
    options = ["--data", voc_root, "--train-set", "train", "--out", tmp_path / "run", "--epochs", "7", *TINY]
    result = invoke("train", *options, "--patience", "3")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "--patience" in notes[0] and "--keep best" in notes[0], result.output
    assert "all 7 epochs" in notes[0] and seen["c"].keep == "final"
    assert "note:" not in invoke("train", *options, "--patience", "3", "--keep", "best").output


def test_patience_from_a_config_file_with_the_final_epoch_kept_is_said(voc_root, tmp_path, monkeypatch):
    """`patience: 3` in a --config YAML on the fast recipe was dropped without a word (the note
    looked at the command line alone). A run's own config.json, which records every field, holds
    the recipe's patience and gets no note when it is repeated."""
    import fastseg.training.trainer
    from fastseg.training.result import TrainResult

    def fake_train(config, run_dir, **kw):
        return TrainResult(run_dir, epochs_run=1, best_epoch=None, best_miou=None, best_pixel_accuracy=None,
                           stopped_early=False)  # fmt: skip

    monkeypatch.setattr(fastseg.training.trainer, "train", fake_train)
    options = ["--data", voc_root, "--train-set", "train", "--epochs", "7", *TINY]
    yaml_file = tmp_path / "my.yaml"
    yaml_file.write_text("patience: 3\n", encoding="utf-8")
    result = invoke("train", *options, "--out", tmp_path / "a", "--config", yaml_file)
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "patience: 3" in notes[0] and "my.yaml" in notes[0], result.output
    assert "all 7 epochs" in notes[0] and "--keep best" in notes[0]
    yaml_file.write_text("patience: 3\nkeep: best\n", encoding="utf-8")
    assert "note:" not in invoke("train", *options, "--out", tmp_path / "b", "--config", yaml_file).output
    run_config = tmp_path / "config.json"  # as a fast-recipe run writes it: every field, patience 20
    from fastseg.training.recipes import RECIPES

    fields = {"recipe": "fast", "keep": "final", "patience": RECIPES["fast"]().patience, "epochs": 7}
    run_config.write_text(json.dumps({"train": fields}), encoding="utf-8")
    result = invoke("train", *options, "--out", tmp_path / "c", "--config", run_config)
    assert result.exit_code == 0 and "note:" not in result.output, result.output


def test_patience_with_the_best_epoch_kept_is_taken(voc_root, tmp_path, monkeypatch):
    import fastseg.training.trainer

    seen = {}
    monkeypatch.setattr(
        fastseg.training.trainer, "train", lambda config, run_dir, **kw: seen.update(c=config)
    )
    options = ["--data", voc_root, "--train-set", "train", "--out", tmp_path / "run", "--epochs", "1", *TINY]
    invoke("train", *options, "--patience", "3", "--keep", "best")
    assert (seen["c"].patience, seen["c"].keep) == (3, "best")
    squished = [*options[: options.index("--crop-size")], *options[options.index("--crop-size") + 2 :]]
    invoke("train", *squished, "--patience", "3", "--recipe", "seed")  # the seed's recipe keeps the best
    assert (seen["c"].recipe, seen["c"].patience, seen["c"].keep) == ("seed", 3, "best")


# --- lr-find after a full disk -------------------------------------------------------------------


def test_lr_find_runs_again_after_a_full_disk_between_its_two_files(voc_root, tmp_path, fill_disk_at):
    """The disk filled while lr_find.csv was written, after lr_find.png: the same command, run
    again once there was space, was refused ("an earlier lr-find's plot; use --force"), though
    README promises a full disk leaves nothing that blocks the same command. A lone file of the
    pair is the remains of an lr-find that did not finish, not an earlier result --force guards."""
    out = tmp_path / "sweep"
    command = [
        "lr-find",
        "--data",
        voc_root,
        "--train-set",
        "train",
        "--out",
        out,
        "--iterations",
        "20",
        *TINY,
    ]
    free = fill_disk_at("lr_find.csv")
    assert "No space left" in one_error_line(invoke(*command))
    assert sorted(path.name for path in out.iterdir()) == ["lr_find.png"]
    free()
    again = invoke(*command)
    assert again.exit_code == 0, again.output
    assert sorted(path.name for path in out.iterdir()) == ["lr_find.csv", "lr_find.png"]
    assert one_error_line(invoke(*command)).endswith("use --force to replace it, or choose another --out")


def test_resume_of_a_folder_that_is_no_run_says_so(tmp_path):
    """`--resume` of a folder of one's own (no run in it) said "config.json: cannot read the run
    config (No such file or directory)", as if a run had lost its config; now it says there is no
    resumable checkpoint in it, as for a run stopped before its first one, and touches nothing."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.txt").write_text("mine")
    line = one_error_line(invoke("train", "--resume", folder))
    assert line == f"Error: {folder}: no resumable checkpoint (last.json) in this folder", line
    assert [path.name for path in folder.iterdir()] == ["a.txt"]


def test_an_augmentation_field_given_at_the_top_and_under_augment_is_refused(voc_root, tmp_path):
    """`flip_p: 0.1` and `augment: {flip_p: 0.9}` in one file: the second won without a word (the
    file loader refuses a key given twice, but these are two spellings of one option)."""
    config = tmp_path / "my.yaml"
    config.write_text("flip_p: 0.1\naugment: {flip_p: 0.9, blur_p: 0.2}\n")
    out = tmp_path / "run"
    line = one_error_line(invoke("train", "--config", config, "--data", voc_root, "--out", out, *TINY))
    assert str(config) in line and "flip_p" in line and "twice" in line and "blur_p" not in line, line
    assert not out.exists()


def test_resume_takes_the_device_and_loader_workers_of_the_machine_it_runs_on(interrupted_run):
    """Where a run resumes is not what it trains: `--device` and `--num-workers` (which were
    ignored like every other option) apply to the resumed process, so a run whose config.json
    names a device this machine lacks can go on here."""
    path = interrupted_run / "config.json"
    values = json.loads(path.read_text())
    values["train"]["device"] = "mps"  # recorded on another machine
    path.write_text(json.dumps(values))
    assert "mps" in one_error_line(invoke("train", "--resume", interrupted_run, "--quiet"))
    result = invoke("train", "--resume", interrupted_run, "--quiet", "--device", "cpu", "--num-workers", "0")
    assert result.exit_code == 0, result.output
    assert json.loads((interrupted_run / "last.json").read_text()) == {
        "finished": True,
        "completed_epochs": 3,
    }
