"""Every file a user or another tool can edit, filled with generated hostile values (issue #19,
"What must show"): the command that reads it ends in success or in a one-line error with exit
code 1, never a traceback, and leaves nothing behind that blocks the next start.

`--config` has its own property test (tests/test_config_schema.py). Here: dataset.yaml
(check-data), split.json (report), config.json (runs, report, train --resume), last.json (runs,
train --resume), RUN/report/metrics.json (runs), class_weights.json (report, train --resume),
model.pth's fields (predict) and an ONNX export's metadata (predict). The values: wrong types,
NaN and infinities, huge and negative numbers, nested lists and dicts, text with control
characters, markup, `../` and absolute paths, and files that are not UTF-8 or not JSON at all.

One tiny run is trained once (regnety_002 at 32 px, stopped after epoch 0 of 2; a copy of it
finished and reported); each example works on its own copy, big files hard-linked (fastseg
replaces files by renaming, never writes into them, and the examples below unlink before they
write). `train --resume` is stopped where fastai's fit would start (`Reached`): by then every
file the resume reads has been read and checked. Example counts are in `EXAMPLES`; every test
here is one property, asserted for each generated example.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import string
import tempfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.main import main

EXAMPLES = {"dataset.yaml": 60, "split.json": 25, "config.json runs": 40, "config.json report": 15,
            "config.json resume": 20, "last.json": 40, "metrics.json": 60, "class_weights.json": 20,
            "model.pth": 40, "onnx metadata": 60}  # fmt: skip
TINY = ["--recipe", "seed", "--train-set", "train", "--size", "32", "--batch-size", "4", "--no-pretrained",
        "--num-workers", "0", "--encoder", "regnety_002", "--quiet"]  # fmt: skip


def examples(name: str):  # noqa: ANN201 - hypothesis' settings decorator
    """`EXAMPLES[name]` examples, the same ones every run; FASTSEG_PROPERTY_SCALE=10 runs ten times
    as many, and new ones (a longer hunt, not for every test run)."""
    scale = int(os.environ.get("FASTSEG_PROPERTY_SCALE", "1"))
    checks = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
    return settings(max_examples=EXAMPLES[name] * scale, deadline=None, derandomize=scale == 1,
                    suppress_health_check=checks)  # fmt: skip


# --- hostile values ---------------------------------------------------------------------------

HOSTILE_TEXT = st.sampled_from([
    "", " ", "../../../../etc/passwd", "/etc/passwd", "..", "a/../../b", "C:\\Windows", "a\nb", "tab\there",
    "\x00", "\x1b[31mred", "<img src=x onerror=alert(1)>", "</title><script>x</script>", "$\\frac$",
    "caf\u00e9", "\u202eevil", "x" * 300, "nan", "-1", "1e999", "true", "None",
])  # fmt: skip
SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.sampled_from([0, -1, 1, 2, 255, 256, 10**6]),
    st.floats(allow_nan=True, allow_infinity=True), HOSTILE_TEXT, st.text(string.printable, max_size=6),
)  # fmt: skip
VALUE = st.recursive(
    SCALAR,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(string.ascii_lowercase, max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
RAW = st.sampled_from([b"", b"\xff\xfe\x00", b'{"a": "caf\xe9"}', b"{", b"[" * 5000, b"null",
                       b"[1, 2]", b'{"a": NaN}', b'{"a": 1e999}', b'{"a": 1, "a": 2}', b'"text"',
                       b"9" * 5000])  # fmt: skip


def json_bytes(value) -> bytes:
    """`value` as JSON text, NaN and infinities written as Python writes them (not strict JSON)."""
    return json.dumps(value, allow_nan=True).encode()


def replaced(path: Path, data: bytes) -> None:
    """Write a new file at `path`: unlink first, so a hard-linked copy's source stays as it was."""
    path.unlink(missing_ok=True)
    path.write_bytes(data)


def edited(values: dict, changes: dict) -> dict:
    """`values` with `changes` (dotted names reach into nested mappings, made where missing)."""
    values = copy.deepcopy(values)
    for name, value in changes.items():
        value = copy.deepcopy(value)  # PLAUSIBLE's lists and dicts are shared, even between two keys
        *parents, last = name.split(".")
        target = values
        for parent in parents:
            if not isinstance(target.get(parent), dict):
                target[parent] = {}
            target = target[parent]
        target[last] = value
    return values


# values that fit some field somewhere, so that some examples are accepted and go further
PLAUSIBLE = st.sampled_from([0, 1, 2, 3, 31, 32, 64, 255, 8192, 8193, 0.5, 1.0, "squish", "letterbox", "test",
                             "val", "fast", "seed", "index", "rgb", "images/train", "images/val", "masks",
                             [0.5, 0.5, 0.5], [1, 1, 1], [0, 0, 0], [255, 255, 255], ["a", "b", "c"],
                             {"0": 0, "255": 1}, "fastseg-export/1", "fastseg-model/2"])  # fmt: skip


def changes_of(names: list[str], size: int = 3):  # noqa: ANN201 - a strategy
    return st.dictionaries(st.sampled_from(names), st.one_of(PLAUSIBLE, VALUE), min_size=0, max_size=size)


# --- the property -----------------------------------------------------------------------------


class Reached(Exception):
    """Raised where fastai's fit would start: a resume that read and accepted every file."""


def assert_success_or_one_line(result, accepted=(), many_lines_naming=None) -> None:
    """Exit 0, or exit 1 with one `Error: ` line and no traceback. `accepted`: exceptions that
    mean success here (`Reached`). `many_lines_naming`: a file whose checks list every problem,
    a line each, all naming it (dataset.yaml's design)."""
    from hypothesis import event

    event("accepted" if result.exit_code == 0 or isinstance(result.exception, accepted) else "refused")
    if result.exception is not None and isinstance(result.exception, accepted):
        return
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        trace = "".join(traceback.format_exception(result.exception))
        pytest.fail(f"traceback:\n{trace}\noutput:\n{result.output}")
    assert "Traceback" not in result.output, result.output
    assert result.exit_code in (0, 1), result.output
    if result.exit_code == 1:
        lines = result.output.strip().splitlines()
        assert lines and lines[-1], result.output
        if many_lines_naming is not None and len(lines) > 1:
            if lines[-1].endswith("problem(s)"):  # check-data's survey: the data's problems, listed
                return
            errors = [line for line in lines if line.startswith("Error: ")] or lines
            assert all(str(many_lines_naming) in line for line in errors), lines
        else:
            assert len(lines) == 1 and lines[0].startswith("Error: "), lines


def nothing_blocks(run: Path, before: set[str]) -> None:
    """No file fastseg left (a temporary, a stray lock) beyond what the folder held before."""
    after = {entry.name for entry in run.iterdir()}
    assert after - before <= {"report"}, after - before  # a report is allowed to have been written
    assert not [name for name in after if name.endswith(".tmp")], after


# --- fixtures: one tiny run, copied per example -----------------------------------------------


@pytest.fixture(scope="module")
def runs(voc_root, tmp_path_factory):
    """`unfinished`: stopped after epoch 0 of 2 (resumable); `finished`: the same run resumed to
    its end, with `fastseg report`'s RUN/report/metrics.json."""
    from fastseg.training.resume import ResumableCheckpoint

    root = tmp_path_factory.mktemp("property-runs")
    unfinished = root / "unfinished"
    original = ResumableCheckpoint.after_epoch

    def stop_after_first(self):
        original(self)
        raise KeyboardInterrupt

    ResumableCheckpoint.after_epoch = stop_after_first
    try:
        arguments = ["train", "--data", str(voc_root), "--out", str(unfinished), "--epochs", "2", *TINY]
        stopped = CliRunner().invoke(main, arguments)
    finally:
        ResumableCheckpoint.after_epoch = original
    assert stopped.exit_code == 1 and "--resume" in stopped.output, stopped.output
    finished = root / "finished"
    shutil.copytree(unfinished, finished)
    resumed = CliRunner().invoke(main, ["train", "--resume", str(finished), "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    reported = CliRunner().invoke(main, ["report", "--model", str(finished), "--quiet", "--num-workers", "0"])
    assert reported.exit_code == 0, reported.output
    return {"unfinished": unfinished, "finished": finished}


def copy_run(source: Path, scratch: Path) -> Path:
    """A copy of `source` under `scratch`; files over 64 KB hard-linked (see the module's note)."""

    def link_or_copy(from_path: str, to_path: str) -> str:
        if os.path.getsize(from_path) > 65536:
            os.link(from_path, to_path)
            return to_path
        return shutil.copy2(from_path, to_path)

    return Path(shutil.copytree(source, scratch / "runs" / source.name, copy_function=link_or_copy))


@pytest.fixture
def scratch():
    """A fresh folder per call: hypothesis runs many examples in one test function."""

    def make() -> Path:
        return Path(tempfile.mkdtemp(prefix="fastseg-property-"))

    made: list[Path] = []

    def new() -> Path:
        made.append(make())
        return made[-1]

    yield new
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


def invoke(*arguments):
    return CliRunner().invoke(main, [str(argument) for argument in arguments])


def report(run: Path):
    return invoke("report", "--model", run, "--quiet", "--num-workers", "0", "--precision", "fp32")


def resume(run: Path, monkeypatch):
    from fastai.learner import Learner

    def reached(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(Learner, "fit", reached)
    try:
        return invoke("train", "--resume", run, "--quiet")
    finally:
        monkeypatch.undo()


def fresh_report_is_blocked(run: Path) -> bool:
    """Whether a report folder was left that the next `report` would refuse to replace."""
    from fastseg.outputs import written_by_fastseg

    folder = run / "report"
    return folder.is_dir() and any(folder.iterdir()) and not written_by_fastseg(folder, "report")


# --- dataset.yaml: check-data -----------------------------------------------------------------


@pytest.fixture(scope="module")
def own_data(tmp_path_factory):
    from demo_folder import make_demo_folder

    made = make_demo_folder(tmp_path_factory.mktemp("own") / "data", ["background", "road", "car"],
                            counts={"train": 2, "val": 2})  # fmt: skip
    return made if made.is_dir() else made.parent  # the folder, whether it returns it or its YAML


DATASET_KEYS = ["names", "colors", "ignore_index", "train", "val", "test", "masks", "mask_format",
                "ignore_color", "mask_values", "extra"]  # fmt: skip


@pytest.mark.slow
@examples("dataset.yaml")
@given(changes=changes_of(DATASET_KEYS), raw=st.one_of(st.none(), RAW), as_yaml=st.booleans())
def test_any_dataset_yaml_is_checked_or_one_line(own_data, scratch, changes, raw, as_yaml):
    import yaml

    folder = Path(shutil.copytree(own_data, scratch() / "data"))
    base = yaml.safe_load((own_data / "dataset.yaml").read_text())
    values = edited(base, changes)
    text = yaml.safe_dump(values).encode() if as_yaml else json_bytes(values)  # JSON is YAML too
    replaced(folder / "dataset.yaml", raw if raw is not None else text)
    before = {path.relative_to(folder) for path in folder.rglob("*")}
    result = invoke("check-data", "--data", folder, "--quiet")
    assert_success_or_one_line(result, many_lines_naming=folder / "dataset.yaml")
    assert {path.relative_to(folder) for path in folder.rglob("*")} == before  # check-data writes nothing


@pytest.mark.parametrize(
    ("change", "expected"),
    [({"train": "images/\x00train"}, "train: expected a folder or a .txt list"),  # was a ValueError
     ({"val": "\n"}, "val: expected a folder or a .txt list"),
     ({"masks": "../../elsewhere"}, "masks '../../elsewhere': expected a folder name relative to"),
     ({"masks": "ma\x00sks"}, "expected a folder name relative to dataset.yaml")],
)  # fmt: skip
def test_dataset_yaml_paths_that_cannot_name_a_file_are_one_line(own_data, tmp_path, change, expected):
    """Found by the property above: a NUL in a split's path was a ValueError traceback from
    `Path.resolve`; `masks` may not lead out of the data folder either (it replaces `images`)."""
    import yaml

    folder = Path(shutil.copytree(own_data, tmp_path / "data"))
    values = {**yaml.safe_load((own_data / "dataset.yaml").read_text()), **change}
    replaced(folder / "dataset.yaml", json_bytes(values))
    result = invoke("check-data", "--data", folder, "--quiet")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert len(lines) == 1 and lines[0].startswith(f"Error: {folder / 'dataset.yaml'}: "), lines
    assert expected in lines[0], lines[0]


# --- split.json: report -----------------------------------------------------------------------

ID = st.one_of(HOSTILE_TEXT, st.sampled_from(["2007_000032", "2007_000033", "x/../y", "images/a"]), VALUE)
SPLIT_VALUE = st.one_of(VALUE, st.lists(ID, max_size=4))


@pytest.mark.slow
@examples("split.json")
@given(
    changes=changes_of(["train", "valid", "test", "seed", "test_from", "extra"]).map(
        lambda changes: {key: value for key, value in changes.items()}
    ),
    raw=st.one_of(st.none(), RAW),
    lists=st.dictionaries(st.sampled_from(["train", "valid", "test"]), st.lists(ID, max_size=4), max_size=2),
)
def test_any_split_json_reports_or_is_one_line(runs, scratch, changes, raw, lists):  # fmt: skip
    run = copy_run(runs["finished"], scratch())
    shutil.rmtree(run / "report")
    before = {entry.name for entry in run.iterdir()}
    values = edited(json.loads((run / "split.json").read_text()), {**changes, **lists})
    replaced(run / "split.json", raw if raw is not None else json_bytes(values))
    assert_success_or_one_line(report(run))
    nothing_blocks(run, before)
    assert not fresh_report_is_blocked(run)


# --- config.json: runs, report, train --resume ------------------------------------------------

CONFIG_FIELDS = ["train.data", "train.epochs", "train.recipe", "train.train_set", "train.size",
                 "train.batch_size", "train.lr", "train.augment", "train.augment.flip_p", "train.seed",
                 "train.keep", "train.trackers", "train.encoder", "train.class_weights", "train.crop_size",
                 "model", "model.num_classes", "versions", "git_commit", "train"]  # fmt: skip


def config_text(run: Path, changes: dict, raw: bytes | None) -> bytes:
    if raw is not None:
        return raw
    return json_bytes(edited(json.loads((run / "config.json").read_text()), changes))


@pytest.mark.slow
@examples("config.json runs")
@given(
    changes=changes_of(CONFIG_FIELDS),
    raw=st.one_of(st.none(), RAW),
    sort=st.sampled_from(["date", "name", "planned_epochs", "test_miou", "data_set", "recipe", "epochs"]),
)
def test_runs_lists_any_config_json_as_a_row(runs, scratch, changes, raw, sort):
    """`fastseg runs` never fails for one run: a damaged run is a row saying so (issue #19)."""
    folder = scratch()
    run = copy_run(runs["finished"], folder)
    replaced(run / "config.json", config_text(run, changes, raw))
    for arguments in (["runs", folder, "--sort", sort], ["runs", folder, "--json"]):
        result = invoke(*arguments)
        assert_success_or_one_line(result)
        assert result.exit_code == 0 and "finished" in result.output, result.output


@pytest.mark.slow
@examples("config.json report")
@given(changes=changes_of(CONFIG_FIELDS), raw=st.one_of(st.none(), RAW))
def test_report_reads_any_config_json_or_is_one_line(runs, scratch, changes, raw):
    run = copy_run(runs["finished"], scratch())
    shutil.rmtree(run / "report")
    before = {entry.name for entry in run.iterdir()}
    replaced(run / "config.json", config_text(run, changes, raw))
    assert_success_or_one_line(report(run))
    nothing_blocks(run, before)
    assert not fresh_report_is_blocked(run)


@pytest.mark.slow
@examples("config.json resume")
@given(changes=changes_of([name for name in CONFIG_FIELDS if name != "train.epochs"]),
       raw=st.one_of(st.none(), RAW))  # fmt: skip
def test_resume_reads_any_config_json_or_is_one_line(runs, scratch, changes, raw, monkeypatch):
    run = copy_run(runs["unfinished"], scratch())
    before = {entry.name for entry in run.iterdir()}
    replaced(run / "config.json", config_text(run, changes, raw))
    assert_success_or_one_line(resume(run, monkeypatch), accepted=(Reached,))
    nothing_blocks(run, before)


# --- last.json: runs, train --resume ----------------------------------------------------------

STATE_KEYS = ["completed_epochs", "best", "wait", "finished", "warmup_epochs", "extra"]


@pytest.mark.slow
@examples("last.json")
@given(
    changes=changes_of(STATE_KEYS),
    raw=st.one_of(st.none(), RAW),
    which=st.sampled_from(["finished", "unfinished"]),
)
def test_any_last_json_is_a_row_and_a_resume_or_one_line(runs, scratch, changes, raw, which, monkeypatch):
    folder = scratch()
    run = copy_run(runs[which], folder)
    before = {entry.name for entry in run.iterdir()}
    values = edited(json.loads((run / "last.json").read_text()), changes)
    replaced(run / "last.json", raw if raw is not None else json_bytes(values))
    listed = invoke("runs", folder)
    assert_success_or_one_line(listed)
    assert listed.exit_code == 0 and run.name in listed.output, listed.output
    if which == "unfinished":
        assert_success_or_one_line(resume(run, monkeypatch), accepted=(Reached,))
        nothing_blocks(run, before)


# --- RUN/report/metrics.json: runs ------------------------------------------------------------

METRIC_KEYS = ["model", "subset", "mean_iou", "pixel_accuracy", "images", "class_iou", "extra"]


@pytest.mark.slow
@examples("metrics.json")
@given(changes=changes_of(METRIC_KEYS), raw=st.one_of(st.none(), RAW),
       sort=st.sampled_from(["test_miou", "date", "valid_miou"]))  # fmt: skip
def test_runs_reads_any_report_metrics(runs, scratch, changes, raw, sort):
    import math

    folder = scratch()
    run = copy_run(runs["finished"], folder)
    values = edited(json.loads((run / "report" / "metrics.json").read_text()), changes)
    replaced(run / "report" / "metrics.json", raw if raw is not None else json_bytes(values))
    result = invoke("runs", folder, "--json", "--sort", sort)
    assert_success_or_one_line(result)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)  # stderr may hold Python's "Exception ignored" notes
    score = row["test_miou"]
    number = isinstance(score, (int, float)) and not isinstance(score, bool)
    assert score is None or (number and math.isfinite(score) and 0 <= score <= 1), score


# --- class_weights.json: report, train --resume -----------------------------------------------


@pytest.mark.slow
@examples("class_weights.json")
@given(changes=changes_of(["weights", "classes", "method", "pixel_counts"]),
       weights=st.one_of(st.none(), st.lists(SCALAR, min_size=21, max_size=21)),
       raw=st.one_of(st.none(), RAW), command=st.sampled_from(["report", "resume"]))  # fmt: skip
def test_any_class_weights_json_is_used_or_one_line(runs, scratch, changes, weights, raw, command,
                                                    monkeypatch):  # fmt: skip
    run = copy_run(runs["finished" if command == "report" else "unfinished"], scratch())
    if command == "report":
        shutil.rmtree(run / "report")
    before = {entry.name for entry in run.iterdir()}
    values = edited(json.loads((run / "class_weights.json").read_text()),
                    {**changes, **({"weights": weights} if weights is not None else {})})  # fmt: skip
    replaced(run / "class_weights.json", raw if raw is not None else json_bytes(values))
    if command == "report":
        assert_success_or_one_line(report(run))
        assert not fresh_report_is_blocked(run)
    else:
        assert_success_or_one_line(resume(run, monkeypatch), accepted=(Reached,))
    nothing_blocks(run, before)


# --- model.pth's fields: predict --------------------------------------------------------------

MODEL_FIELDS = ["size", "resize", "classes", "colors", "ignore_index", "mean", "std", "metadata", "format",
                "model_config", "model_config.num_classes", "model_config.decoder_channels",
                "model_config.encoder", "model_config.extra"]  # fmt: skip


@pytest.fixture(scope="module")
def model_state(runs):
    return torch.load(runs["finished"] / "model.pth", weights_only=True)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    import numpy as np
    from PIL import Image

    path = tmp_path_factory.mktemp("image") / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), np.uint8)).save(path)
    return path


@pytest.mark.slow
@examples("model.pth")
@given(changes=changes_of(MODEL_FIELDS), missing=st.sets(st.sampled_from(MODEL_FIELDS[:9]), max_size=1))
def test_any_model_pth_fields_predict_or_one_line(model_state, image, scratch, changes, missing):
    folder = scratch()
    state = dict(model_state)
    for name in missing:
        state.pop(name, None)
    fields = edited({name: value for name, value in state.items() if name != "state_dict"}, changes)
    torch.save({**fields, "state_dict": model_state["state_dict"]}, folder / "model.pth")
    result = invoke("predict", "--model", folder / "model.pth", image, "--out", folder / "out", "--quiet",
                    "--num-workers", "0")  # fmt: skip
    assert_success_or_one_line(result)
    if result.exit_code == 1:
        assert not (folder / "out").exists() or not any((folder / "out").iterdir())


# --- an ONNX export's metadata: predict -------------------------------------------------------


@pytest.fixture(scope="module")
def identity_graph():
    """A 3-class identity graph (logits = the normalised image) and a valid description of it."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    node = ("images", TensorProto.FLOAT, ["n", 3, "h", "w"])
    output = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 3, "h", "w"])
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["logits"])], "g",
                              [helper.make_tensor_value_info(*node)], [output])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    description = {"format": "fastseg-export/1", "source_format": "fastseg-model/2", "size": 32,
                   "resize": "squish", "classes": ["background", "thing", "other"],
                   "colors": [[0, 0, 0], [128, 0, 0], [0, 128, 0]], "ignore_index": 255,
                   "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "metadata": {},
                   "model_config": {"num_classes": 3, "decoder_channels": [256, 128, 64, 32, 16],
                                    "encoder": "vgg16_bn"}, "precision": "fp32"}  # fmt: skip
    return onnx, model, description


@pytest.mark.slow
@examples("onnx metadata")
@given(changes=changes_of([*MODEL_FIELDS, "precision", "int8"]), raw=st.one_of(st.none(), RAW))
def test_any_onnx_metadata_predicts_or_one_line(identity_graph, image, scratch, changes, raw):
    from onnx import helper

    onnx, model, description = identity_graph
    folder = scratch()
    proto = onnx.ModelProto()
    proto.CopyFrom(model)
    text = raw.decode("utf-8", "replace") if raw is not None else json.dumps(edited(description, changes),
                                                                             allow_nan=True)  # fmt: skip
    helper.set_model_props(proto, {"fastseg": text})
    onnx.save(proto, str(folder / "model.onnx"))
    result = invoke("predict", "--model", folder / "model.onnx", image, "--out", folder / "out", "--quiet",
                    "--num-workers", "0")  # fmt: skip
    assert_success_or_one_line(result)
    if result.exit_code == 1:
        assert not (folder / "out").exists() or not any((folder / "out").iterdir())
