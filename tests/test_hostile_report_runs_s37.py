"""A stranger's odd runs and data against `fastseg runs`, `report` and `lr-find` (session 37).

Defects covered:
- runs: a history.csv holding a number of 400 digits (an epoch, a score or a time) stopped
  `fastseg runs` for every run with an OverflowError traceback; now that run's row says its
  history.csv is damaged and the other rows are listed.
- runs: a history.csv cut in the middle of a row (no time) made that row say
  "AttributeError: 'float' object has no attribute 'split'"; the missing time now counts as none.
- runs: RUN/report/metrics.json gave the run its test mIoU after model.pth was retrained, or when
  another run's report was written there; report now records the file it scored and runs checks it.
- lr-find: a first batch whose masks hold no labelled pixel (loss 0) stopped fastai's sweep after
  two batches, and the error was "index 0 is out of bounds for dimension 0 with size 0" with advice
  that did not name the cause; now one line says so, for lr-find and train --lr auto.
- runs: history.csv was read whole whatever its size (192 MB: 18 s, 1.1 GB for one row); it is now
  read as the other run files are, refused past 16 MB; and one that is a FIFO or a device was
  passed over as absent (0 epochs), where it now damages its row (report: "could not be read").
"""

import json

import pytest
from click.testing import CliRunner

from cli.main import main

HISTORY = "epoch,train_loss,valid_loss,valid_pixel_accuracy,valid_miou,time\n"


def _run(folder, history):
    folder.mkdir(parents=True)
    train = {"recipe": "fast", "data": "/data/voc", "train_set": "train", "epochs": 3}
    (folder / "config.json").write_text(json.dumps({"train": train}))
    (folder / "history.csv").write_text(history)


def _rows(root):
    result = CliRunner().invoke(main, ["runs", str(root), "--json", "--sort", "name"])
    assert result.exit_code == 0, result.output
    return {row["name"]: row for row in json.loads(result.output)}


def test_a_history_number_too_large_for_a_float_damages_its_row_only(tmp_path):
    huge = "9" * 400
    _run(tmp_path / "good", HISTORY + "0,1,1,0.8,0.5,00:10\n")
    _run(tmp_path / "epoch", HISTORY + f"{huge},1,1,0.8,0.5,00:10\n")
    _run(tmp_path / "score", HISTORY + f"0,1,1,0.8,{huge},00:10\n")
    _run(tmp_path / "time", HISTORY + f"0,1,1,0.8,0.5,{huge}:00\n")
    _run(tmp_path / "longtime", HISTORY + f"0,1,1,0.8,0.5,{'9' * 5000}\n")  # past int()'s 4300 digits
    rows = _rows(tmp_path)
    assert rows["good"]["valid_miou"] == 0.5 and rows["good"]["status"] == "interrupted"
    for name in ("epoch", "score", "time", "longtime"):
        status = rows[name]["status"]
        assert status.startswith("damaged") and f"{name}/history.csv" in status, status
        assert "too large" in status and "OverflowError" not in status, status


def test_a_history_cut_mid_row_is_read_without_its_time(tmp_path):
    _run(tmp_path / "cut", HISTORY + "0,1,1,0.8,0.5,00:10\n1,1,1,0.8")
    row = _rows(tmp_path)["cut"]
    assert (row["epochs"], row["valid_miou"], row["duration"], row["status"]) == (2, 0.5, 10.0, "interrupted")


def _model_run(folder, voc_root, seed):
    """A run folder as `fastseg train` leaves it, with an untrained model of seed `seed`."""
    import torch

    from fastseg.data.split import seed_split
    from fastseg.data.voc import VOC, find_voc
    from fastseg.model.checkpoint import save_model
    from fastseg.model.config import ModelConfig
    from fastseg.model.network import SegmentationModel
    from fastseg.runs.folder import RunFolder

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = ModelConfig(num_classes=len(VOC))
    save_model(folder / "model.pth", SegmentationModel(config).eval(), config, size=32, classes=VOC)
    data = find_voc(voc_root)
    RunFolder(folder).write_split(seed_split(data.ids("train"), data.ids("val")))
    (folder / "config.json").write_text(json.dumps({"train": {"data": str(voc_root), "epochs": 1}}))


def _report(model, *options):
    result = CliRunner().invoke(main, ["report", "--model", str(model), "--quiet", "--num-workers", "0",
                                       "--precision", "fp32", *options])  # fmt: skip
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_runs_shows_no_test_miou_from_a_report_of_another_model(voc_root, tmp_path):
    """RUN/report/metrics.json gives `fastseg runs` its test mIoU. A model.pth replaced after the
    report (retrained with --force), or another run's report written there (`report --model B
    --out A/report`), still gave A's row that score: a number of another model, silently."""
    import shutil

    runs = tmp_path / "runs"
    _model_run(runs / "a", voc_root, seed=0)
    _model_run(runs / "b", voc_root, seed=1)
    _report(runs / "a")
    shutil.copytree(runs / "a", runs / "copied")  # new modification times, the same bytes
    _report(runs / "b", "--out", str(runs / "b" / "report"))
    shutil.copytree(runs / "b" / "report", runs / "a" / "report", dirs_exist_ok=True)  # b's report in a
    _model_run(runs / "b", voc_root, seed=2)  # b retrained after its report
    rows = _rows(runs)
    mean_iou = json.loads((runs / "copied" / "report" / "metrics.json").read_text())["mean_iou"]
    copied = rows["copied"]
    assert (copied["test_miou"], copied["status"]) == (pytest.approx(mean_iou), "interrupted")
    for name in ("a", "b"):
        assert rows[name]["test_miou"] is None, rows[name]
        assert "report/metrics.json is of another model.pth" in rows[name]["status"], rows[name]


LR_FIND = ["--recipe", "seed", "--size", "32", "--batch-size", "2", "--l1", "0", "--no-pretrained",
           "--num-workers", "0", "--device", "cpu", "--encoder", "regnety_002",
           "--iterations", "20"]  # fmt: skip


@pytest.fixture
def mostly_void(tmp_path):
    """A data set of 4 training images, 3 of whose masks are all void: the seeded shuffle's first
    batch of 2 holds no labelled pixel."""
    import sys
    from pathlib import Path

    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(Path(__file__).parent))
    from demo_folder import make_demo_folder

    yaml = make_demo_folder(tmp_path / "data", ["background", "cat"], counts={"train": 4, "val": 2})
    for mask in sorted((tmp_path / "data" / "masks" / "train").glob("*.png"))[:3]:
        with Image.open(mask) as image:
            void = np.full_like(np.array(image), 255)
        Image.fromarray(void).save(mask)
    return yaml


@pytest.mark.slow
@pytest.mark.parametrize("command", [["lr-find"], ["train", "--lr", "auto", "--epochs", "1"]])
def test_a_first_batch_without_a_labelled_pixel_is_named_when_lr_find_cannot_suggest(
    mostly_void, tmp_path, command
):
    out = tmp_path / "out"
    options = LR_FIND if command[0] == "lr-find" else LR_FIND[:-2]
    result = CliRunner().invoke(
        main, [*command, "--data", str(mostly_void.parent), "--out", str(out), *options]
    )
    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: the learning-rate finder found no suggestion"), line
    assert "no labelled pixel" in line and "--batch-size" in line and "out of bounds" not in line, line
    assert "Traceback" not in result.output and not out.exists()


def test_a_history_past_16_mb_is_refused_as_the_other_run_files_are(tmp_path):
    """config.json and metrics.json past 16 MB were refused in one line; history.csv was read whole
    by pandas (192 MB: 18 s and 1.1 GB of memory for one row of `fastseg runs`)."""
    _run(tmp_path / "good", HISTORY + "0,1,1,0.8,0.5,00:10\n")
    _run(tmp_path / "huge", HISTORY + "0,1.0,1.0,0.8,0.5,00:10\n" * 700_000)  # 16.8 MB
    rows = _rows(tmp_path)
    assert rows["good"]["valid_miou"] == 0.5
    status = rows["huge"]["status"]
    assert status.startswith("damaged") and "huge/history.csv" in status and "too large" in status, status
    assert rows["huge"]["valid_miou"] is None


def test_a_history_that_is_no_file_makes_a_damaged_row_not_an_empty_run(tmp_path):
    """A history.csv that is a FIFO or a link to a device was passed over as absent: the row said
    0 epochs and no score, as for a run that never ended an epoch."""
    import os

    _run(tmp_path / "fifo", HISTORY)
    (tmp_path / "fifo" / "history.csv").unlink()
    os.mkfifo(tmp_path / "fifo" / "history.csv")
    _run(tmp_path / "device", HISTORY)
    (tmp_path / "device" / "history.csv").unlink()
    (tmp_path / "device" / "history.csv").symlink_to("/dev/zero")
    rows = _rows(tmp_path)
    assert "fifo/history.csv: a named pipe (FIFO), not a regular file" in rows["fifo"]["status"], rows["fifo"]
    assert "device/history.csv: a character device" in rows["device"]["status"], rows["device"]
