"""A stranger's pass over `report`, `export`, `serve` and `predict --tile` (round 32): each test here
is a defect that pass found, each failing before its fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from model_files import save_seeded_voc_model, write_run_files

from cli.main import main

HISTORY_HEADER = "epoch,train_loss,valid_loss,valid_pixel_accuracy,valid_miou,time"


@pytest.fixture(scope="module")
def run(voc_root, tmp_path_factory) -> Path:
    """A run folder as `fastseg train` leaves it (model.pth, split.json, config.json)."""
    folder = tmp_path_factory.mktemp("run")
    save_seeded_voc_model(folder / "model.pth")
    return write_run_files(folder, voc_root)


def report(run: Path, out: Path):
    return CliRunner().invoke(main, ["report", "--model", str(run), "--out", str(out), "--quiet",
                                     "--num-workers", "0", "--precision", "fp32"])  # fmt: skip


@pytest.mark.parametrize(
    "rows",
    [
        ["0,1,1,-1e308,1e308,00:01"],  # finite, but past float32: matplotlib's axis overflowed
        ["0,-1e308,1e308,-1,5,00:01"],  # LinAlgError: Singular matrix
        ["1.5,1,1,0.5,0.4,00:01"],  # IndexError: the best epoch, int(1.5), was looked up as 1
        ["0,1,1,0.5,0.4,00:01", "-3,1,1,0.5,0.5,00:01"],  # a negative epoch
    ],
    ids=["huge-scores", "huge-losses", "fractional-epoch", "negative-epoch"],
)
def test_a_history_with_impossible_numbers_is_a_sentence_on_the_page(run, tmp_path, rows):
    """A damaged history.csv does not stop a report whose scores are computed: its part of the page
    says it could not be read (report_page's promise). Numbers no training writes (beyond float32,
    an epoch that is no whole number of at least 0) ended the report with a traceback."""
    (run / "history.csv").write_text("\n".join([HISTORY_HEADER, *rows]) + "\n")
    try:
        result = report(run, tmp_path / "report")
    finally:
        (run / "history.csv").unlink()
    assert result.exit_code == 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    page = (tmp_path / "report" / "report.html").read_text()
    assert "history.csv could not be read" in page
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["images"] == 6
