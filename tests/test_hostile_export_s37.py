"""A stranger's hostile pass over `fastseg export` and predict's `--runtime` choice (session 37):
each test here is a defect that pass found, each failing before its fix.

The INT8 "model" is the hand-made identity graph of tests/model_files.py carrying an INT8
export's description: it runs in milliseconds, and its masks tell it apart from model.pth's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from model_files import EXPORT_DESCRIPTION, identity_onnx, thirds

from cli.main import main
from fastseg.classes import Classes
from fastseg.inference.runtime_choice import choose_runtime
from fastseg.model.checkpoint import save_model
from fastseg.model.config import ModelConfig
from fastseg.model.exported import DESCRIPTION_DIGEST, SOURCE_DIGEST, description_sha256, file_sha256
from fastseg.model.network import SegmentationModel

PASSED = {"validation_miou_fp32": 0.8, "validation_miou_int8": 0.796, "validation_images": 8,
          "calibration_images": 4, "forced": False}  # fmt: skip


def three_class_model(path: Path, seed: int) -> Path:
    """A 3-class 32² model.pth as the identity graph's description says; `seed` picks its weights,
    every other field is the same whatever the seed (no metadata)."""
    torch.manual_seed(seed)
    config = ModelConfig(num_classes=3)
    colours = [tuple(colour) for colour in EXPORT_DESCRIPTION["colors"]]
    classes = Classes.create(EXPORT_DESCRIPTION["classes"], colours, 255)
    return save_model(path, SegmentationModel(config).eval(), config, 32, classes=classes)


def exported_from(model_pth: Path, int8_file: Path, **description: object) -> Path:
    """`int8_file`: an INT8 export recording `model_pth`'s digest and its own description's, as
    `fastseg export --int8` writes them; `description` overrides the check or other fields."""
    values = {**EXPORT_DESCRIPTION, "precision": "int8", "int8": PASSED, **description}
    recorded = {SOURCE_DIGEST: file_sha256(model_pth), DESCRIPTION_DIGEST: description_sha256(values)}
    return identity_onnx(int8_file, **{**values, **recorded})


@pytest.fixture
def run(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    folder.mkdir()
    three_class_model(folder / "model.pth", seed=0)
    return folder


def test_auto_refuses_an_int8_file_exported_from_another_model_pth(run, tmp_path):
    """The INT8 file records the SHA-256 of the model.pth it was exported from. When model.pth is
    replaced by another training's weights whose fields (classes, size, config, metadata) happen
    to be the same, the digest no longer matches and auto compared the fields instead: they
    matched, and auto ran the old weights' INT8 graph for the new model.pth. A recorded digest
    that differs is proof the file is another model.pth's export."""
    pytest.importorskip("onnxruntime")
    earlier = three_class_model(tmp_path / "earlier.pth", seed=1)  # the weights exported back then
    exported_from(earlier, run / "model.int8.onnx")
    choice = choose_runtime(run, "auto", "cpu")
    assert (choice.kind, choice.path) == ("torch", run / "model.pth")
    assert choice.reason == ("model.pth; model.int8.onnx is not its export (exported from another "
                             "model.pth: the SHA-256 it records differs)")  # fmt: skip
    exported_from(run / "model.pth", run / "model.int8.onnx")  # exported again: its own export
    assert choose_runtime(run, "auto", "cpu").kind == "int8"


def predict(model: Path, tmp_path: Path, *options: str):
    source = thirds(tmp_path / "in")
    arguments = ["--out", str(tmp_path / "out"), "--num-workers", "0", *options]
    return CliRunner().invoke(main, ["predict", "--model", str(model), str(source), *arguments])


@pytest.mark.parametrize(
    ("description", "reason"),
    [({"int8": {**PASSED, "validation_miou_int8": 0.5}}, "model.int8.onnx's check lost 0.300 mIoU on 8 "
                                                          "validation images, more than 0.010"),
     ({"int8": None}, "model.int8.onnx records no accuracy check"),
     ({"classes": ["sky", "road", "car"]}, "model.int8.onnx is not model.pth's export (different classes)"),
     ({"source": "another"}, "model.int8.onnx is not model.pth's export (exported from another model.pth")],
    ids=["failed check", "no check", "another model's", "another model.pth's"],
)  # fmt: skip
def test_runtime_int8_on_a_run_folder_refuses_an_unproven_file(run, tmp_path, description, reason):
    """`--runtime int8` on a run folder ran its model.int8.onnx whatever it was: a failed check, none
    at all, or another model's export (other classes in predictions.csv), said only as
    "--runtime int8: model.int8.onnx". It is the run's INT8 export that was asked for: an
    unproven file is a usage error naming the file and the reason (the file given as --model
    still runs as it is); a proven one runs."""
    pytest.importorskip("onnxruntime")
    int8_file = run / "model.int8.onnx"
    if description.pop("source", None):
        exported_from(three_class_model(tmp_path / "earlier.pth", seed=1), int8_file)
    else:
        values = {**EXPORT_DESCRIPTION, "precision": "int8", "int8": PASSED, **description}
        identity_onnx(int8_file, **{key: value for key, value in values.items() if value is not None})
    result = predict(run, tmp_path, "--runtime", "int8")
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: --runtime int8: {int8_file}: {reason}")
    assert f"--model {int8_file}" in errors[0]  # how to run it anyway
    assert "Traceback" not in result.output and not (tmp_path / "out" / "a.png").exists()
    given = CliRunner().invoke(main, ["predict", "--model", str(int8_file), str(tmp_path / "in"), "--out",
                                      str(tmp_path / "given"), "--num-workers", "0"])  # fmt: skip
    assert given.exit_code == 0, given.output


def test_runtime_int8_on_a_run_folder_runs_a_proven_file(run, tmp_path):
    pytest.importorskip("onnxruntime")
    exported_from(run / "model.pth", run / "model.int8.onnx")
    result = predict(run, tmp_path, "--runtime", "int8")
    assert result.exit_code == 0, result.output
    clause = "model.int8.onnx: its check lost 0.004 mIoU on 8 validation images"
    line = f"runtime: onnxruntime int8 (--runtime int8: {clause})"
    assert line in result.output.splitlines()


def test_runtime_int8_on_a_run_folder_still_refuses_torchs_precision(run, tmp_path):
    """The proof opens the INT8 file; predict must not skip open_model's own refusal of
    `--precision bf16` (torch's autocast) for a graph that runs in its own precision."""
    pytest.importorskip("onnxruntime")
    exported_from(run / "model.pth", run / "model.int8.onnx")
    result = predict(run, tmp_path, "--runtime", "int8", "--precision", "bf16")
    assert result.exit_code == 2, result.output
    assert "Error: --precision bf16: an ONNX model runs in its own precision" in result.output


def tiled_onnx(path: Path, classes: list[str]) -> Path:
    """A graph whose class maps are its input tiled once per batch item (`Tile` by a count read
    from the input's shape at run time), so the output's class dimension is unknown until it runs:
    one image gives 3 maps, whatever `classes` its description names."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Shape", ["images"], ["batch"], start=0, end=1),
             helper.make_node("Concat", ["one", "batch", "one", "one"], ["repeats"], axis=0),
             helper.make_node("Tile", ["images", "repeats"], ["logits"])]  # fmt: skip
    one = numpy_helper.from_array(np.array([1], np.int64), "one")
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 3, "h", "w"])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", "c", "h", "w"])
    model = helper.make_model(helper.make_graph(nodes, "g", [images], [logits], [one]),
                              opset_imports=[helper.make_opsetid("", 18)])  # fmt: skip
    model.ir_version = 8
    colours = [[index, index, index] for index in range(len(classes))]
    config = {**EXPORT_DESCRIPTION["model_config"], "num_classes": len(classes)}
    description = {**EXPORT_DESCRIPTION, "precision": "fp32", "classes": classes, "colors": colours,
                   "model_config": config}  # fmt: skip
    helper.set_model_props(model, {"fastseg": json.dumps(description)})
    onnx.save(model, str(path))
    return path


def test_a_graph_giving_other_maps_than_its_classes_at_run_time_is_one_line(tmp_path):
    """`check_graph` compares the output's class dimension with the metadata's classes only where
    the graph fixes it. A graph whose count is known only when it runs (here 3 maps for 2 named
    classes) wrote masks holding class 2 of a 2-class model and a predictions.csv whose fractions
    summed to 0.667, exit 0. The logits' maps are now counted as they come: one line naming the
    file, nothing written."""
    pytest.importorskip("onnxruntime")
    model = tiled_onnx(tmp_path / "tiled.onnx", ["a", "b"])
    result = predict(model, tmp_path, "--quiet")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert lines == [f"Error: {model}: the graph gave 3 maps a pixel, but its metadata names 2 classes; "
                     "export the model again with `fastseg export`"]  # fmt: skip
    assert not (tmp_path / "out" / "a.png").exists()
    three = predict(tiled_onnx(tmp_path / "three.onnx", ["a", "b", "c"]), tmp_path, "--quiet")
    assert three.exit_code == 0, three.output  # as many maps as classes: it runs


def test_export_int8_without_onnxruntime_says_so_before_tracing(tmp_path, voc_root, monkeypatch):
    """`export --int8` on a machine without onnxruntime (onnx and onnxscript installed) traced the
    whole network to ONNX first (12 s for the 32² test model, minutes for a real one) and only then
    said that INT8 needs onnxruntime's quantisation tools. The exporter's own rule is that a
    wrong setup is told before the work: now it is, and nothing is written."""
    pytest.importorskip("onnx")
    import sys

    from model_files import save_seeded_voc_model, write_run_files

    from fastseg.export import exporter

    folder = tmp_path / "run"
    folder.mkdir()
    save_seeded_voc_model(folder / "model.pth")
    write_run_files(folder, voc_root)

    def traced(*args, **kwargs):
        raise AssertionError("the network was traced before the missing package was said")

    monkeypatch.setattr(exporter, "export_graph", traced)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    result = CliRunner().invoke(main, ["export", "--model", str(folder), "--int8"])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --int8 needs onnxruntime's quantisation tools: ")
    assert sorted(path.name for path in folder.iterdir()) == ["config.json", "model.pth", "split.json"]


def test_runtime_onnx_on_a_run_folder_refuses_another_model_pths_export(run, tmp_path):
    """`fastseg export RUN` then a new model.pth in the run (trained again, same classes and size):
    `--runtime onnx` ran the stale model.onnx of the old weights, said as "--runtime onnx:
    model.onnx". It is now held to the same test as the INT8 file's (without a check, which fp32
    has none of): another model.pth's export is a usage error naming the file and the reason; the
    run's own export runs, and an INT8 file named model.onnx is still refused."""
    pytest.importorskip("onnxruntime")
    onnx_file = run / "model.onnx"
    values = {**EXPORT_DESCRIPTION, "precision": "fp32"}
    earlier = three_class_model(tmp_path / "earlier.pth", seed=1)
    recorded = {SOURCE_DIGEST: file_sha256(earlier), DESCRIPTION_DIGEST: description_sha256(values)}
    identity_onnx(onnx_file, **values, **recorded)
    result = predict(run, tmp_path, "--runtime", "onnx")
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(
        f"Error: --runtime onnx: {onnx_file}: model.onnx is not model.pth's export (exported from another "
        "model.pth: the SHA-256 it records differs)"
    )
    assert not (tmp_path / "out" / "a.png").exists()
    recorded[SOURCE_DIGEST] = file_sha256(run / "model.pth")  # exported again from this model.pth
    identity_onnx(onnx_file, **values, **recorded)
    result = predict(run, tmp_path, "--runtime", "onnx")
    assert result.exit_code == 0, result.output
    assert "runtime: onnxruntime fp32 (--runtime onnx: model.onnx)" in result.output.splitlines()
    identity_onnx(onnx_file, **{**values, "precision": "int8"}, **recorded)
    result = predict(run, tmp_path, "--runtime", "onnx", "--force")
    assert result.exit_code == 2 and "is an INT8 ONNX export" in result.output, result.output


@pytest.mark.parametrize("where", ["name", "folder", "loop"])
def test_an_out_path_the_system_refuses_is_one_line(run, tmp_path, where, monkeypatch):
    """`--out` with a name past the file system's 255 bytes, or inside such a folder, ended in a
    traceback (Python's `is_dir` raises ENAMETOOLONG where it returns False for a missing path);
    a folder that is a symbolic link loop was "no such folder". One line each, naming the path
    and why, before any work."""
    from fastseg.export import exporter

    def traced(*args, **kwargs):
        raise AssertionError("the network was traced for an --out that cannot be written")

    monkeypatch.setattr(exporter, "export_graph", traced)
    long = "b" * 260
    if where == "loop":
        (tmp_path / "one").symlink_to(tmp_path / "two")
        (tmp_path / "two").symlink_to(tmp_path / "one")
    out = {"name": tmp_path / f"{long}.onnx", "folder": tmp_path / long / "model.onnx",
           "loop": tmp_path / "one" / "model.onnx"}[where]  # fmt: skip
    result = CliRunner().invoke(main, ["export", "--model", str(run), "--out", str(out)])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    why = "a symbolic link loop" if where == "loop" else "File name too long"
    assert len(lines) == 1 and lines[0].startswith("Error: ") and why in lines[0], lines
    assert (long if where != "loop" else "one") in lines[0]
