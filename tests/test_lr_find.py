"""`fastseg lr-find` and `train --lr auto` on the tiny generated VOC set: fastai's finder, its
plot and suggestion, and nothing else written."""

import json
import math
import re
import tempfile

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cli.main import main

SUGGESTION = re.compile(r"^suggested --lr (\S+) \(fastai lr_find valley, (\d+) batches\)$", re.MULTILINE)
# regnety_002 at 32², 4 a batch, no L1: its 100-batch sweep takes 9 s here, VGG16-BN's or resnet18's 27
TINY = ["--recipe", "seed", "--size", "32", "--batch-size", "4", "--l1", "0", "--no-pretrained",
        "--num-workers", "0", "--device", "cpu", "--encoder", "regnety_002"]  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread_and_own_scratch(tmp_path, monkeypatch):
    """Tiny tensors: a busy machine's second OpenMP thread only waits. The finder's scratch
    folder goes under this test's own temporary directory, to see that it is removed."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield scratch
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_lr_find_writes_its_plot_and_prints_a_suggestion(voc_root, tmp_path, one_thread_and_own_scratch):
    out = tmp_path / "found"
    result = CliRunner().invoke(main, ["lr-find", "--data", str(voc_root), "--out", str(out), *TINY,
                                       "--iterations", "24"])  # fmt: skip
    assert result.exit_code == 0, result.output
    match = SUGGESTION.search(result.output)
    assert match, result.output
    suggestion = float(match.group(1))
    assert math.isfinite(suggestion) and 1e-7 < suggestion < 10
    assert f"plot: {out / 'lr_find.png'}" in result.output
    assert sorted(path.name for path in out.iterdir()) == ["lr_find.csv", "lr_find.png"]
    with Image.open(out / "lr_find.png") as plot:
        assert plot.format == "PNG" and plot.width > 300
    rows = (out / "lr_find.csv").read_text().splitlines()
    assert rows[0] == "lr,loss" and len(rows) - 1 == int(match.group(2)) <= 24
    lrs = [float(row.split(",")[0]) for row in rows[1:]]
    assert lrs[0] == pytest.approx(1e-7) and lrs == sorted(lrs)
    assert min(lrs) <= suggestion <= max(lrs)
    left = [path.name for path in one_thread_and_own_scratch.iterdir() if path.name.startswith("fastseg-")]
    assert left == []  # the scratch folder with fastai's temporary weights is gone


def test_lr_find_on_bad_data_is_one_line_and_writes_nothing(voc_copy, tmp_path):
    image = next((voc_copy / "VOCdevkit" / "VOC2012" / "JPEGImages").iterdir())
    image.write_bytes(b"not a picture")
    out = tmp_path / "found"
    result = CliRunner().invoke(main, ["lr-find", "--data", str(voc_copy), "--out", str(out), *TINY])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and image.name in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_lr_option_takes_a_positive_number_or_auto(voc_root, tmp_path):
    for value in ("fast", "0", "-1e-3", "nan"):
        result = CliRunner().invoke(main, ["train", "--data", str(voc_root), "--lr", value])
        assert result.exit_code == 2 and "--lr" in result.output, value
    too_few = CliRunner().invoke(main, ["lr-find", "--data", str(voc_root), "--iterations", "5"])
    assert too_few.exit_code == 2


def test_lr_auto_refuses_an_existing_run_before_searching(voc_root, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    arguments = ["train", "--data", str(voc_root), "--out", str(run), *TINY, "--lr", "auto"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 1 and "run folder exists" in result.output
    assert sorted(path.name for path in run.iterdir()) == ["notes.txt"]


@pytest.mark.slow
def test_train_lr_auto_trains_at_the_suggestion_and_records_it(voc_root, tmp_path):
    run = tmp_path / "run"
    arguments = ["train", "--data", str(voc_root), "--out", str(run), *TINY, "--epochs", "1", "--lr", "auto"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    printed = re.search(r"--lr auto: (\S+) \(fastai lr_find valley", result.output)
    assert printed, result.output
    recorded = json.loads((run / "config.json").read_text())["train"]["lr"]
    assert isinstance(recorded, float) and math.isfinite(recorded) and recorded > 0
    assert f"{recorded:.3g}" == printed.group(1)
    assert (run / "model.pth").is_file()
    assert not (run / "lr_find.png").exists()
