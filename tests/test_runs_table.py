"""`fastseg runs`: the run folders under a folder, from their own files, as a table or JSON."""

import json
import os
import re

import pytest
from click.testing import CliRunner

from cli.main import main

HISTORY = "epoch,train_loss,valid_loss,valid_pixel_accuracy,valid_miou,time\n"


def make_run(folder, recipe, train_set, planned, rows, state=None, checkpoint=False, report=None, when=0,
             keep=None):  # fmt: skip
    """A run folder as `fastseg train` leaves it, written by hand: `rows` are (miou, accuracy, time);
    `keep` None: a config.json from before `--keep` (which kept the best epoch)."""
    folder.mkdir(parents=True)
    config = folder / "config.json"
    train = {"recipe": recipe, "data": "/data/voc", "train_set": train_set, "epochs": planned}
    if keep is not None:
        train["keep"] = keep
    config.write_text(json.dumps({"train": train}))
    os.utime(config, (1_800_000_000 + when, 1_800_000_000 + when))
    lines = [f"{epoch},1.0,1.0,{accuracy},{miou},{time}" for epoch, (miou, accuracy, time) in enumerate(rows)]
    (folder / "history.csv").write_text(HISTORY + "".join(f"{line}\n" for line in lines))
    if state is not None:
        (folder / "last.json").write_text(json.dumps(state))
    if checkpoint:
        (folder / "last.pth").write_bytes(b"checkpoint")
    if report is not None:
        (folder / "report").mkdir()
        (folder / "report" / "metrics.json").write_text(json.dumps(report))


@pytest.fixture
def runs(tmp_path):
    make_run(tmp_path / "a-seed", "seed", "train", 300, [(0.30, 0.80, "01:00"), (0.50, 0.85, "01:05")],
             state={"finished": True, "completed_epochs": 2}, report={"subset": "test", "mean_iou": 0.45},
             when=0)  # fmt: skip
    make_run(tmp_path / "b-fast", "fast", "trainaug", 40, [(0.60, 0.90, "1:00:00"), (0.55, 0.91, "58:30")],
             state={"completed_epochs": 2, "best": 0.6}, checkpoint=True, when=60)  # fmt: skip
    make_run(tmp_path / "nested" / "c", "fast", "train", 40, [], when=120)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"not": "a run"}')
    return tmp_path


def test_runs_json_has_every_column_from_the_run_files(runs):
    result = CliRunner().invoke(main, ["runs", str(runs), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [row["name"] for row in rows] == ["a-seed", "b-fast", "nested/c"]  # by date
    a_seed, b_fast, c = rows
    assert a_seed == {
        "name": "a-seed", "recipe": "seed", "data_set": "voc/train", "epochs": 2, "planned_epochs": 300,
        "valid_miou": 0.5, "valid_pixel_accuracy": 0.85, "test_miou": 0.45, "duration": 125.0,
        "date": a_seed["date"], "status": "finished",
    }  # fmt: skip
    assert (b_fast["valid_miou"], b_fast["valid_pixel_accuracy"], b_fast["duration"]) == (0.6, 0.9, 7110.0)
    assert (b_fast["status"], b_fast["test_miou"]) == ("resumable", None)
    assert (c["epochs"], c["valid_miou"], c["status"]) == (0, None, "interrupted")


def test_runs_table_sorts_by_any_column(runs):
    result = CliRunner().invoke(main, ["runs", str(runs), "--sort", "valid_miou", "--reverse"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = [
        "name",
        "recipe",
        "data set",
        "epochs",
        "val mIoU",
        "val acc",
        "test mIoU",
        "duration",
        "date",
        "status",
    ]
    assert re.split(r" {2,}", lines[0]) == header
    assert [line.split()[0] for line in lines[1:]] == ["b-fast", "a-seed", "nested/c"]  # no score: last
    b_fast = lines[1].split()
    # issue #21: scores with 3 decimals
    assert b_fast[:8] == ["b-fast", "fast", "voc/trainaug", "2/40", "0.600", "0.900", "-", "1h58m"]
    assert b_fast[-1] == "resumable"
    assert lines[2].split()[3:8] == ["2/300", "0.500", "0.850", "0.450", "2m05s"]


def test_runs_of_a_missing_folder_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["runs", str(tmp_path / "nope")])
    assert result.exit_code == 1 and result.output == f"Error: {tmp_path / 'nope'}: no such folder\n"


def test_runs_without_a_folder_and_no_default_one_says_what_to_give(tmp_path, monkeypatch):
    """`fastseg runs` in a folder with no outputs/runs said only "outputs/runs: no such folder",
    which reads like a broken install: it is train's default place, and the folder is a choice."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["runs"])
    assert result.exit_code == 1 and result.output.startswith("Error: outputs/runs: no such folder")
    assert result.output.count("\n") == 1, result.output
    assert "without --out" in result.output and "fastseg runs FOLDER" in result.output


DAMAGES = {  # issue #19 (3): each of these made the whole table die with a traceback
    "last-list": lambda run: (run / "last.json").write_text("[1]"),
    "history-binary": lambda run: (run / "history.csv").write_bytes(b"\x00\xff\xfe binary"),
    "history-empty": lambda run: (run / "history.csv").write_text(""),
    "metrics-list": lambda run: (run / "report" / "metrics.json").write_text("[1, 2]"),
    "metrics-high": lambda run: (run / "report" / "metrics.json").write_text(
        '{"subset": "test", "mean_iou": "high"}'),
    "config-not-utf8": lambda run: (run / "config.json").write_bytes(b'{"train": {"x": "\xff"}}'),
    "history-no-time": lambda run: (run / "history.csv").write_text("epoch,valid_miou\n0,0.5\n"),
    "planned-many": lambda run: (run / "config.json").write_text('{"train": {"epochs": "many"}}'),
    # found by tests/test_file_properties.py: each was a traceback or hid the run
    "config-train-null": lambda run: (run / "config.json").write_text('{"train": null}'),
    "config-nested": lambda run: (run / "config.json").write_text("[" * 5000),
    "last-nan": lambda run: (run / "last.json").write_text('{"finished": true, "best": NaN}'),
    "metrics-above-one": lambda run: (run / "report" / "metrics.json").write_text(
        '{"subset": "test", "mean_iou": 5}'),
}  # fmt: skip


@pytest.mark.parametrize("sort", ["date", "planned_epochs", "test_miou", "valid_miou"])
def test_one_damaged_run_is_a_row_saying_so_and_hides_no_other(tmp_path, sort):
    finished = {"finished": True, "completed_epochs": 1}
    make_run(tmp_path / "good", "fast", "train", 40, [(0.6, 0.9, "1:00")], state=finished,
             report={"subset": "test", "mean_iou": 0.5})  # fmt: skip
    for name, damage in DAMAGES.items():
        run = tmp_path / name
        make_run(run, "fast", "train", 40, [(0.5, 0.8, "1:00")], state=finished,
                 report={"subset": "test", "mean_iou": 0.4})  # fmt: skip
        damage(run)
    result = CliRunner().invoke(main, ["runs", str(tmp_path), "--json", "--sort", sort])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert set(rows) == {"good", *DAMAGES}
    assert rows["good"]["test_miou"] == 0.5 and rows["good"]["status"] == "finished"
    for name in ("last-list", "history-binary", "metrics-list", "config-not-utf8", "config-train-null",
                 "config-nested", "last-nan"):  # fmt: skip
        assert rows[name]["status"].startswith("damaged"), (name, rows[name])
    for name in ("metrics-high", "metrics-above-one"):  # not a score from 0 to 1: blank, and said
        assert rows[name]["test_miou"] is None and "unreadable test_miou" in rows[name]["status"], rows[name]
    assert rows["planned-many"]["planned_epochs"] is None
    table = CliRunner().invoke(main, ["runs", str(tmp_path), "--sort", sort])
    assert table.exit_code == 0 and len(table.output.strip().splitlines()) == 1 + len(rows)


def test_a_fifo_named_config_json_neither_hangs_nor_hides_the_other_runs(tmp_path):
    """`fastseg runs` read every config.json under the root with read_text(): a named pipe
    there (another tool's, or a trap) blocked it forever. It goes through the one reader now,
    which refuses anything but a regular file."""
    import os
    import signal

    def hung(signum, frame):
        raise AssertionError("fastseg runs blocked on a FIFO")

    make_run(tmp_path / "good", "fast", "train", 40, [(0.6, 0.9, "1:00")], state={"finished": True})
    (tmp_path / "pipe").mkdir()
    os.mkfifo(tmp_path / "pipe" / "config.json")
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        result = CliRunner().invoke(main, ["runs", str(tmp_path), "--json"])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert result.exit_code == 0, result.output
    assert [row["name"] for row in json.loads(result.output)] == ["good"]


HISTORY_DAMAGES = {  # a damaged history.csv's row named the exception, not the file
    "binary": b"\x00\xff\xfe binary",  # was "UnicodeDecodeError: 'utf-8' codec can't decode byte ..."
    "empty": b"",  # was "EmptyDataError: No columns to parse from file"
    "no-time": b"epoch,valid_miou,valid_pixel_accuracy\n0,0.5,0.8\n",  # "Usecols do not match columns"
    "no-epoch": b"valid_miou,valid_pixel_accuracy,time\n0.5,0.8,00:10\n",  # was "KeyError: 'epoch'"
    "no-miou": b"epoch,time\n0,00:10\n",  # was "KeyError: 'valid_miou'"
    "unclosed-quote": b'epoch,valid_miou,time\n"0,0.5,00:10\n',
}


def test_a_damaged_history_is_a_row_naming_the_file_and_never_shows_none(tmp_path):
    finished = {"finished": True, "completed_epochs": 1}
    for name, content in HISTORY_DAMAGES.items():
        make_run(tmp_path / name, "fast", "train", 40, [(0.5, 0.8, "1:00")], state=finished)
        (tmp_path / name / "history.csv").write_bytes(content)
    result = CliRunner().invoke(main, ["runs", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    for name in HISTORY_DAMAGES:
        status = rows[name]["status"]
        assert status.startswith("damaged (") and f"{tmp_path / name / 'history.csv'}: " in status, status
    (tmp_path / "other-tool").mkdir()  # another tool's config.json beside run files: no planned epochs
    (tmp_path / "other-tool" / "config.json").write_text('{"train": {"lr": 0.1}}')
    (tmp_path / "other-tool" / "last.json").write_text('{"finished": true, "completed_epochs": 1}')
    table = CliRunner().invoke(main, ["runs", str(tmp_path)])
    assert table.exit_code == 0 and "None" not in table.output, table.output
    lines = {line.split()[0]: line for line in table.output.splitlines()[1:]}
    assert " 0/- " in lines["binary"] and " 0/- " in lines["other-tool"], lines  # was 0/None


TEXT_DAMAGES = {  # round 21: a number or a list where config.json holds a path was shown as "5/train"
    "data-number": ({"data": 5}, "'data'"),
    "data-list": ({"data": ["a", "b"]}, "'data'"),
    "data-mapping": ({"data": {"path": "x"}}, "'data'"),
    "train-set-number": ({"train_set": 7}, "'train_set'"),  # was "TypeError: sequence item 1: ..."
    "recipe-list": ({"recipe": ["fast"]}, "'recipe'"),
}


def test_a_config_field_of_the_wrong_type_is_a_damaged_row_naming_the_file(tmp_path):
    finished = {"finished": True, "completed_epochs": 1}
    make_run(tmp_path / "good", "fast", "train", 40, [(0.6, 0.9, "1:00")], state=finished)
    for name, (changes, _) in TEXT_DAMAGES.items():
        make_run(tmp_path / name, "fast", "train", 40, [(0.5, 0.8, "1:00")], state=finished)
        config = tmp_path / name / "config.json"
        train = {**json.loads(config.read_text())["train"], **changes}
        config.write_text(json.dumps({"train": train}))
    result = CliRunner().invoke(main, ["runs", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["good"]["data_set"] == "voc/train" and rows["good"]["status"] == "finished"
    for name, (_, field) in TEXT_DAMAGES.items():
        row = rows[name]
        assert row["data_set"] is None and row["recipe"] is None, row  # nothing made up
        assert (
            row["status"].startswith("damaged (") and f"{tmp_path / name / 'config.json'}: " in row["status"]
        )
        assert field in row["status"] and "must be" in row["status"], row["status"]
    table = CliRunner().invoke(main, ["runs", str(tmp_path)])
    assert table.exit_code == 0 and "5/train" not in table.output and "['a'" not in table.output, table.output
    assert len(table.output.strip().splitlines()) == 2 + len(TEXT_DAMAGES)


def test_the_scores_shown_are_those_of_the_weights_the_run_keeps(tmp_path):
    """The fast recipe keeps the final epoch (`keep: final`), yet the table showed the best
    epoch's validation scores: a run whose model.pth scores 0.228 was listed at 0.261, above a
    run whose kept weights were better. Under `keep: best` (and in runs from before `--keep`)
    the best epoch is what model.pth holds."""
    rows = [(0.26, 0.74, "00:10"), (0.23, 0.70, "00:10")]
    make_run(tmp_path / "final", "fast", "train", 2, rows, keep="final", state={"finished": True})
    make_run(tmp_path / "best", "seed", "train", 2, rows, keep="best", state={"finished": True}, when=1)
    make_run(tmp_path / "old", "seed", "train", 2, rows, state={"finished": True}, when=2)
    make_run(tmp_path / "running", "fast", "train", 9, rows, keep="final", state={"completed_epochs": 2},
             checkpoint=True, when=3)  # fmt: skip
    result = CliRunner().invoke(main, ["runs", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    scores = {
        row["name"]: (row["valid_miou"], row["valid_pixel_accuracy"]) for row in json.loads(result.output)
    }
    assert scores == {
        "final": (0.23, 0.70),
        "best": (0.26, 0.74),
        "old": (0.26, 0.74),
        "running": (0.23, 0.70),
    }


@pytest.mark.parametrize("keep", [["final"], "FINAL", "<b>newest</b>"])
def test_a_keep_rule_train_does_not_know_is_a_damaged_row(tmp_path, keep):
    """A `keep` of the wrong type, or a text that is no rule (it was shown as `final`)."""
    make_run(tmp_path / "bad", "fast", "train", 2, [(0.26, 0.74, "00:10")], keep=keep)
    result = CliRunner().invoke(main, ["runs", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["status"].startswith("damaged") and "'keep'" in row["status"], row
    assert "config.json" in row["status"] and row["valid_miou"] is None, row
