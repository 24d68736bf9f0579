"""`--runtime auto|torch|onnx|int8` (issue #24): `auto` runs a run folder's model.int8.onnx only
when its recorded accuracy check passed and onnxruntime imports, says what it chose in one line,
and predictions.csv records it; a model file is run as it is; predict's torch masks are unchanged
by the threads that write them.

The INT8 "model" is a hand-made identity graph carrying an INT8 export's description (as
tests/test_export.py builds graphs): it runs in milliseconds, and its masks (each pixel's strongest
colour channel) tell it apart from the torch model's.
"""

import csv
import re
import sys
import threading
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from model_files import EXPORT_DESCRIPTION as DESCRIPTION
from model_files import identity_onnx, thirds
from PIL import Image

from cli.main import main
from fastseg.classes import Classes
from fastseg.errors import OptionError
from fastseg.inference import output_writer
from fastseg.inference import predict as predict_module
from fastseg.inference.jobs import Job
from fastseg.inference.output_writer import write_outputs
from fastseg.inference.precision import cpu_supports_bf16
from fastseg.inference.prediction_log import (
    FIXED_FIELDS,
    OLD_FIXED_FIELDS,
    PredictionLog,
    csv_fields,
    previous_rows,
)
from fastseg.inference.runtime_choice import choose_runtime, int8_check
from fastseg.inference.whole_image import prefetched
from fastseg.model.checkpoint import save_model
from fastseg.model.config import ModelConfig
from fastseg.model.network import SegmentationModel

CPU = torch.device("cpu")
NO_USABLE_CHECK = "model.int8.onnx records no usable accuracy check"
TORCH = "torch bf16" if cpu_supports_bf16() else "torch fp32"
PASSED = {"validation_miou_fp32": 0.8, "validation_miou_int8": 0.796, "validation_images": 8,
          "calibration_images": 4, "forced": False}  # fmt: skip


@pytest.fixture(scope="module")
def model_pth(tmp_path_factory):
    """The model the INT8 graph's description says it was exported from (3 classes, 32 px)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pth"
    config = ModelConfig(num_classes=3)
    classes = Classes.create(DESCRIPTION["classes"], [tuple(c) for c in DESCRIPTION["colors"]], 255)
    return save_model(path, SegmentationModel(config).eval(), config, size=32, classes=classes)


def run_folder(tmp_path, model_pth, int8=None):
    """A run folder with model.pth and, unless `int8` is None, a model.int8.onnx whose metadata
    holds `int8` as its check (`...`: no check at all)."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "model.pth").write_bytes(model_pth.read_bytes())
    if int8 is ...:
        identity_onnx(folder / "model.int8.onnx", precision="int8")
    elif int8 is not None:
        identity_onnx(folder / "model.int8.onnx", precision="int8", int8=int8)
    return folder


def predict(model, source, out, *options):
    return CliRunner().invoke(main, ["predict", "--model", str(model), str(source), "--out", str(out),
                                     "--num-workers", "0", *options])  # fmt: skip


def rows(out):
    with (out / "predictions.csv").open() as file:
        return list(csv.DictReader(file))


def identity_labels(out):
    with Image.open(out / "a.png") as mask:
        labels = np.array(mask)
    return (labels[:, 2:8] == 0).all() and (labels[:, 12:18] == 1).all() and (labels[:, 22:28] == 2).all()


def test_auto_runs_int8_when_its_check_passed_and_says_so(tmp_path, model_pth):
    pytest.importorskip("onnxruntime")
    folder = run_folder(tmp_path, model_pth, PASSED)
    result = predict(folder, thirds(tmp_path / "in"), tmp_path / "out")
    assert result.exit_code == 0, result.output
    line = ("runtime: onnxruntime int8 (model.int8.onnx: its check lost 0.004 mIoU on 8 validation images)"
            " — --runtime torch for model.pth")  # fmt: skip
    assert line in result.output.splitlines()
    assert [row["runtime"] for row in rows(tmp_path / "out")] == ["onnxruntime int8"]
    assert identity_labels(tmp_path / "out")  # the INT8 file ran, not model.pth


@pytest.mark.parametrize(
    ("check", "reason"),
    [
        (None, "model.pth; no model.int8.onnx in the run folder"),
        (..., "model.pth; model.int8.onnx records no accuracy check"),
        ({**PASSED, "validation_miou_int8": 0.78}, "model.pth; model.int8.onnx's check lost 0.020 mIoU on 8 "
                                                   "validation images, more than 0.010"),
        ({**PASSED, "validation_miou_int8": 0.7, "forced": True}, "model.pth; model.int8.onnx's check lost "
                                                                   "0.100 mIoU"),
        ({**PASSED, "validation_miou_int8": "0.8"}, f"model.pth; {NO_USABLE_CHECK}"),
        ({**PASSED, "validation_miou_fp32": None}, f"model.pth; {NO_USABLE_CHECK}"),
    ],
    ids=["no INT8 file", "no check", "failed check", "forced past the limit", "a string", "null"],
)  # fmt: skip
def test_auto_never_runs_int8_without_a_passed_check(tmp_path, model_pth, check, reason):
    folder = run_folder(tmp_path, model_pth, check)
    result = predict(folder, thirds(tmp_path / "in"), tmp_path / "out")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("runtime:"))
    assert line.startswith(f"runtime: {TORCH} ({reason}")
    assert [row["runtime"] for row in rows(tmp_path / "out")] == [TORCH]


def test_auto_without_onnxruntime_runs_torch(tmp_path, model_pth, monkeypatch):
    """A machine without the onnx extra: `import onnxruntime` fails, the passed check is not used."""
    folder = run_folder(tmp_path, model_pth, PASSED)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    choice = choose_runtime(folder, "auto", CPU)
    assert (choice.kind, choice.path) == ("torch", folder / "model.pth")
    assert "onnxruntime is not installed" in choice.reason
    result = predict(folder, thirds(tmp_path / "in"), tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert [row["runtime"] for row in rows(tmp_path / "out")] == [TORCH]


def test_auto_leaves_int8_to_a_gpu_and_to_an_explicit_precision(tmp_path, model_pth):
    folder = run_folder(tmp_path, model_pth, PASSED)
    assert choose_runtime(folder, "auto", torch.device("cuda"), requested_device="cuda").kind == "torch"
    choice = choose_runtime(folder, "auto", CPU, precision="fp32")
    assert choice.kind == "torch" and "--precision fp32 is torch's" in choice.reason


def test_runtime_names_a_file_of_the_run_folder(tmp_path, model_pth):
    pytest.importorskip("onnxruntime")
    folder = run_folder(tmp_path, model_pth, PASSED)
    source = thirds(tmp_path / "in")
    result = predict(folder, source, tmp_path / "torch", "--runtime", "torch", "--quiet")
    assert result.exit_code == 0 and [row["runtime"] for row in rows(tmp_path / "torch")] == [TORCH]
    result = predict(folder, source, tmp_path / "onnx", "--runtime", "onnx")
    assert result.exit_code == 2
    assert "Error: --runtime onnx: " in result.output
    assert "holds no model.onnx (`fastseg export` makes it)" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("file", "runtime", "message"),
    [
        ("model.pth", "int8", "is a torch model; pass its run folder (with model.int8.onnx)"),
        ("model.pth", "onnx", "is a torch model; pass its run folder (with model.onnx)"),
        ("model.int8.onnx", "torch", "is an ONNX export; pass its run folder or model.pth"),
        ("model.int8.onnx", "onnx", "is an INT8 ONNX export; leave --runtime out"),
        ("fp32.onnx", "int8", "is an fp32 ONNX export; leave --runtime out"),
    ],
)
def test_a_runtime_against_the_kind_of_the_file_given_is_a_usage_error(tmp_path, model_pth, file, runtime,
                                                                       message):  # fmt: skip
    pytest.importorskip("onnxruntime")
    folder = run_folder(tmp_path, model_pth, PASSED)
    identity_onnx(folder / "fp32.onnx", precision="fp32")
    result = predict(folder / file, thirds(tmp_path / "in"), tmp_path / "out", "--runtime", runtime)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out" / "a.png").exists()


def test_a_file_given_runs_as_it_is_whatever_its_check(tmp_path, model_pth):
    """`--model RUN/model.int8.onnx` keeps meaning that file, even with a failed check."""
    pytest.importorskip("onnxruntime")
    folder = run_folder(tmp_path, model_pth, {**PASSED, "validation_miou_int8": 0.1})
    result = predict(folder / "model.int8.onnx", thirds(tmp_path / "in"), tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "runtime: onnxruntime int8 (model.int8.onnx, as given)" in result.output
    assert identity_labels(tmp_path / "out")


@pytest.mark.parametrize(
    ("description", "differs"),
    [({"classes": ["background", "thing", "another"]}, "classes"), ({"size": 64}, "size"),
     ({"metadata": {"run": "another training"}}, "metadata"), ({"resize": "letterbox"}, "resize"),
     ({"model_config": {**DESCRIPTION["model_config"], "decoder_channels": [64, 32, 16, 8, 4]}},
      "model_config")],
    ids=["other classes", "other size", "other training", "other resize", "other decoder"],
)  # fmt: skip
def test_auto_never_swaps_model_pth_for_an_int8_file_of_another_model(tmp_path, model_pth, description,
                                                                       differs):  # fmt: skip
    pytest.importorskip("onnxruntime")
    folder = run_folder(tmp_path, model_pth)
    identity_onnx(folder / "model.int8.onnx", precision="int8", int8=PASSED, **description)
    choice = choose_runtime(folder, "auto", CPU)
    assert (choice.kind, choice.path.name) == ("torch", "model.pth")
    assert choice.reason == f"model.pth; model.int8.onnx is not its export (different {differs})"


def test_an_export_of_model_pth_is_its_export(tmp_path, model_pth):
    """What `fastseg export` writes (`description_json`) read back (`described_model`) matches model.pth."""
    from fastseg.inference.runtime_choice import _other_model
    from fastseg.model.checkpoint import load_model
    from fastseg.model.exported import described_model, description_json

    loaded = load_model(model_pth)
    for metadata in ({}, {"epochs": 3, "history": [[1, 0.5]], "data": "D"}):
        loaded.metadata = metadata
        torch_file = save_model(tmp_path / "model.pth", loaded.model, loaded.model.config, 32, metadata,
                                classes=loaded.class_set)  # fmt: skip
        text = description_json(loaded, precision="int8", int8=PASSED)
        exported = described_model(tmp_path / "model.int8.onnx", text)
        assert _other_model(torch_file, exported) == ""
        exported.classes = ["background", "thing", "another"]
        assert _other_model(torch_file, exported) == "different classes"


@pytest.mark.parametrize("kind", ["folder", "FIFO", "device", "broken link"])
def test_a_model_int8_onnx_that_is_not_a_file_is_named_so_and_never_opened(tmp_path, model_pth, kind):
    """A folder, a FIFO, a link to /dev/zero or to nothing named model.int8.onnx: auto runs
    model.pth saying what stands there (not "no model.int8.onnx"), --runtime int8 is a usage error
    saying the same; neither blocks on the FIFO nor reads the device."""
    import os

    folder = run_folder(tmp_path, model_pth)
    int8 = folder / "model.int8.onnx"
    {"folder": int8.mkdir, "FIFO": lambda: os.mkfifo(int8), "device": lambda: int8.symlink_to("/dev/zero"),
     "broken link": lambda: int8.symlink_to(tmp_path / "gone")}[kind]()  # fmt: skip
    said = {"FIFO": r"a named pipe \(FIFO\)", "device": "a character device"}.get(kind, f"a {kind}")
    choice = choose_runtime(folder, "auto", CPU)
    assert choice.kind == "torch"
    assert re.fullmatch(f"model.pth; model.int8.onnx is {said}, not a model file", choice.reason)
    with pytest.raises(OptionError, match=f"--runtime int8: .*model.int8.onnx is {said}, not a model file"):
        choose_runtime(folder, "int8", CPU)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("model.pth", "a named pipe (FIFO)"),
        ("model.onnx", "a named pipe (FIFO)"),
        ("run/model.pth", "a named pipe (FIFO)"),
        ("zero.pth", "a character device"),
    ],
)
def test_a_model_that_is_not_a_regular_file_is_named_so_and_never_opened(tmp_path, name, kind):
    """A FIFO (or a link to /dev/zero) given as --model, or standing as a run folder's model.pth:
    one line saying what it is, not "model file not found" (it is there), exit 1; predict never
    blocks on the FIFO waiting for a writer nor reads the device."""
    import os

    from fastseg.model.checkpoint import CheckpointError, resolve_model_path

    path = tmp_path / name
    path.parent.mkdir(exist_ok=True)
    os.mkfifo(path) if "FIFO" in kind else path.symlink_to("/dev/zero")
    model = path.parent if name.startswith("run/") else path
    line = f"{path}: {kind}, not a regular file; a model must be a file on disk"
    with pytest.raises(CheckpointError, match=re.escape(line)):
        resolve_model_path(model)
    results = []
    source, out = thirds(tmp_path / "in"), tmp_path / "out"
    worker = threading.Thread(target=lambda: results.append(predict(model, source, out)), daemon=True)
    worker.start()
    worker.join(60)
    assert results, "predict blocked on the model path"
    result = results[0]
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [f"Error: {line}"]


def test_int8_check_figures_outside_an_miou_are_no_check():
    for figure in (-1, -1.0, 1e308, 1.5, float("nan"), float("inf"), "0.8", None, [0.8]):
        for field in ("validation_miou_fp32", "validation_miou_int8"):
            check = {**PASSED, "validation_miou_fp32": 0.8, "validation_miou_int8": 0.8, field: figure}
            assert int8_check({"precision": "int8", "int8": check}) == (False, NO_USABLE_CHECK), figure
        both = {**PASSED, "validation_miou_fp32": figure, "validation_miou_int8": figure}
        assert not int8_check({"precision": "int8", "int8": both})[0], figure


def test_int8_check_figures():
    assert int8_check({"precision": "int8", "int8": PASSED}) == (
        True, "model.int8.onnx: its check lost 0.004 mIoU on 8 validation images")  # fmt: skip
    assert int8_check({"precision": "int8", "int8": {**PASSED, "validation_miou_int8": 0.81}})[1].endswith(
        "gained 0.010 mIoU on 8 validation images")  # fmt: skip
    assert int8_check({"precision": "int8", "int8": {**PASSED, "validation_miou_int8": 0.79}})[0]  # 0.010
    # no change: "lost 0.000", where it said "gained -0.000"
    assert int8_check({"precision": "int8", "int8": {**PASSED, "validation_miou_int8": 0.8}}) == (
        True, "model.int8.onnx: its check lost 0.000 mIoU on 8 validation images")  # fmt: skip
    assert not int8_check({"precision": "int8", "int8": {**PASSED, "validation_miou_int8": True}})[0]
    assert not int8_check({"precision": "fp32", "int8": PASSED})[0]
    with pytest.raises(OptionError, match="--runtime fast: choose one of auto, torch, onnx, int8"):
        choose_runtime("x", "fast")


def test_report_runtime_picks_the_file_and_leaves_a_run_folder_alone_by_default(tmp_path, model_pth,
                                                                               monkeypatch):  # fmt: skip
    pytest.importorskip("onnxruntime")
    import fastseg.inference.report as report_module

    folder = run_folder(tmp_path, model_pth, PASSED)
    seen = {}

    def stop(**options):
        seen.update(options)
        raise SystemExit(0)

    monkeypatch.setattr(report_module, "report", stop)
    result = CliRunner().invoke(main, ["report", "--model", str(folder)])
    assert result.exit_code == 0 and seen["model"] == folder and "runtime:" not in result.output
    result = CliRunner().invoke(main, ["report", "--model", str(folder), "--runtime", "auto"])
    assert result.exit_code == 0 and seen["model"] == folder / "model.int8.onnx"
    assert "runtime: onnxruntime int8 (model.int8.onnx: its check lost 0.004 mIoU" in result.output
    result = CliRunner().invoke(main, ["report", "--model", str(folder / "model.pth"), "--runtime", "int8"])
    assert result.exit_code == 2 and "is a torch model" in result.output


# --- the torch path: the threads that write outputs change nothing ----------------------------------


def test_torch_masks_and_rows_are_the_same_written_on_threads_or_serially(tmp_path, model_pth, monkeypatch):
    source = tmp_path / "in"
    source.mkdir()
    rng = np.random.default_rng(0)
    for index in range(11):  # two batches of 8 and a bad file among them
        Image.fromarray(rng.integers(0, 255, (20 + index, 37, 3), np.uint8)).save(source / f"{index:02}.png")
    (source / "05.png").write_bytes(b"broken")
    threaded = predict(model_pth, source, tmp_path / "threaded", "--precision", "fp32", "--overlay")
    monkeypatch.setattr(predict_module, "OUTPUT_THREADS", 0)
    serial = predict(model_pth, source, tmp_path / "serial", "--precision", "fp32", "--overlay")
    assert threaded.exit_code == serial.exit_code == 1  # the broken file
    names = sorted(path.name for path in (tmp_path / "serial").iterdir())
    assert names == sorted(path.name for path in (tmp_path / "threaded").iterdir())
    assert len(names) == 1 + 2 * 10
    for name in names:
        if name != "predictions.csv":
            threaded_bytes = (tmp_path / "threaded" / name).read_bytes()
            assert threaded_bytes == (tmp_path / "serial" / name).read_bytes(), name
    untimed = [[{**row, "seconds": ""} for row in rows(tmp_path / run)] for run in ("threaded", "serial")]
    assert untimed[0] == untimed[1]
    assert [row["path"] for row in untimed[0]] == [str(source / f"{index:02}.png") for index in range(11)]


def test_pending_outputs_are_bounded_and_logged_in_order(tmp_path, monkeypatch):
    """At most `max_pending` images wait for their outputs however many come: memory does not
    grow with the number of images, and the rows keep the input order."""
    produced, logged = [], []

    class Result:
        def __init__(self, index):
            self.index, self.error, self.size, self.seconds = index, "", (10, 10), 0.0

    def results():
        for index in range(40):
            produced.append(index)
            yield Result(index)

    def made(result, job, overlay):
        time.sleep(0.002 * (result.index % 3))  # finished out of order
        return [1.0] if result.index != 7 else "cannot write"

    monkeypatch.setattr(output_writer, "_made", made)
    jobs = [Job(tmp_path / f"{index}.png", tmp_path / f"o{index}.png") for index in range(40)]

    class Log(PredictionLog):
        def write(self, row):
            logged.append(row[0])
            assert len(produced) - len(logged) <= 4 + 1  # max_pending, and the one just made

    with (tmp_path / "log.csv").open("w") as file:
        failures = []
        count = write_outputs(results(), jobs, False, Log(file, ["path"]), failures, threads=2, max_pending=4)
    assert count == 39 and failures == [(jobs[7].source, "cannot write")]
    assert logged == [job.source for job in jobs]


def test_an_old_predictions_csv_is_still_read_back(tmp_path, model_pth):
    """A predictions.csv from before the runtime column: `--skip-existing` keeps its figures."""
    source = thirds(tmp_path / "in")
    out = tmp_path / "out"
    assert predict(model_pth, source, out, "--quiet").exit_code == 0
    new = rows(out)[0]
    old_header = [*OLD_FIXED_FIELDS, *list(new)[len(FIXED_FIELDS) :]]
    with (out / "predictions.csv").open("w", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(old_header)
        writer.writerow([new[name] if name != "seconds" else "9.5" for name in old_header])
    assert predict(model_pth, source, out, "--quiet", "--skip-existing").exit_code == 0
    assert rows(out) == [{**new, "status": "skipped", "seconds": "9.5", "runtime": ""}]


def test_an_earlier_predictions_csv_in_any_shape_is_read_back_or_left(tmp_path):
    """`--skip-existing` reads the earlier log: CRLF lines are rows as any others; extra columns,
    non-UTF-8 bytes, a folder, a FIFO (which blocked `open()` forever) or a link to /dev/zero are
    no rows (the masks are read back), returned at once."""
    import os

    fields = csv_fields(["a", "b"])
    row = ["in/x.png", "30", "20", "ok", "", "0.1", "torch fp32", "0.5", "0.5"]
    log = tmp_path / "predictions.csv"
    log.write_bytes(("\r\n".join([",".join(fields), ",".join(row)]) + "\r\n").encode())
    assert previous_rows(log, fields) == {"in/x.png": row}
    log.write_text("\n".join([",".join([*fields, "extra"]), ",".join([*row, "x"])]) + "\n")
    assert previous_rows(log, fields) == {}
    log.write_bytes(",".join(fields).encode() + b"\n" + ",".join(row).encode() + b"\xff\n")
    assert previous_rows(log, fields) == {}
    log.unlink()
    for make in (log.mkdir, lambda: os.mkfifo(log), lambda: log.symlink_to("/dev/zero")):
        make()
        found = []
        reader = threading.Thread(
            target=lambda found=found: found.append(previous_rows(log, fields)), daemon=True
        )
        reader.start()
        reader.join(10)
        assert found == [{}]
        log.rmdir() if log.is_dir() else log.unlink()


@pytest.mark.parametrize("kind", ["folder", "FIFO"])
def test_predictions_csv_that_is_not_a_file_stops_predict_before_any_image(tmp_path, kind):
    """A folder named predictions.csv was found only after every image was segmented: os.replace
    failed with a traceback. Now one line, exit 1, before any mask is written; a FIFO is refused
    the same (never opened by --skip-existing)."""
    import os

    pytest.importorskip("onnxruntime")
    out = tmp_path / "out"
    out.mkdir()
    (out / "predictions.csv").mkdir() if kind == "folder" else os.mkfifo(out / "predictions.csv")
    model = identity_onnx(tmp_path / "model.onnx")
    result = predict(model, thirds(tmp_path / "in"), out, "--quiet", "--skip-existing")
    assert result.exit_code == 1
    what = "a folder" if kind == "folder" else "not a regular file"
    assert f"predictions.csv: {what}, where predict writes its log; remove it or choose another --out" in (
        result.output
    )
    assert "Traceback" not in result.output and not (out / "a.png").exists()


# --- decoding one batch ahead -------------------------------------------------------------------------


def test_prefetched_keeps_the_order_raises_the_producers_error_and_stops_when_closed():
    assert list(prefetched(iter(range(20)))) == list(range(20))

    def failing():
        yield 1
        raise ValueError("decoder bug")

    with pytest.raises(ValueError, match="decoder bug"):
        list(prefetched(failing()))
    made = []

    def endless():
        while True:
            made.append(len(made))
            yield made[-1]

    before = threading.active_count()
    batches = prefetched(endless())
    assert [next(batches) for _ in range(3)] == [0, 1, 2]
    batches.close()  # the consumer stops: the producer thread ends, having made a batch or two more
    assert threading.active_count() == before and len(made) <= 3 + 2


def test_predict_and_report_help_still_import_no_torch():
    """`--runtime`'s choices come from a torch-free module: `predict --help` stays instant (a first
    version imported torch through the INT8 threshold's module: 1.9 s)."""
    import subprocess

    code = "import sys, cli.predict, cli.report; print(any(m.startswith('torch') for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_an_unreadable_int8_file_is_left_for_model_pth_with_the_reason(tmp_path, model_pth):
    pytest.importorskip("onnxruntime")
    folder = run_folder(tmp_path, model_pth)
    (folder / "model.int8.onnx").write_bytes(b"\x00not a graph\xff")
    result = predict(folder, thirds(tmp_path / "in"), tmp_path / "out")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("runtime:"))
    assert line.startswith(f"runtime: {TORCH} (model.pth; model.int8.onnx unusable: ")
    assert "not a readable ONNX model" in line
    quiet = predict(folder, thirds(tmp_path / "in"), tmp_path / "quiet", "--quiet")
    assert quiet.exit_code == 0 and "runtime:" not in quiet.output  # --quiet: the CSV still says it
    assert [row["runtime"] for row in rows(tmp_path / "quiet")] == [TORCH]


def test_a_run_without_int8_names_the_command_that_makes_it_on_the_cpu_only(tmp_path, model_pth, monkeypatch):
    """With model.pth alone, the default is torch (0.6-0.8x the peer on a bf16 CPU, #24); the INT8
    export is about twice as fast on a CPU, so the line says how to make it. On a GPU it would not
    be used, so the line does not suggest it."""
    from fastseg.inference import runtime_choice

    monkeypatch.setattr(runtime_choice, "_export_installed", lambda: True)  # the onnx extra, as [test] has
    folder = run_folder(tmp_path, model_pth)
    hint = f"fastseg export --model {folder} --int8 makes {folder / 'model.int8.onnx'}, faster on a CPU"
    assert choose_runtime(folder, "auto", CPU).alternative == hint
    result = predict(folder, thirds(tmp_path / "in"), tmp_path / "out")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("runtime:"))
    assert line == f"runtime: {TORCH} (model.pth; no model.int8.onnx in the run folder) — {hint}"
    assert choose_runtime(folder, "auto", "cuda:0").alternative == ""
    assert choose_runtime(folder, "auto", None, requested_device="cuda").alternative == ""
    spaced = tmp_path / "my run"  # the command is copied from the line: quoted for the shell
    spaced.mkdir()
    (spaced / "model.pth").write_bytes((folder / "model.pth").read_bytes())
    alternative = choose_runtime(spaced, "auto", CPU).alternative
    assert alternative.startswith(f"fastseg export --model '{spaced}' --int8 makes ")


def test_the_export_hint_says_how_to_install_what_export_needs_where_it_is_missing(tmp_path, model_pth,
                                                                                  monkeypatch):  # fmt: skip
    """Without the onnx extra, `export --int8` would stop at its own install line: the hint says it
    first (found by spec, not imported: the torch path must not pay onnx's import)."""
    import importlib.util

    from fastseg.extras import install_hint

    folder = run_folder(tmp_path, model_pth)
    real_find_spec = importlib.util.find_spec

    def without_onnxscript(name, *rest):
        return None if name == "onnxscript" else real_find_spec(name, *rest)

    monkeypatch.setattr(importlib.util, "find_spec", without_onnxscript)
    alternative = choose_runtime(folder, "auto", CPU).alternative
    assert alternative.endswith(f"faster on a CPU (after {install_hint('onnx')})")
