"""Round 21's leftovers from the hostile passes, each reproduced with the real CLI on tiny data:
a run's split.json naming an image the data set has lost (train --resume, report, export --int8),
a damaged class_weights.json under train --resume, an empty class name in import's --order, and
names near the 255-byte limit for report's folder and predict's files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from fastseg.data.voc import find_voc


def invoke(*arguments):
    return CliRunner().invoke(main, [str(argument) for argument in arguments])


def one_error_line(result) -> str:
    """The single `Error: ` line of a refused command (exit 1, no traceback)."""
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    return lines[0]


@pytest.fixture
def resumable(voc_copy, tmp_path):
    """A run folder as an interrupted `fastseg train` leaves it (config, split, class weights,
    last.json), without the training: a resume reads all of them before it builds the Learner."""
    from fastseg.data.check import check_dataset
    from fastseg.data.class_weights import class_weights
    from fastseg.data.factory import open_dataset
    from fastseg.model.config import ModelConfig
    from fastseg.runs.folder import RunFolder
    from fastseg.training.config import TrainConfig

    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    config = TrainConfig(data=str(voc_copy), out=str(run.path), size=32, batch_size=4, epochs=2,
                         pretrained=False, num_workers=0, encoder="regnety_002")  # fmt: skip
    data = open_dataset(voc_copy)
    split = data.split(config.train_set, config.split_seed)
    counts = check_dataset(data, split, threads=1)
    weights = class_weights(counts, config.class_weights)
    run.write_config(config, ModelConfig(num_classes=len(data.classes), encoder=config.encoder))
    run.write_split(split)
    run.write_class_weights(weights, counts, config.class_weights, data.classes.names)
    run.write_resume_state({"completed_epochs": 1, "best": 0.1, "wait": 0})
    return run, split, weights


class Reached(Exception):
    """Raised where the Learner would be built: the resume read and accepted every run file."""


@pytest.fixture
def stop_before_learner(monkeypatch):
    import fastseg.training.trainer as trainer

    def reached(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(trainer, "make_learner", reached)


# --- item 3: split.json names an image the data set has lost -----------------------------------


def delete_pair(voc: Path, image_id: str) -> Path:
    """Remove one image and its mask from the VOC copy; returns the image's path."""
    root = find_voc(voc).root
    image = root / "JPEGImages" / f"{image_id}.jpg"
    image.unlink()
    (root / "SegmentationClass" / f"{image_id}.png").unlink()
    return image


def test_resume_with_an_image_gone_names_it_and_split_json(resumable, voc_copy, stop_before_learner):
    """Was `Error: .../JPEGImages/ID.jpg: file not found (and 1 more missing files)`: nothing
    said that the id came from the run's split.json, nor that the data set changed under the run."""
    run, split, _ = resumable
    image = delete_pair(voc_copy, split.train[3])
    line = one_error_line(invoke("train", "--resume", run.path, "--quiet"))
    assert f"{run.path / 'split.json'}: " in line and str(image) in line, line
    assert repr(split.train[3]) in line and "and 1 more missing file" in line, line


def test_report_with_a_test_image_gone_names_it_and_split_json(voc_copy, tmp_path):
    from model_files import save_seeded_voc_model, write_run_files

    (tmp_path / "run").mkdir()
    run = write_run_files(tmp_path / "run", voc_copy)
    save_seeded_voc_model(run / "model.pth")
    test_ids = json.loads((run / "split.json").read_text())["test"]
    image = delete_pair(voc_copy, test_ids[0])
    line = one_error_line(invoke("report", "--model", run, "--quiet", "--num-workers", "0"))
    assert f"{run / 'split.json'}: " in line and str(image) in line, line
    assert not (run / "report").exists()


def test_report_of_the_test_split_ignores_a_lost_training_image(voc_copy, tmp_path, monkeypatch):
    """Only the subset a command reads is checked: report scores the test half, so a training
    image deleted since is no reason to refuse (as before)."""
    from model_files import save_seeded_voc_model, write_run_files

    import fastseg.inference.report as report

    (tmp_path / "run").mkdir()
    run = write_run_files(tmp_path / "run", voc_copy)
    save_seeded_voc_model(run / "model.pth")
    delete_pair(voc_copy, json.loads((run / "split.json").read_text())["train"][0])

    def reached(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(report, "evaluate", reached)  # every file was read and checked by then
    result = invoke("report", "--model", run, "--quiet", "--num-workers", "0")
    assert isinstance(result.exception, Reached), result.output


def test_report_reads_split_json_once(voc_copy, tmp_path, monkeypatch):
    """The ids and the lost-image check come from one parse of split.json (it was read twice)."""
    from model_files import save_seeded_voc_model, write_run_files

    import fastseg.inference.report as report
    from fastseg.runs import folder

    (tmp_path / "run").mkdir()
    run = write_run_files(tmp_path / "run", voc_copy)
    save_seeded_voc_model(run / "model.pth")
    parses = []
    real = folder.Split.from_dict
    monkeypatch.setattr(folder.Split, "from_dict", lambda values: parses.append(1) or real(values))

    def reached(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(report, "evaluate", reached)
    result = invoke("report", "--model", run, "--quiet", "--num-workers", "0")
    assert isinstance(result.exception, Reached), result.output
    assert len(parses) == 1


def test_export_int8_with_a_validation_image_gone_names_it_and_split_json(voc_copy, tmp_path):
    pytest.importorskip("onnx")
    from model_files import save_seeded_voc_model, write_run_files

    (tmp_path / "run").mkdir()
    run = write_run_files(tmp_path / "run", voc_copy)
    save_seeded_voc_model(run / "model.pth")
    image = delete_pair(voc_copy, json.loads((run / "split.json").read_text())["valid"][2])
    line = one_error_line(invoke("export", "--model", run, "--int8", "--quiet"))
    assert f"{run / 'split.json'}: " in line and str(image) in line, line
    assert sorted(path.name for path in run.iterdir()) == ["config.json", "model.pth", "split.json"]


# --- item 4: a damaged class_weights.json under train --resume ---------------------------------

CLASS_WEIGHT_DAMAGES = {
    "truncated": (b'{"method": "balanced", "weights": [1.0, 2', "not a fastseg class-weights file"),
    "wrong length": (json.dumps({"weights": [1.0, 2.0]}).encode(), "2 class weights for a model of 21"),
    "NaN": (json.dumps({"weights": [float("nan")] * 21}).encode(), "NaN"),
    "negative": (json.dumps({"weights": [-1.0] * 21}).encode(), "from 0 to 1e+12"),
    "not UTF-8": (b'{"weights": ["\xff"]}', "not UTF-8"),
}


@pytest.mark.parametrize("case", list(CLASS_WEIGHT_DAMAGES))
def test_resume_rewrites_a_damaged_class_weights_json_and_says_so(resumable, stop_before_learner, case):
    """A resume trains with the weights it computes from the training masks, never the file's;
    a damaged file was left as it was (and `report` refused the finished run over it). It is
    rewritten now, whole, with the weights the run trains with, and one note names the file and
    what was wrong with it."""
    from fastseg.runs.folder import RunFolder

    run, _, weights = resumable
    content, problem = CLASS_WEIGHT_DAMAGES[case]
    (run.path / "class_weights.json").write_bytes(content)
    result = invoke("train", "--resume", run.path)
    assert isinstance(result.exception, Reached), result.output
    notes = [line for line in result.output.splitlines() if "class_weights.json" in line]
    assert len(notes) == 1 and f"{run.path / 'class_weights.json'}: " in notes[0], result.output
    assert problem in notes[0] and "rewritten" in notes[0], notes
    rewritten = RunFolder(run.path).read_class_weights(21).numpy()
    assert np.allclose(rewritten, weights, rtol=1e-5), (rewritten, weights)
    values = json.loads((run.path / "class_weights.json").read_text())
    assert (
        values["method"] == "balanced" and len(values["classes"]) == 21 and len(values["pixel_counts"]) == 21
    )
    assert not [path.name for path in run.path.iterdir() if path.name.endswith(".tmp")]


def test_resume_leaves_an_intact_class_weights_json_as_it_was(resumable, stop_before_learner):
    run, _, _ = resumable
    path = run.path / "class_weights.json"
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    result = invoke("train", "--resume", run.path)
    assert isinstance(result.exception, Reached), result.output
    assert "class_weights.json" not in result.output
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_resume_rewrites_class_weights_json_that_are_not_what_it_trains_with(resumable, stop_before_learner):
    """Weights edited by hand (readable, but not the masks' weights) were ignored without a word:
    the run trains with the masks' weights, and the file now says so, with a note."""
    run, _, weights = resumable
    path = run.path / "class_weights.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "weights": [1.0] * 21}))
    result = invoke("train", "--resume", run.path)
    assert isinstance(result.exception, Reached), result.output
    assert f"{path}: " in result.output and "rewritten" in result.output, result.output
    assert np.allclose(json.loads(path.read_text())["weights"], weights, rtol=1e-5)


def test_resume_writes_a_missing_class_weights_json(resumable, stop_before_learner):
    run, _, weights = resumable
    (run.path / "class_weights.json").unlink()
    result = invoke("train", "--resume", run.path, "--quiet")
    assert isinstance(result.exception, Reached), result.output
    assert np.allclose(
        json.loads((run.path / "class_weights.json").read_text())["weights"], weights, rtol=1e-5
    )


# --- item 5: an empty class name in import's --order ------------------------------------------


@pytest.fixture
def labelme_export(tmp_path):
    """Two LabelMe files, each a cat and a dog triangle that overlap on a 40x30 image."""
    from PIL import Image

    folder = tmp_path / "labelme"
    folder.mkdir()
    shapes = [{"label": "cat", "points": [[1, 1], [20, 1], [20, 20]], "shape_type": "polygon"},
              {"label": "dog", "points": [[5, 5], [30, 5], [30, 25]], "shape_type": "polygon"}]  # fmt: skip
    for name in ("a", "b"):
        Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(folder / f"{name}.png")
        document = {"shapes": shapes, "imagePath": f"{name}.png", "imageHeight": 30, "imageWidth": 40}
        (folder / f"{name}.json").write_text(json.dumps(document))
    return folder


@pytest.mark.parametrize("order", ["cat,,dog", ",cat,dog", "cat,dog,", "cat, ,dog", ",", ""])
def test_an_empty_name_in_order_is_a_usage_error_saying_so(labelme_export, tmp_path, order):
    """Was `Error: --order:  not among the classes (background, cat, dog)` (an empty name shown as
    nothing) and a second line, after the whole export had been read; `--order ,` said
    "--order:  named more than once"."""
    result = invoke(
        "import", "labelme", labelme_export, "--out", tmp_path / "data", "--quiet", "--order", order
    )
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    expected = ("Error: --order: an empty class name in the list (two commas in a row, or one at an end); "
                "name each class once, e.g. --order cat,dog")  # fmt: skip
    assert errors == [expected], result.output
    assert not (tmp_path / "data").exists()
    if order == "cat,,dog":  # the same list without the empty name is imported
        accepted = invoke("import", "labelme", labelme_export, "--out", tmp_path / "data", "--quiet",
                          "--order", "cat,dog", "--test", "0", "--val", "0.5")  # fmt: skip
        assert accepted.exit_code == 0, accepted.output


# --- item 6: names near the 255-byte limit ----------------------------------------------------


def test_a_250_byte_file_is_written_whole_through_a_temporary_that_fits():
    """`.NAME.PID.tmp` for a 250-byte NAME is 261 bytes: ENAMETOOLONG before a byte was written."""
    import os
    import tempfile

    from fastseg.atomic import TEMPORARY, atomic_path, write_text

    with tempfile.TemporaryDirectory() as folder:
        for name in ("a" * 246 + ".txt", "é" * 123 + ".txt", "a" * 255):
            path = Path(folder) / name
            write_text(path, name)
            assert path.read_text() == name
        seen = set()
        for name in ("a" * 250, "a" * 249 + "b", "é" * 125, "a" * 10):  # two long names alike start
            with atomic_path(Path(folder) / name) as temporary:
                assert len(os.fsencode(temporary.name)) <= 255 and TEMPORARY.match(temporary.name)
                temporary.write_text("x")
                seen.add(temporary.name)
                assert temporary.name.startswith(f".{name[:100]}")  # still says whose it is
        assert len(seen) == 4 and sorted(os.listdir(folder)) == sorted(
            [
                "a" * 246 + ".txt",
                "é" * 123 + ".txt",
                "a" * 255,
                "a" * 250,
                "a" * 249 + "b",
                "é" * 125,
                "a" * 10,
            ]
        )


def test_a_stale_temporary_of_a_long_name_is_found_and_removed(tmp_path):
    """A long name's temporary is still `fastseg.atomic`'s shape: a killed writer's is cleared."""
    import os

    from fastseg.atomic import atomic_path, remove_stale_temporaries

    with atomic_path(tmp_path / ("a" * 250)) as temporary:
        temporary.write_text("whole")
        name = temporary.name.removesuffix(f".{os.getpid()}.tmp") + ".999999999.tmp"  # a dead process's
    stale = tmp_path / name
    stale.write_text("half")
    assert remove_stale_temporaries(tmp_path) == [stale] and not stale.exists()
    assert [path.name for path in tmp_path.iterdir()] == ["a" * 250]


@pytest.fixture
def report_run(voc_root, tmp_path):
    from model_files import save_seeded_voc_model, write_run_files

    (tmp_path / "run").mkdir()
    run = write_run_files(tmp_path / "run", voc_root)
    save_seeded_voc_model(run / "model.pth")
    return run


@pytest.mark.parametrize("length", [250, 255])
def test_a_report_folder_of_a_long_name_is_written_and_replaced(report_run, tmp_path, length):
    """`.NAME.PID.tmp` beside a 245-255 byte --out passed the 255-byte limit: ENAMETOOLONG as a
    traceback. The report is written, and written again over itself, leaving no temporary."""
    out = tmp_path / "reports" / ("r" * (length - 2) + "é")  # é: two bytes in UTF-8
    out.parent.mkdir()
    assert len(out.name.encode()) == length
    for _ in range(2):
        result = invoke("report", "--model", report_run, "--out", out, "--quiet", "--num-workers", "0",
                        "--precision", "fp32")  # fmt: skip
        assert result.exit_code == 0, result.output
        assert (out / "report.html").is_file() and json.loads((out / "metrics.json").read_text())[
            "subset"
        ] == "test"
        assert [path.name for path in out.parent.iterdir()] == [out.name]


def test_a_killed_long_named_report_is_cleared_by_the_next(tmp_path):
    """The shortened temporary names are found again: a build of a killed process goes, an
    earlier report moved aside goes back in place."""
    from fastseg.inference.report_folder import building_folder, remove_stale, replaced_folder

    out = tmp_path / ("r" * 250)
    dead = 999_999_999
    building_folder(out, dead).mkdir()
    (building_folder(out, dead) / "metrics.json").write_text("{}")
    replaced_folder(out, dead).mkdir()
    (replaced_folder(out, dead) / "report.html").write_text("<title>fastseg report</title>")
    assert all(len(path.name.encode()) <= 255 for path in tmp_path.iterdir())
    assert sorted(remove_stale(out)) == sorted([building_folder(out, dead), replaced_folder(out, dead)])
    assert [path.name for path in tmp_path.iterdir()] == [out.name] and (out / "report.html").is_file()


def test_predict_writes_a_mask_whose_name_is_250_bytes(tmp_path):
    from model_files import save_seeded_voc_model
    from PIL import Image

    model = save_seeded_voc_model(tmp_path / "model.pth")
    (tmp_path / "in").mkdir()
    image = tmp_path / "in" / ("p" * 246 + ".jpg")
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(image)
    result = invoke("predict", "--model", model, image, "--out", tmp_path / "out", "--quiet",
                    "--num-workers", "0", "--precision", "fp32")  # fmt: skip
    assert result.exit_code == 0 and "1 segmented, 0 failed" in result.output, result.output
    with Image.open(tmp_path / "out" / ("p" * 246 + ".png")) as mask:
        assert mask.size == (40, 30)
    assert not [path.name for path in (tmp_path / "out").iterdir() if path.name.endswith(".tmp")]


@pytest.mark.parametrize("length", [239, 240, 241, 255])
def test_a_file_is_written_whatever_its_name_length_and_the_process_id(tmp_path, monkeypatch, length):
    """`.NAME.PID.tmp` adds 6 bytes and the id; the reserve said 5, hidden by the id's slack (a
    240-byte name with a 10-digit id made a 256-byte temporary: ENAMETOOLONG)."""
    import fastseg.atomic

    monkeypatch.setattr(fastseg.atomic.os, "getpid", lambda: 9_999_999_999)
    target = tmp_path / ("a" * length)
    with fastseg.atomic.atomic_path(target) as temporary:
        temporary.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and sorted(tmp_path.iterdir()) == [target]
