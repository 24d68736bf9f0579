"""`fastseg export` to ONNX and `fastseg predict` on onnxruntime: parity with torch, the metadata
predict needs, INT8's validation check, and one line for every file that is not ours.

Tolerances, on an untrained 32² model (seeded) with BatchNorm statistics made non-trivial: fp32
ONNX logits within 1e-4 of torch's (measured: about 1e-7), labels identical on at least 99.9 %
of pixels (measured: all), and `predict`'s masks identical on at least 99.9 % of each image's
pixels (measured: all).
"""

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from model_files import EXPORT_DESCRIPTION as DESCRIPTION
from model_files import save_seeded_voc_model, write_run_files
from PIL import Image

from cli.main import main
from fastseg.errors import CheckpointError, FastsegError
from fastseg.extras import install_hint
from fastseg.model.checkpoint import load_model
from fastseg.model.network import SegmentationModel

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

LOGIT_TOLERANCE = 1e-4
SAME_LABELS = 0.999


def invoke(*arguments):
    return CliRunner().invoke(main, [*map(str, arguments)])


@pytest.fixture(scope="module")
def run(tmp_path_factory, voc_root):
    """A run folder as `fastseg train` leaves it, without the training: model.pth (32², BatchNorm
    statistics randomised), split.json over the tiny generated set, config.json naming it."""
    folder = tmp_path_factory.mktemp("run")
    save_seeded_voc_model(folder / "model.pth")
    write_run_files(folder, voc_root)
    return folder


@pytest.fixture(scope="module")
def exported(run):
    result = invoke("export", run)
    assert result.exit_code == 0, result.output
    assert f"fp32 ONNX model: {run / 'model.onnx'}" in result.output
    return run / "model.onnx"


def metadata(path):
    props = {
        entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props
    }
    return json.loads(props["fastseg"])


@pytest.mark.slow
def test_onnx_logits_match_torch_at_any_batch_and_size(run, exported):
    from fastseg.inference.runtime import open_onnx

    reference = load_model(run).model.eval()
    _, runtime = open_onnx(exported)
    torch.manual_seed(1)
    for shape in [(1, 3, 32, 32), (3, 3, 64, 48), (2, 3, 97, 131)]:  # batch, height, width all dynamic
        images = torch.randn(shape)
        with torch.no_grad():
            expected = reference(images)
        logits = torch.as_tensor(runtime.logits(images))  # onnxruntime answers with an array
        assert logits.shape == (shape[0], 21, *shape[2:])
        assert (logits - expected).abs().max().item() <= LOGIT_TOLERANCE
        assert (logits.argmax(1) == expected.argmax(1)).float().mean().item() >= SAME_LABELS


def test_the_file_carries_what_predict_needs(exported):
    values = metadata(exported)
    assert values["format"] == "fastseg-export/1" and values["precision"] == "fp32"
    assert values["size"] == 32 and values["resize"] == "squish"
    assert values["classes"][:2] == ["background", "aeroplane"] and len(values["classes"]) == 21
    assert values["colors"][1] == [128, 0, 0] and values["ignore_index"] == 255
    assert values["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert values["model_config"]["num_classes"] == 21
    graph = onnx.load(str(exported)).graph
    assert not [node for node in graph.node if node.op_type == "BatchNormalization"]  # folded
    dims = graph.input[0].type.tensor_type.shape.dim
    assert [bool(dim.dim_param) for dim in dims] == [True, False, True, True]  # N, 3, H, W


def read_rows(path):
    with path.open() as file:
        return {row["path"]: row for row in csv.DictReader(file)}


@pytest.mark.slow
def test_predict_on_onnx_writes_what_torch_writes(run, exported, tmp_path, monkeypatch):
    source = tmp_path / "in"
    source.mkdir()
    rng = np.random.default_rng(0)
    for index, (width, height) in enumerate([(131, 97), (40, 33), (64, 64)]):
        Image.fromarray(rng.integers(0, 255, (height, width, 3), np.uint8)).save(source / f"{index}.jpg")
    common = ["--num-workers", "0", "--quiet", "--overlay"]
    # fp32 on both sides: `auto` is bf16 on a CPU with native bf16, which the ONNX file never is
    torch_run = invoke("predict", "--model", run, source, "--out", tmp_path / "torch", *common,
                       "--precision", "fp32")  # fmt: skip
    assert torch_run.exit_code == 0, torch_run.output

    def no_torch_network(*args, **kwargs):
        raise AssertionError("an ONNX model must not build the torch network")

    monkeypatch.setattr(SegmentationModel, "__init__", no_torch_network)
    result = invoke("predict", "--model", exported, source, "--out", tmp_path / "onnx", *common)
    assert result.exit_code == 0, result.output
    assert "3 segmented, 0 failed" in result.output
    for index in range(3):
        with (
            Image.open(tmp_path / "torch" / f"{index}.png") as a,
            Image.open(tmp_path / "onnx" / f"{index}.png") as b,
        ):
            assert b.mode == "P" and b.size == a.size
            assert (np.array(a) == np.array(b)).mean() >= SAME_LABELS
        assert (tmp_path / "onnx" / f"{index}.overlay.jpg").is_file()
    torch_rows, onnx_rows = (
        read_rows(tmp_path / "torch" / "predictions.csv"),
        read_rows(tmp_path / "onnx" / "predictions.csv"),
    )
    assert sorted(torch_rows) == sorted(onnx_rows)
    for path, row in onnx_rows.items():
        assert (row["width"], row["height"], row["status"]) == (
            torch_rows[path]["width"],
            torch_rows[path]["height"],
            "ok",
        )
        assert float(row["background"]) == pytest.approx(float(torch_rows[path]["background"]), abs=1e-3)


def test_a_file_that_is_not_a_fastseg_onnx_is_one_line(exported, tmp_path):
    from onnx import TensorProto, helper

    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(image)
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(exported.read_bytes()[:5000])
    foreign = tmp_path / "foreign.onnx"
    tensor = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [tensor],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, "h", "w"])],
    )
    onnx.save(helper.make_model(graph), str(foreign))
    edited = tmp_path / "edited.onnx"
    proto = onnx.load(str(exported))
    values = metadata(exported)
    proto.metadata_props[-1].value = json.dumps({**values, "size": -3})
    onnx.save(proto, str(edited))
    expected = {
        damaged: "not a readable ONNX model",
        foreign: "not a fastseg model",
        edited: "field 'size' must be a whole number of pixels from 32 to 8192, got -3",
    }
    for path, message in expected.items():
        result = invoke("predict", "--model", path, image, "--out", tmp_path / "out", "--quiet")
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and str(path) in lines[0]
        assert "Traceback" not in result.output
    result = invoke("predict", "--model", exported, image, "--out", tmp_path / "out", "--precision", "bf16")
    assert result.exit_code == 2 and "runs in its own precision" in result.output


@pytest.mark.slow
def test_int8_that_loses_too_much_is_refused_and_nothing_is_written(run, tmp_path):
    from fastseg.export.exporter import export

    out = tmp_path / "model.int8.onnx"
    # max_drop -1 (a gain of 100 points needed): always refused, whatever the CPU's rounding
    with pytest.raises(
        FastsegError,
        match=r"INT8 loses -?\d\.\d{3} mIoU on the 6 validation images "
        r"\(fp32 \d\.\d{3}, INT8 \d\.\d{3}\), more than -1\.000; nothing written \(--accept-int8-loss",
    ):
        export(run, out=out, int8=True, calibration_images=4, max_drop=-1.0, num_workers=0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_int8_export_records_its_check_and_predicts(run, exported, tmp_path):
    out = tmp_path / "model.int8.onnx"
    result = invoke(
        "export",
        run,
        "--int8",
        "--out",
        out,
        "--calibration-images",
        "4",
        "--num-workers",
        "0",
        "--force",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert "validation mIoU on 6 images: fp32" in result.output and "int8 ONNX model" in result.output
    values = metadata(out)
    assert values["precision"] == "int8" and values["int8"]["calibration_images"] == 4
    assert values["int8"]["validation_images"] == 6 and values["int8"]["forced"] is True
    assert 0 <= values["int8"]["validation_miou_int8"] <= 1
    graph = onnx.load(str(out)).graph
    assert any(node.op_type == "QuantizeLinear" for node in graph.node)
    assert out.stat().st_size < exported.stat().st_size / 3  # int8 weights: a quarter of fp32's
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((30, 50, 3), np.uint8)).save(image)
    result = invoke(
        "predict", "--model", out, image, "--out", tmp_path / "masks", "--quiet", "--num-workers", "0"
    )
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "masks" / "a.png") as mask:
        assert mask.size == (50, 30)


def test_export_refuses_what_it_cannot_do(run, exported, tmp_path):
    from fastseg.export.exporter import export

    with pytest.raises(FastsegError, match="already an ONNX export"):
        export(exported)
    bare = tmp_path / "bare" / "model.pth"
    bare.parent.mkdir()
    bare.write_bytes((run / "model.pth").read_bytes())
    with pytest.raises(FastsegError, match="not a run folder"):
        export(bare, int8=True)  # INT8 needs the run's images to calibrate and check
    with pytest.raises(CheckpointError, match="model file not found"):
        export(tmp_path / "nothing")
    result = invoke("export", run, "--out", tmp_path / "no" / "such" / "m.onnx")
    assert result.exit_code == 1 and "no such folder for --out" in result.output


def test_without_the_onnx_extra_one_line_names_it(run, exported, tmp_path, monkeypatch):
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(image)
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # as if not installed
    result = invoke("predict", "--model", exported, image, "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 1 and install_hint("onnx") in result.output and "fastseg[" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    monkeypatch.setitem(__import__("sys").modules, "onnxscript", None)
    result = invoke("export", run, "--out", tmp_path / "m.onnx")
    assert result.exit_code == 1 and f"needs onnxscript: {install_hint('onnx')}" in result.output
    assert not (tmp_path / "m.onnx").exists()


# --- the output guard (issue #19, item 2): nothing the user had is overwritten ----------------


def test_export_never_replaces_a_file_that_is_not_an_export(run, exported, tmp_path):
    """Before: `export RUN --out RUN/model.pth` replaced the trained model by the ONNX file, and
    `--out photo.jpg` overwrote any file."""
    model_bytes = (run / "model.pth").read_bytes()
    result = invoke("export", run, "--out", run / "model.pth")
    assert result.exit_code == 1 and "did not write as an export" in result.output
    assert (run / "model.pth").read_bytes() == model_bytes
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8 my holiday")
    result = invoke("export", run, "--out", photo)
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert photo.read_bytes() == b"\xff\xd8 my holiday"
    again = tmp_path / "again.onnx"
    again.write_bytes(exported.read_bytes())  # an earlier export, copied: still fastseg's own
    assert invoke("export", run, "--out", again).exit_code == 0


@pytest.mark.slow
def test_report_replaces_only_its_own_report_and_names_the_file_it_scored(run, exported, tmp_path):
    """Before: report overwrote any folder silently, and a report of model.int8.onnx (or .onnx)
    wrote RUN/report/metrics.json naming model.pth, which `fastseg runs` showed as its score."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    common = ["--num-workers", "0", "--quiet", "--precision", "fp32"]
    refused = invoke("report", "--model", run, "--out", mine, *common)
    assert refused.exit_code == 1 and "did not write as a report" in refused.output
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    first = invoke("report", "--model", run, *common)
    assert first.exit_code == 0 and "replaced" not in first.output
    second = invoke("report", "--model", run, *common)
    assert second.exit_code == 0 and "(replaced the earlier report there)" in second.output
    onnx_report = invoke("report", "--model", exported, "--quiet", "--num-workers", "0")
    assert onnx_report.exit_code == 0, onnx_report.output
    metrics = json.loads((run / "report-model" / "metrics.json").read_text())
    assert metrics["model"] == str(exported)
    assert json.loads((run / "report" / "metrics.json").read_text())["model"] == str(run / "model.pth")


def test_a_dead_exports_temporary_file_is_removed_by_the_next_export(run, exported, tmp_path):
    """Issue #19 (5): kill -9 during export left a 38 MB .model.onnx.PID.tmp that later exports kept."""
    import subprocess
    import sys

    ended = [sys.executable, "-c", "import os; print(os.getpid())"]  # a process id no longer alive
    dead = subprocess.run(ended, capture_output=True, text=True)
    stale = tmp_path / f".model.onnx.{dead.stdout.strip()}.tmp"
    stale.write_bytes(b"half an export")
    assert invoke("export", run, "--out", tmp_path / "model.onnx").exit_code == 0
    assert not stale.exists()


# --- the graph against its description (issue #19, item 3): checked when the session is made ----


def onnx_file(path, inputs, outputs, nodes, description=DESCRIPTION):
    """A hand-made graph carrying fastseg's description: what a tool other than `fastseg export`
    (or an edit) could leave under a .onnx name. `inputs`/`outputs`: (name, element type, shape)."""
    from onnx import helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(*node) for node in inputs],
                              [helper.make_tensor_value_info(*node) for node in outputs])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8  # what this onnxruntime reads
    helper.set_model_props(model, {"fastseg": json.dumps(description)})
    onnx.save(model, str(path))
    return path


def bad_graphs(folder):
    from onnx import TensorProto, helper

    FLOAT, UINT8 = TensorProto.FLOAT, TensorProto.UINT8
    image = ("images", FLOAT, ["n", 3, "h", "w"])
    identity = [helper.make_node("Identity", ["images"], ["logits"])]
    return {
        "uint8 input": (onnx_file(folder / "uint8.onnx", [("images", UINT8, ["n", 3, "h", "w"])],
                                  [("logits", FLOAT, ["n", 3, "h", "w"])],
                                  [helper.make_node("Cast", ["images"], ["logits"], to=FLOAT)]),
                        "input 'images' is tensor(uint8), not float32"),
        "two inputs": (onnx_file(folder / "two.onnx", [image, ("more", FLOAT, ["n", 3, "h", "w"])],
                                 [("logits", FLOAT, ["n", 3, "h", "w"])],
                                 [helper.make_node("Add", ["images", "more"], ["logits"])]),
                       "the graph takes 2 inputs"),
        "rank 3 input": (onnx_file(folder / "rank3.onnx", [("images", FLOAT, [3, "h", "w"])],
                                   [("logits", FLOAT, [3, "h", "w"])], identity),
                         "input 'images' has shape (3, ?, ?), not (N, 3, H, W)"),
        "one channel": (onnx_file(folder / "gray.onnx", [("images", FLOAT, ["n", 1, "h", "w"])],
                                  [("logits", FLOAT, ["n", 1, "h", "w"])], identity),
                        "input 'images' has shape (?, 1, ?, ?)"),
        "output of other classes": (onnx_file(folder / "classes.onnx", [image],
                                              [("logits", FLOAT, ["n", 3, "h", "w"])], identity,
                                              {**DESCRIPTION, "classes": [f"c{i}" for i in range(21)],
                                               "colors": [[i, i, i] for i in range(21)],
                                               "model_config": {"num_classes": 21}}),
                                    "output 'logits' has shape (?, 3, ?, ?), not (N, 21, H, W)"),
        "rank 3 output": (onnx_file(folder / "flat.onnx", [image], [("logits", FLOAT, ["n", "c", "hw"])],
                                    [helper.make_node("Constant", [], ["shape"],
                                                      value_ints=[0, 3, -1]),
                                     helper.make_node("Reshape", ["images", "shape"], ["logits"])]),
                          "output 'logits' has shape (?, 3, ?), not (N, 3, H, W)"),
        "float16 output": (onnx_file(folder / "half.onnx", [image],
                                     [("logits", TensorProto.FLOAT16, ["n", 3, "h", "w"])],
                                     [helper.make_node("Cast", ["images"], ["logits"],
                                                       to=TensorProto.FLOAT16)]),
                           "output 'logits' is tensor(float16), not float32"),
        "fixed batch": (onnx_file(folder / "batch1.onnx", [("images", FLOAT, [1, 3, "h", "w"])],
                                  [("logits", FLOAT, [1, 3, "h", "w"])], identity),
                        "input 'images' has fixed dimensions (1, 3, H, W); fastseg feeds any batch of 32x32"),
        "fixed side": (onnx_file(folder / "side64.onnx", [("images", FLOAT, ["n", 3, 64, 64])],
                                 [("logits", FLOAT, ["n", 3, 64, 64])], identity),
                       "input 'images' has fixed dimensions (N, 3, 64, 64)"),
        "size 100000": (onnx_file(folder / "huge.onnx", [image], [("logits", FLOAT, ["n", 3, "h", "w"])],
                                  identity, {**DESCRIPTION, "size": 100000}),
                        "field 'size' must be a whole number of pixels from 32 to 8192, got 100000"),
        "metadata 1e999": (folder / "inf.onnx", "its 'fastseg' metadata: 1e999 is too large a number"),
    }  # fmt: skip


@pytest.fixture
def bad_onnx_run(run, tmp_path):
    """A copy of the run folder holding each bad graph beside its split.json (report needs one)."""
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    cases = bad_graphs(folder)
    text = json.dumps({**DESCRIPTION, "size": 32}).replace('"size": 32', '"size": 1e999')
    good = cases["size 100000"][0]
    proto = onnx.load(str(good))
    proto.metadata_props[-1].value = text
    onnx.save(proto, str(folder / "inf.onnx"))
    return folder, cases


@pytest.mark.parametrize("command", ["predict", "report"])
def test_a_graph_that_does_not_fit_its_description_is_one_line(bad_onnx_run, tmp_path, command):
    """Issue #19 (3): a uint8 input, a graph whose output does not fit, metadata asking 100,000 px
    were tracebacks (or failed on every image); each is refused once, naming the file."""
    folder, cases = bad_onnx_run
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(image)
    for case, (path, expected) in cases.items():
        if command == "predict":
            result = invoke("predict", "--model", path, image, "--out", tmp_path / "out", "--quiet",
                            "--num-workers", "0")  # fmt: skip
        else:
            result = invoke("report", "--model", path, "--out", tmp_path / "report", "--quiet",
                            "--num-workers", "0")  # fmt: skip
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1, (case, result.output)
        assert len(lines) == 1 and "Traceback" not in result.output, (case, result.output)
        assert lines[0].startswith(f"Error: {path}: ") and expected in lines[0], (case, lines[0])
    assert not (tmp_path / "out").exists() and not (tmp_path / "report").exists()


def test_a_hand_made_graph_that_fits_its_description_runs(tmp_path):
    """The checks refuse what does not fit, nothing more: an identity graph over 3 channels,
    described as a 3-class model, predicts (each pixel's class is its strongest channel)."""
    from onnx import TensorProto, helper

    image = ("images", TensorProto.FLOAT, ["n", 3, "h", "w"])
    path = onnx_file(tmp_path / "identity.onnx", [image], [("logits", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                     [helper.make_node("Identity", ["images"], ["logits"])])  # fmt: skip
    pixels = np.zeros((20, 30, 3), np.uint8)
    pixels[:, :10, 0] = pixels[:, 10:20, 1] = pixels[:, 20:, 2] = 255  # red, green, blue thirds
    Image.fromarray(pixels).save(tmp_path / "a.png")
    result = invoke("predict", "--model", path, tmp_path / "a.png", "--out", tmp_path / "out", "--quiet",
                    "--num-workers", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "a.png") as mask:
        labels = np.array(mask)
    assert (labels[:, 2:8] == 0).all() and (labels[:, 12:18] == 1).all() and (labels[:, 22:28] == 2).all()


def test_a_full_disk_during_export_is_one_line_and_the_earlier_export_stays(run, exported, tmp_path,
                                                                           fill_disk_at):  # fmt: skip
    """Issue #19 (5): ENOSPC during export was a traceback. The earlier export is kept whole and
    no temporary file (a 38 MB one, for VGG16-BN) is left."""
    earlier = tmp_path / "model.onnx"
    earlier.write_bytes(exported.read_bytes())
    fill_disk_at(None)  # every write; ENOSPC as write(2) says it: no file named
    result = invoke("export", run, "--out", earlier)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert len(lines) == 1 and lines[0].startswith(f"Error: {earlier}: No space left on device; every file "
                                                   "written before is whole")  # fmt: skip
    assert earlier.read_bytes() == exported.read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.onnx"]


def test_a_graph_that_fails_at_run_time_is_one_line(tmp_path):
    """Found by trying a graph of fixed shape: onnxruntime's InvalidArgument on the first batch
    was a traceback from predict. A graph can pass every check and still fail on a batch (here
    a Reshape to one image's shape, fed three): one line naming the file and the batch."""
    from onnx import TensorProto, helper

    image = ("images", TensorProto.FLOAT, ["n", 3, "h", "w"])
    nodes = [helper.make_node("Constant", [], ["shape"], value_ints=[1, 3, 32, 32]),
             helper.make_node("Reshape", ["images", "shape"], ["logits"])]  # fmt: skip
    path = onnx_file(tmp_path / "reshape.onnx", [image], [("logits", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                     nodes)  # fmt: skip
    for index in range(3):
        Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / f"{index}.png")
    result = invoke("predict", "--model", path, *(tmp_path / f"{index}.png" for index in range(3)), "--out",
                    tmp_path / "out", "--quiet", "--num-workers", "0")  # fmt: skip
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert len(lines) == 1 and lines[0].startswith(f"Error: {path}: the graph failed on a batch of shape "
                                                   "(3, 3, 32, 32)"), lines  # fmt: skip


@pytest.mark.parametrize(
    ("change", "expected"),
    [({"mean": [1e300, 0.4, 0.4]}, "field 'mean' must lie from -10 to 10"),
     ({"std": [1e-300, 0.2, 0.2]}, "field 'std' must lie from 0.0001 to 100"),
     ({"classes": ["a\nb", "c", "d"]}, "field 'classes' must be names without control characters"),
     ({"classes": ["a", "a", "d"]}, "field 'classes' must name each class once"),
     ({"classes": ["", "c", "d"]}, "field 'classes' must be names without control characters")],
)  # fmt: skip
def test_a_description_finite_to_python_but_not_to_float32_is_one_line(tmp_path, change, expected):
    """1e300 passed the finite check and became inf in the float32 input (1e-300: a division by
    0): every mask background. Class names are held to dataset.yaml's rules."""
    from onnx import TensorProto, helper

    image = ("images", TensorProto.FLOAT, ["n", 3, "h", "w"])
    logits = ("logits", TensorProto.FLOAT, ["n", 3, "h", "w"])
    identity = [helper.make_node("Identity", ["images"], ["logits"])]
    path = onnx_file(tmp_path / "m.onnx", [image], [logits], identity, {**DESCRIPTION, **change})
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.png")
    result = invoke("predict", "--model", path, tmp_path / "a.png", "--out", tmp_path / "out", "--quiet")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith(f"Error: {path}: {expected}"), lines[0]


# --- INT8's options without --int8 (F's round) ---------------------------------------------------


@pytest.fixture
def export_calls(monkeypatch):
    """`fastseg.export.exporter.export` replaced by a recorder: the options the CLI passes it."""
    import fastseg.export.exporter as exporter

    calls = []

    def fake(model, **options):
        calls.append(options)
        path = model / "model.onnx"
        path.write_bytes(b"x")
        return exporter.ExportResult(path, "fp32")

    monkeypatch.setattr(exporter, "export", fake)
    return calls


@pytest.mark.parametrize(
    "given",
    [["--calibration-images", "5"], ["--calibration-images", "64"], ["--data", "elsewhere"],
     ["--batch-size", "8"], ["--batch-size", "2"], ["--num-workers", "0"], ["--num-workers", "-1"]],
)  # fmt: skip
def test_int8_options_without_int8_are_a_usage_error_naming_them(export_calls, tmp_path, given):
    """`--calibration-images N` and `--data D` mean something only with --int8 (they were silently
    ignored): one usage line naming the option, exit 2, nothing exported, even when the value given
    equals the default; with --int8, or left out, they pass as before. `--batch-size` and
    `--num-workers` too (round 21): only INT8's calibration and validation read them, an fp32
    export traces one example and decodes no image."""
    result = invoke("export", "--model", tmp_path, *given, "--quiet")
    assert result.exit_code == 2 and not export_calls, result.output
    error = f"Error: {given[0]} applies to --int8 only: add --int8, or leave it out"
    assert [line for line in result.output.splitlines() if line.startswith("Error")] == [error]
    assert "Traceback" not in result.output
    assert invoke("export", "--model", tmp_path, *given, "--int8", "--quiet").exit_code == 0
    assert export_calls[-1]["int8"] is True
    assert invoke("export", "--model", tmp_path, "--quiet").exit_code == 0
    assert invoke("export", "--model", tmp_path, "--force", "--quiet").exit_code == 0  # old scripts


def test_an_unreadable_model_file_is_one_line(run, tmp_path, monkeypatch):
    """Found in review: export opens model.pth itself (to hash the very bytes it loads), so a file
    it may not read (permissions; root reads anything, so the refusal is simulated) was a
    PermissionError traceback where load_model had said one line."""
    import errno
    from pathlib import Path

    real_open = Path.open

    def refusing(self, *args, **kwargs):
        if self == run / "model.pth":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refusing)
    result = invoke("export", "--model", run, "--out", tmp_path / "model.onnx")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.strip().splitlines() == [
        f"Error: {run / 'model.pth'}: not a readable fastseg model (Permission denied)"
    ]
    assert not (tmp_path / "model.onnx").exists()
