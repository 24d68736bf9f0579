"""A run folder's files are read as carefully as a user's (issue #19, item 3): each damaged or
hand-edited split.json, class_weights.json, config.json and last.json below was a KeyError,
TypeError or AttributeError traceback in `report` or `train --resume`; each is now one line
naming the file, exit 1."""

import json
import shutil

import pytest
import torch
from click.testing import CliRunner

from cli.main import main
from fastseg.data.voc import VOC, find_voc
from fastseg.model.checkpoint import save_model
from fastseg.model.config import ModelConfig
from fastseg.model.network import SegmentationModel


@pytest.fixture(scope="module")
def made_run(tmp_path_factory, voc_root):
    """A run folder as `fastseg train` leaves it, without the training."""
    folder = tmp_path_factory.mktemp("made") / "run"
    folder.mkdir()
    torch.manual_seed(0)
    config = ModelConfig(num_classes=len(VOC))
    save_model(folder / "model.pth", SegmentationModel(config).eval(), config, size=32, classes=VOC)
    lists = find_voc(voc_root).root / "ImageSets" / "Segmentation"
    val = (lists / "val.txt").read_text().split()
    split = {"train": (lists / "train.txt").read_text().split(), "valid": val[:6], "test": val[6:]}
    (folder / "split.json").write_text(json.dumps(split))
    (folder / "config.json").write_text(json.dumps({"train": {"data": str(voc_root)}}))
    (folder / "class_weights.json").write_text(json.dumps({"weights": [1.0] * 21}))
    return folder


@pytest.fixture
def run(made_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(made_run, copy)
    return copy


def edit_json(path, change):
    values = json.loads(path.read_text())
    path.write_text(json.dumps(change(values)) if callable(change) else change)


REPORT_CASES = {
    "split escapes": ("split.json", lambda v: {**v, "test": ["../../../../etc/passwd"]}, "not a name inside"),
    "split test a string": ("split.json", lambda v: {**v, "test": "2007_000001"}, "'test' must be a list"),
    "split list of dicts": ("split.json", lambda v: {**v, "test": [{"id": 1}]}, "'test' must be a list"),
    "split top-level list": ("split.json", "[1, 2]", "expected a mapping"),
    "split not utf8": ("split.json", None, "not UTF-8"),
    "weights wrong length": ("class_weights.json", '{"weights": [1, 1]}', "2 class weights for a model"),
    "weights NaN": ("class_weights.json", '{"weights": [NaN]}', "NaN is not a number JSON allows"),
    "weights negative": ("class_weights.json", json.dumps({"weights": [-1.0] * 21}), "from 0 to 1e+12"),
    "weights float32 inf": ("class_weights.json", json.dumps({"weights": [1e300] * 21}), "from 0 to 1e+12"),
    "weights all zero": ("class_weights.json", json.dumps({"weights": [0] * 21}), "not all 0"),
    "config data 5": ("config.json", '{"train": {"data": 5}}', "does not name the run's dataset"),
    # found by a hostile pass: it said only "does not name the run's dataset", hiding why
    "config not utf8": ("config.json", None, "not UTF-8"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REPORT_CASES))
def test_report_reads_a_damaged_run_file_as_one_line(run, case):
    name, change, expected = REPORT_CASES[case]
    if change is None:
        (run / name).write_bytes(b'{"train": ["\xff"]}')
    else:
        edit_json(run / name, change)
    result = CliRunner().invoke(main, ["report", "--model", str(run), "--quiet", "--num-workers", "0"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert f"{run / name}" in lines[0] and expected in lines[0], lines[0]
    assert not (run / "report").exists()


def test_a_split_naming_an_image_the_data_set_lost_is_one_line(run, voc_root, tmp_path):
    from demo_folder import make_demo_folder

    from fastseg.data.voc import VOC

    own = make_demo_folder(
        tmp_path / "own", list(VOC.names), colors=list(VOC.colors), counts={"train": 2, "val": 2}
    )
    (run / "config.json").write_text(json.dumps({"train": {"data": str(own)}}))
    (run / "split.json").write_text(json.dumps({"train": [], "valid": [], "test": ["val/gone"]}))
    result = CliRunner().invoke(main, ["report", "--model", str(run), "--quiet", "--num-workers", "0"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "'val/gone': no such image" in result.output


RESUME_CASES = {
    "augment a list": ("config.json", {"train": {"data": "d", "augment": [1, 2]}}, "augment [1, 2]"),
    "batch size text": ("config.json", {"train": {"data": "d", "batch_size": "x"}}, "batch_size 'x'"),
    "best text": ("last.json", {"completed_epochs": 1, "best": "x"}, "best must be a score"),
    "completed negative": ("last.json", {"completed_epochs": -3}, "completed_epochs must be a whole"),
    "state a list": ("last.json", [1], "expected a mapping"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_reads_a_damaged_run_file_as_one_line(run, case):
    name, values, expected = RESUME_CASES[case]
    if name != "last.json":
        (run / "last.json").write_text(json.dumps({"completed_epochs": 1}))
    (run / name).write_text(json.dumps(values))
    result = CliRunner().invoke(main, ["train", "--resume", str(run), "--quiet"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert expected in lines[0], lines[0]


@pytest.mark.parametrize("full_at", ["metrics.json", "report.html"])
def test_a_full_disk_during_report_is_one_line_and_leaves_no_partial_file(run, fill_disk_at, full_at):
    """Issue #19 (5): a full disk during report was a traceback. The report is built beside its
    folder and swapped in only once whole: the first file written (metrics.json) failing or the
    last (report.html) leaves no report folder at all (there was no earlier one), and no temporary."""
    free = fill_disk_at(full_at)
    result = CliRunner().invoke(main, ["report", "--model", str(run), "--quiet", "--num-workers", "0"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert lines == [f"Error: {run / 'report' / full_at}: No space left on device; every file written before "
                     "is whole (written atomically) and a partial one was discarded: free some space and run "
                     "the command again"]  # fmt: skip
    assert not (run / "report").exists()  # not the files written before the full disk either
    assert not [path for path in run.rglob("*") if path.name.endswith(".tmp")]
    free()  # space again: the same command
    again = CliRunner().invoke(main, ["report", "--model", str(run), "--quiet", "--num-workers", "0"])
    assert again.exit_code == 0, again.output
    assert (run / "report" / "report.html").is_file()


# --- a start that ends before its first checkpoint leaves nothing that blocks the retry (#19, 5) --

TRAIN = ["--recipe", "seed", "--train-set", "train", "--size", "32", "--batch-size", "4", "--epochs", "2",
         "--no-pretrained", "--num-workers", "0", "--quiet"]  # fmt: skip


def test_a_full_disk_at_the_first_checkpoint_leaves_nothing_that_blocks_the_same_command(
    voc_root, tmp_path, fill_disk_at
):
    """Epoch 0 ran and history.csv got its row, then the first last.pth met a full disk: the
    failed start removed config.json but kept history.csv, so the folder refused both the same
    command ("use --resume or --force") and --resume ("no resumable checkpoint")."""
    run = tmp_path / "run"
    arguments = ["train", "--data", str(voc_root), "--out", str(run), *TRAIN]
    free = fill_disk_at("last.pth")
    failed = CliRunner().invoke(main, arguments)
    assert failed.exit_code == 1 and "No space left on device" in failed.output, failed.output
    left = sorted(path.name for path in run.iterdir()) if run.exists() else []
    assert left in ([], [".fastseg.lock"]), left
    free()
    retried = CliRunner().invoke(main, arguments)  # the same command, no --force
    assert retried.exit_code == 0, retried.output
    assert json.loads((run / "last.json").read_text()) == {"finished": True, "completed_epochs": 2}


KILLED_AFTER = [["history.csv"], ["history.csv", "best.pth"], ["history.csv", "last.pth"]]


@pytest.mark.parametrize("written", KILLED_AFTER)
def test_a_start_killed_before_its_first_checkpoint_can_start_again(voc_root, tmp_path, written):
    """`kill -9` after epoch 0's history row (and its best.pth, or the last.pth whose last.json
    never came) but before last.json: nothing there can be resumed, so the same command starts
    again without --force, and --resume still says there is no checkpoint."""
    from fastseg.launch.processes import launched
    from fastseg.runs.folder import RunFolder
    from fastseg.training.recipes import recipe
    from fastseg.training.trainer import prepare_run

    run = tmp_path / "run"
    config = recipe("seed", data=str(voc_root), out=str(run), size=32, batch_size=4, epochs=2,
                    pretrained=False, num_workers=0)  # fmt: skip
    with launched("cpu") as launch:
        prepare_run(config, RunFolder(run), False, launch, False)
    for name in written:  # then epoch 0's files, then "killed"
        (run / name).write_bytes(b"epoch,train_loss\n0,0.5\n" if name == "history.csv" else b"PK")
    resumed = CliRunner().invoke(main, ["train", "--resume", str(run), "--quiet"])
    assert resumed.exit_code == 1 and "no resumable checkpoint (last.json)" in resumed.output, resumed.output
    retried = CliRunner().invoke(main, ["train", "--data", str(voc_root), "--out", str(run), *TRAIN])
    assert retried.exit_code == 0, retried.output
    assert json.loads((run / "last.json").read_text()) == {"finished": True, "completed_epochs": 2}
    assert not (run / "last.pth").exists() and not (run / "best.pth").exists()
