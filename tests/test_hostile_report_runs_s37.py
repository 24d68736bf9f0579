"""A stranger's odd runs and data against `fastseg runs`, `report` and `lr-find` (session 37).

Defects covered:
- runs: a history.csv holding a number of 400 digits (an epoch, a score or a time) stopped
  `fastseg runs` for every run with an OverflowError traceback; now that run's row says its
  history.csv is damaged and the other rows are listed.
- runs: a history.csv cut in the middle of a row (no time) made that row say
  "AttributeError: 'float' object has no attribute 'split'"; the missing time now counts as none.
"""

import json

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
