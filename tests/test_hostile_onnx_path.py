"""A stranger's pass over `predict` on an ONNX file without torch (issue #24, commit 11054e7):
each test here is a defect that pass found in the change, each failing before its fix."""

from __future__ import annotations

from pathlib import Path

import model_files
import numpy as np
import pytest
from click.testing import CliRunner
from model_files import EXPORT_DESCRIPTION, fastseg_without_torch
from PIL import Image

from cli.main import main
from fastseg.inference import onnx_upsampling

# What onnxruntime raised when its arena could not grow for the upsampling graph's Resize (seen
# with RLIMIT_AS set just above the process's size): an `onnxruntime...Fail`, not a RuntimeError
ONNXRUNTIME_ALLOCATION_FAILURE = (
    "[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Resize node. "
    "Name:'upsampled' Status Message: /onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:360 "
    "void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*) Failed to "
    "allocate memory for requested buffer of size 756000000"
)


def identity_onnx(path: Path, **description: object) -> Path:
    """`model_files.identity_onnx`, an fp32 export unless `description` says otherwise."""
    return model_files.identity_onnx(path, **{"precision": "fp32", **description})


def failing_session(error_type: type) -> object:
    """A stand-in for the upsampling graph's session factory whose session fails as onnxruntime's
    arena does on an image 57 pixels wide, and runs the real graph for any other."""
    real = onnx_upsampling._upsampling_session()

    class Session:
        def run(self, outputs, feed):
            if feed["sizes"][3] == 57:
                raise error_type(ONNXRUNTIME_ALLOCATION_FAILURE)
            return real.run(outputs, feed)

    return lambda: Session()


def noise(folder: Path, name: str, width: int, height: int) -> Path:
    folder.mkdir(exist_ok=True)
    pixels = np.random.default_rng(width * 1000 + height).integers(0, 256, (height, width, 3), np.uint8)
    Image.fromarray(pixels).save(folder / name)
    return folder / name


def test_an_allocation_failure_in_onnx_upsampling_fails_that_image_alone(tmp_path, monkeypatch):
    """On model.pth, torch's allocator failing while upsampling one image's scores makes that image
    a failed row ("out of memory at WxH", tests/test_predict.py) and the others are written. On an
    ONNX file the upsampling is onnxruntime's, whose failure is its own exception type with its own
    words: the same image must fail the same way, not end the run with a traceback."""
    pytest.importorskip("onnxruntime")
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail

    model = identity_onnx(tmp_path / "model.onnx")
    source = tmp_path / "in"
    noise(source, "ok.jpg", 31, 40)
    noise(source, "upsample.jpg", 57, 40)
    monkeypatch.setattr(onnx_upsampling, "_upsampling_session", failing_session(Fail))
    result = CliRunner().invoke(main, ["predict", "--model", str(model), str(source), "--out",
                                       str(tmp_path / "out"), "--quiet", "--num-workers", "0"])  # fmt: skip
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1, result.output
    assert f"{source / 'upsample.jpg'}: out of memory at 57x40" in result.output
    assert "1 segmented, 1 failed" in result.output
    assert (tmp_path / "out" / "ok.png").is_file() and not (tmp_path / "out" / "upsample.png").exists()


def test_predict_on_onnx_with_the_default_workers_never_imports_torch_on_8_cores(tmp_path):
    """The claim (README: 'without importing torch', start-up 0.4 s instead of 2.2 s) held only
    where `default_num_workers()` is 0, a 1-2 core machine: with more cores the default loader is
    torch's DataLoader. Here the process sees 8 cores and `import torch` fails."""
    pytest.importorskip("onnxruntime")
    model = identity_onnx(tmp_path / "model.onnx")
    noise(tmp_path / "in", "a.png", 30, 20)
    arguments = ["predict", "--model", str(model), str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                 "--device", "cpu", "--quiet"]  # fmt: skip
    result = fastseg_without_torch(arguments, "import os; os.sched_getaffinity = lambda pid: set(range(8))")
    assert result.returncode == 0, result.stderr[-2000:]
    with Image.open(tmp_path / "out" / "a.png") as mask:
        assert mask.size == (30, 20)


def test_nan_scores_label_a_pixel_the_same_on_every_path():
    """A graph that gives NaN scores (a broken or overflowing export) labelled those pixels with the
    NaN class before #24 (torch's `max`), and still does on the banded path (numpy's `argmax`) and
    in `report` (torch's `max` of the bands): the one-call path of an image that fits in one band
    (onnxruntime's ArgMax) labels them with the best other class, so the same image's mask depends
    on its size and disagrees with its report."""
    import torch

    from fastseg.inference import segmented
    from fastseg.inference.segmented import labels_of
    from fastseg.inference.whole_image import upsampled_bands

    pytest.importorskip("onnxruntime")
    logits = np.zeros((3, 8, 8), np.float32)
    logits[2] = 1.0
    logits[1, 2:6, 2:6] = np.nan
    torchs = labels_of(upsampled_bands(torch.from_numpy(logits), 8, 8, "squish"), 8, 8)
    assert (torchs[2:5, 2:5] == 1).all() and torchs[0, 0] == 2  # the NaN class where NaN reaches
    scores = np.concatenate(
        [band for _, band in onnx_upsampling.upsampled_array_bands(logits, 8, 8, "squish")], 1
    )
    assert np.isnan(scores[1, 3, 3]) and torch.from_numpy(scores).max(0).indices[3, 3] == 1  # report's label
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(segmented, "BAND_VALUES", 3 * 8 * 2)  # two rows a band: numpy's argmax
        assert (onnx_upsampling.array_labels(logits, 8, 8, "squish")[2:5, 2:5] == 1).all()
    np.testing.assert_array_equal(onnx_upsampling.array_labels(logits, 8, 8, "squish"), torchs)


def test_serve_answers_507_when_onnx_upsampling_runs_out_of_memory(tmp_path, monkeypatch):
    """tests/test_serve.py: an allocator failure while making one request's labels is that request's
    507 "out of memory at WxH", and the next request is served. With an ONNX model the labels are
    onnxruntime's (this change), and its allocation failure must be the same 507."""
    pytest.importorskip("onnxruntime")
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail
    from test_serve import check_error, served_client

    model = identity_onnx(tmp_path / "model.onnx")
    picture = noise(tmp_path, "odd.png", 57, 40).read_bytes()
    with served_client(model) as client:
        monkeypatch.setattr(onnx_upsampling, "_upsampling_session", failing_session(Fail))
        response = client.post("/v1/segment", content=picture, headers={"content-type": "image/png"})
        monkeypatch.undo()
        check_error(response, 507, "out of memory at 57x40")
        assert (
            client.post("/v1/segment", content=picture, headers={"content-type": "image/png"}).status_code
            == 200
        )


@pytest.mark.slow
def test_export_records_the_digest_of_the_bytes_it_exported(tmp_path, monkeypatch):
    """`predict --runtime auto` takes a matching `source_sha256` as proof that the INT8 file is
    model.pth's export and compares nothing else. The export reads model.pth twice (torch.load,
    then the hash): a model.pth that `fastseg train` (or a copy) replaces between the two is recorded
    as the source of a graph made from the file before it, and auto then runs the old weights for
    the new model.pth, with no field compared (the check before #24 saw the new metadata)."""
    pytest.importorskip("onnx")
    import torch

    from fastseg.classes import Classes
    from fastseg.export import exporter
    from fastseg.inference.runtime import open_onnx
    from fastseg.model.checkpoint import save_model
    from fastseg.model.config import ModelConfig
    from fastseg.model.exported import SOURCE_DIGEST, file_sha256
    from fastseg.model.network import SegmentationModel

    config = ModelConfig(num_classes=3)
    description = EXPORT_DESCRIPTION
    classes = Classes.create(description["classes"], [tuple(c) for c in description["colors"]], 255)
    torch.manual_seed(0)
    model_pth = save_model(tmp_path / "model.pth", SegmentationModel(config).eval(), config, 32,
                           {"run": "first"}, classes=classes)  # fmt: skip
    exported_source = file_sha256(model_pth)
    original_load = exporter.load_model

    def load_then_replaced(path, *args, **kwargs):
        loaded = original_load(path, *args, **kwargs)
        torch.manual_seed(1)  # another training finishes: model.pth replaced (atomically)
        save_model(tmp_path / "model.pth", SegmentationModel(config).eval(), config, 32, {"run": "second"},
                   classes=classes)  # fmt: skip
        return loaded

    monkeypatch.setattr(exporter, "load_model", load_then_replaced)
    result = exporter.export(tmp_path, out=tmp_path / "model.onnx")
    loaded, _ = open_onnx(result.path)
    assert loaded.metadata == {"run": "first"}  # the graph and description are the first model's
    assert file_sha256(model_pth) != exported_source
    assert loaded.export[SOURCE_DIGEST] == exported_source


def test_the_source_digest_is_computed_without_python_3_11s_file_digest(tmp_path, monkeypatch):
    """setup.cfg `python_requires = >=3.10` (README: 'Python ≥ 3.10', ruff's target py310), but
    `file_sha256` calls `hashlib.file_digest`, new in 3.11: on 3.10 `fastseg export` fails on every
    model (it records the digest) and `predict --runtime auto` on a run folder whose INT8 file
    records one fails with AttributeError (not the OSError it catches). Here 3.10's hashlib is
    stood in for by removing the function."""
    import hashlib

    from fastseg.model.exported import file_sha256

    data = np.random.default_rng(0).bytes(3 * 2**20 + 7)  # more than one read's worth, odd length
    (tmp_path / "model.pth").write_bytes(data)
    monkeypatch.delattr(hashlib, "file_digest")
    assert file_sha256(tmp_path / "model.pth") == hashlib.sha256(data).hexdigest()


def test_train_and_torch_predict_use_a_gpu_torch_sees_whatever_its_device_files(monkeypatch):
    """`surely_cpu` guesses 'no GPU' from a list of device files, for `predict` on an ONNX file,
    where a missed GPU costs nothing (ONNX runs on the CPU). But `launched()` is also train's,
    lr_find's and model.pth predict's entry: a GPU torch can use whose nodes are elsewhere (a
    Jetson's integrated GPU is /dev/nvhost-* and /dev/nvmap, as far as this pass knows) made
    `--device auto` the CPU for them too, silently, where torch's own answer was CUDA before #24."""
    import torch

    from fastseg.launch import device as device_module
    from fastseg.launch.processes import launched

    monkeypatch.setattr(device_module.sys, "platform", "linux")
    monkeypatch.setattr(device_module.os.path, "exists", lambda path: False)  # none of GPU_DEVICE_FILES
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # ...yet torch has a GPU
    with launched("auto") as launch:
        assert launch.device_name.startswith("cuda")


def test_predict_on_an_onnx_file_on_a_gpu_machine_never_imports_torch(tmp_path):
    """An .onnx file runs on onnxruntime on the CPU whatever `--device auto` finds (`open_model`), so
    its device needs no asking; yet `launched()` imports torch (1.2-1.7 s, +600 MiB) to resolve it
    on any machine with an NVIDIA, WSL2 or ROCm device file. Here one of `GPU_DEVICE_FILES` is made
    to exist and `import torch` fails."""
    pytest.importorskip("onnxruntime")
    model = identity_onnx(tmp_path / "model.onnx")
    noise(tmp_path / "in", "a.png", 30, 20)
    arguments = ["predict", "--model", str(model), str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                 "--quiet", "--num-workers", "0"]  # fmt: skip
    gpu_machine = f"from fastseg.launch import device; device.GPU_DEVICE_FILES = ({str(model)!r},)"
    result = fastseg_without_torch(arguments, gpu_machine)  # the model file stands for a GPU's
    assert result.returncode == 0, result.stderr[-2000:]
    with Image.open(tmp_path / "out" / "a.png") as mask:
        assert mask.size == (30, 20)


def test_auto_refuses_an_int8_file_whose_digest_matches_but_whose_classes_do_not(tmp_path):
    """runtime_choice's promise: `auto` takes the INT8 file only when its description is the run's
    model.pth's ('classes, size, config, training metadata'), and before #24 a file naming other
    classes fell back to model.pth ('different classes'). Since #24 the recorded digest alone
    decides, so an INT8 file whose description was edited after export (its graph still the run's,
    its classes renamed) is run, and predictions.csv and the palette name classes model.pth does
    not have."""
    pytest.importorskip("onnx")
    import torch

    from fastseg.classes import Classes
    from fastseg.inference.runtime_choice import choose_runtime
    from fastseg.model.checkpoint import save_model
    from fastseg.model.config import ModelConfig
    from fastseg.model.exported import SOURCE_DIGEST, file_sha256
    from fastseg.model.network import SegmentationModel

    config, description = ModelConfig(num_classes=3), EXPORT_DESCRIPTION
    classes = Classes.create(description["classes"], [tuple(c) for c in description["colors"]], 255)
    torch.manual_seed(0)
    model_pth = save_model(
        tmp_path / "model.pth", SegmentationModel(config).eval(), config, 32, classes=classes
    )
    passed = {"validation_miou_fp32": 0.8, "validation_miou_int8": 0.796, "validation_images": 8}
    identity_onnx(tmp_path / "model.int8.onnx", precision="int8", int8=passed,
                  **{SOURCE_DIGEST: file_sha256(model_pth)}, classes=["sky", "road", "car"])  # fmt: skip
    choice = choose_runtime(tmp_path, "auto", "cpu")
    assert (choice.kind, choice.reason) == ("torch", "model.pth; model.int8.onnx is not its export "
                                                     "(different classes)")  # fmt: skip
