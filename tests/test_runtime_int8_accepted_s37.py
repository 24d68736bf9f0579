"""`--runtime int8` on a run folder runs an INT8 export whose check failed but which the user wrote
anyway with `fastseg export --int8 --accept-int8-loss`, and says so; `auto` never does. The
stricter check of 029fd9e refused it with exit 2, though the flag's help promised the file records
that it was accepted (review finding)."""

from __future__ import annotations

import pytest
from test_hostile_export_s37 import PASSED, exported_from, predict, three_class_model

from fastseg.inference.runtime_choice import choose_runtime


@pytest.fixture
def run(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    three_class_model(folder / "model.pth", seed=0)
    return folder


LOST = {**PASSED, "validation_miou_int8": 0.5}  # 0.300 lost, more than the 0.010 allowed


def test_runtime_int8_runs_a_loss_accepted_at_export_and_says_so(run, tmp_path):
    pytest.importorskip("onnxruntime")
    exported_from(run / "model.pth", run / "model.int8.onnx", int8={**LOST, "forced": True})
    choice = choose_runtime(run, "int8", "cpu")
    assert choice.kind == "int8" and choice.path == run / "model.int8.onnx"
    assert choice.reason == ("--runtime int8: model.int8.onnx's check lost 0.300 mIoU on 8 validation "
                             "images, more than 0.010, accepted at export (--accept-int8-loss)")  # fmt: skip
    assert choose_runtime(run, "auto", "cpu").kind == "torch"  # auto: never an unproven file
    result = predict(run, tmp_path, "--runtime", "int8")
    assert result.exit_code == 0, result.output
    assert "accepted at export (--accept-int8-loss)" in result.output


def test_a_loss_not_accepted_or_another_models_stays_refused(run, tmp_path):
    pytest.importorskip("onnxruntime")
    exported_from(run / "model.pth", run / "model.int8.onnx", int8={**LOST, "forced": False})
    assert predict(run, tmp_path, "--runtime", "int8").exit_code == 2
    earlier = three_class_model(tmp_path / "earlier.pth", seed=1)
    exported_from(earlier, run / "model.int8.onnx", int8={**LOST, "forced": True})
    result = predict(run, tmp_path, "--runtime", "int8")
    assert result.exit_code == 2 and "is not model.pth's export" in result.output, result.output
