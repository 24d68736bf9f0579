"""The benchmarks read a run's history.csv through `fastseg.runs` (its one reader), not by hand:
a resumed run's repeated header row or redone epoch is read as `fastseg runs` reads it, and a
damaged file stops the script in one line naming the file, never a traceback."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
HEADER = "epoch,train_loss,valid_loss,valid_miou,valid_pixel_accuracy,time"


def benchmark(name: str):
    """A script of benchmarks/ as a module (the folder is no package; scripts import `shared`)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def write_history(run: Path, *lines: str) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    (run / "history.csv").write_text("\n".join([HEADER, *lines]) + "\n")
    return run


def test_gpu_check_reads_a_resumed_runs_history_as_fastseg_runs_does(tmp_path):
    """An older version's resumed run repeats the header row and the epoch it redid: the header
    was read as an epoch whose mIoU is "valid_miou" (ValueError), the redone epoch counted twice."""
    gpu_check = benchmark("gpu_check")
    run = write_history(
        tmp_path / "run",
        "0,1.0,0.9,0.25,0.5,00:10",
        "1,0.8,0.7,0.375,0.6,00:12",  # killed after this row, before its checkpoint
        HEADER,
        "1,0.8,0.7,0.5,0.625,01:02",  # the resumed run redoes epoch 1
    )
    figures = gpu_check.training_figures(run, seconds=40.0, exit_code=0, images=10)
    assert figures["epochs_completed"] == 2 and figures["best_valid_miou"] == 0.5
    assert figures["images_per_s_including_validation_and_startup"] == 0.5  # 2 epochs x 10 / 40 s
    assert figures["last_row"] == {"epoch": 1, "train_loss": 0.8, "valid_loss": 0.7, "valid_miou": 0.5,
                                   "valid_pixel_accuracy": 0.625, "seconds": 62.0}  # fmt: skip
    assert figures["finished"] is False and figures["exit_code"] == 0


@pytest.mark.parametrize("header_only", [False, True], ids=["no-file", "header-only"])
def test_gpu_check_without_an_epoch_reports_none(tmp_path, header_only):
    """Stopped before its first epoch ended: no figures to read, not an error."""
    gpu_check = benchmark("gpu_check")
    run = write_history(tmp_path / "run") if header_only else tmp_path / "run"
    run.mkdir(exist_ok=True)
    figures = gpu_check.training_figures(run, seconds=5.0, exit_code=1, images=10)
    assert figures["epochs_completed"] == 0 and figures["best_valid_miou"] is None
    assert figures["last_row"] is None and figures["images_per_s_including_validation_and_startup"] == 0


@pytest.mark.parametrize("epoch", ["abc", "1e400"])
def test_gpu_check_keeps_a_last_row_whose_epoch_is_no_whole_number(tmp_path, epoch):
    """A word or a number past float's range where the epoch should be was `int(nan)` /
    `int(inf)`: a traceback. The row is kept, its epoch a float (null in the JSON for NaN)."""
    gpu_check = benchmark("gpu_check")
    run = write_history(tmp_path / "run", "0,1.0,0.9,0.25,0.5,00:10", f"{epoch},0.8,0.7,0.5,0.6,00:12")
    figures = gpu_check.training_figures(run, seconds=10.0, exit_code=0, images=10)
    assert figures["epochs_completed"] == 2 and figures["best_valid_miou"] == 0.5
    assert figures["last_row"]["valid_miou"] == 0.5 and figures["last_row"]["seconds"] == 12.0
    assert not isinstance(figures["last_row"]["epoch"], int)


@pytest.mark.parametrize(
    "content, words",
    [
        (b"epoch,valid_miou\n0,\xff\n", "not UTF-8 text"),
        (b"", "not a history fastseg wrote"),
        (b"valid_miou,valid_pixel_accuracy,time\n0.5,0.8,00:10\n", "no epoch column"),
    ],
    ids=["not-utf-8", "empty", "no-epoch"],
)
def test_gpu_check_names_a_damaged_history_in_one_line(tmp_path, content, words):
    gpu_check = benchmark("gpu_check")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "history.csv").write_bytes(content)
    with pytest.raises(SystemExit) as stopped:
        gpu_check.training_figures(tmp_path / "run", seconds=5.0, exit_code=0, images=10)
    message = str(stopped.value.code)
    assert message.startswith(f"gpu_check: {tmp_path / 'run' / 'history.csv'}: ") and words in message
    assert "\n" not in message


def test_torture_wants_every_epoch_in_the_history_once(tmp_path):
    torture = benchmark("torture")
    rows = ["0,1.0,0.9,0.25,0.5,00:10", "1,0.8,0.7,0.375,0.6,00:12", "2,0.7,0.6,0.5,0.7,00:11"]
    assert torture.history_problem(write_history(tmp_path / "whole", *rows), 3) is None
    twice = write_history(tmp_path / "twice", *rows[:2], rows[1], rows[2])  # epoch 1 written twice
    wanted = "not 0 to 2 once each"
    assert torture.history_problem(twice, 3) == f"{twice / 'history.csv'}: epochs 0, 1, 2 in 4 rows, {wanted}"
    short = write_history(tmp_path / "short", *rows[:2])
    assert torture.history_problem(short, 3) == f"{short / 'history.csv'}: epochs 0, 1 in 2 rows, {wanted}"
    word = write_history(tmp_path / "word", *rows[:2], "abc,0.7,0.6,0.5,0.7,00:11")
    assert torture.history_problem(word, 3) == f"{word / 'history.csv'}: epochs 0, 1, nan in 2 rows, {wanted}"
    (tmp_path / "binary").mkdir()
    (tmp_path / "binary" / "history.csv").write_bytes(b"\x00\xff\xfe binary")
    problem = torture.history_problem(tmp_path / "binary", 3)
    assert problem.startswith(f"{tmp_path / 'binary' / 'history.csv'}: not UTF-8 text"), problem


def test_torture_finds_a_history_fastseg_cannot_read_among_the_whole_files(tmp_path):
    """Its generic CSV check sees only rows of equal length; history.csv must also be a history
    `fastseg runs` reads after a kill."""
    torture = benchmark("torture")
    write_history(tmp_path, "0,1.0,0.9,0.25,0.5,00:10")
    assert torture.problems_in(tmp_path) == []
    (tmp_path / "history.csv").write_text("time,valid_miou\n00:10,0.5\n")  # rectangular, no epoch
    (problem,) = torture.problems_in(tmp_path)
    assert problem.startswith(f"{tmp_path / 'history.csv'}: ") and "no epoch" in problem, problem
