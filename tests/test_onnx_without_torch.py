"""`predict` on an ONNX file runs without importing torch (issue #24): its inputs are numpy
arrays, its scores are upsampled and argmaxed by onnxruntime (`fastseg.inference.onnx_upsampling`),
the device is known to be the CPU without asking torch, and `--runtime auto` knows a run's INT8
file is its model's export by the digest the export recorded."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from model_files import EXPORT_DESCRIPTION as DESCRIPTION
from model_files import fastseg_without_torch, identity_onnx, thirds
from PIL import Image

from fastseg.classes import Classes
from fastseg.imaging.normalise import normalised_array
from fastseg.inference import segmented
from fastseg.inference.onnx_upsampling import array_labels, graph_bytes, upsampled_array_bands
from fastseg.inference.runtime_choice import choose_runtime
from fastseg.inference.whole_image import upsampled_bands
from fastseg.launch import device as device_module
from fastseg.model.checkpoint import save_model
from fastseg.model.config import ModelConfig
from fastseg.model.exported import DESCRIPTION_DIGEST, SOURCE_DIGEST, description_sha256, file_sha256
from fastseg.model.network import SegmentationModel

PASSED = {"validation_miou_fp32": 0.8, "validation_miou_int8": 0.796, "validation_images": 8,
          "calibration_images": 4, "forced": False}  # fmt: skip


@pytest.fixture
def run_folder(tmp_path):
    """model.pth and a model.int8.onnx (the identity graph) whose check passed and which records
    model.pth's digest, as `fastseg export --int8` writes it."""
    torch.manual_seed(0)
    folder = tmp_path / "run"
    folder.mkdir()
    config = ModelConfig(num_classes=3)
    classes = Classes.create(DESCRIPTION["classes"], [tuple(c) for c in DESCRIPTION["colors"]], 255)
    model = save_model(folder / "model.pth", SegmentationModel(config).eval(), config, 32, classes=classes)
    recorded = {SOURCE_DIGEST: file_sha256(model), DESCRIPTION_DIGEST: description_sha256(DESCRIPTION)}
    identity_onnx(folder / "model.int8.onnx", precision="int8", int8=PASSED, **recorded)
    return folder


def test_the_upsampling_graph_is_a_valid_resize_argmax_and_cast():
    onnx = pytest.importorskip("onnx")
    model = onnx.load_from_string(graph_bytes())
    onnx.checker.check_model(model, full_check=True)
    nodes = [(node.op_type, list(node.input), list(node.output)) for node in model.graph.node]
    assert nodes == [("Resize", ["scores", "", "", "sizes"], ["upsampled"]),
                     ("ArgMax", ["upsampled"], ["indices"]), ("Cast", ["indices"], ["labels"])]  # fmt: skip
    value = onnx.helper.get_attribute_value
    attributes = [{a.name: value(a) for a in node.attribute} for node in model.graph.node]
    assert attributes == [{"mode": b"linear", "coordinate_transformation_mode": b"half_pixel"},
                          {"axis": 1, "keepdims": 0}, {"to": onnx.TensorProto.UINT8}]  # fmt: skip
    assert [value.name for value in model.graph.output] == ["upsampled", "labels"]


def torch_scores(logits, height, width, resize):
    bands = upsampled_bands(torch.from_numpy(logits), height, width, resize)
    return torch.cat([band for _, band in bands], 1)


@pytest.mark.parametrize(
    ("classes", "height", "width", "resize"),
    [(21, 45, 60, "letterbox"), (21, 60, 45, "squish"), (3, 1, 1, "squish"), (3, 1, 77, "letterbox"),
     (4, 77, 1, "letterbox"), (5, 32, 32, "squish"), (2, 300, 17, "squish")],
)  # fmt: skip
def test_onnx_scores_and_labels_are_torchs_within_rounding(classes, height, width, resize):
    """The scores within 1e-3 of torch's on logits of spread 3 (onnxruntime rounds each source
    coordinate another way: up to 4e-4 seen); the labels are the scores' argmax, and torch's
    wherever its two best classes are more than 1e-2 apart."""
    pytest.importorskip("onnxruntime")
    logits = np.random.default_rng(height * width).standard_normal((classes, 32, 32), dtype=np.float32) * 3
    expected = torch_scores(logits, height, width, resize)
    scores = np.concatenate([band for _, band in upsampled_array_bands(logits, height, width, resize)], 1)
    torch.testing.assert_close(torch.from_numpy(scores), expected, rtol=0, atol=1e-3)
    labels = array_labels(logits, height, width, resize)
    assert labels.dtype == np.uint8 and labels.shape == (height, width)
    np.testing.assert_array_equal(labels, scores.argmax(0))
    top2 = expected.topk(2, dim=0).values if classes > 1 else None
    clear = (top2[0] - top2[1] > 1e-2).numpy()
    np.testing.assert_array_equal(labels[clear], expected.argmax(0).numpy()[clear])


def test_a_large_image_is_upsampled_band_by_band_to_the_same_scores(monkeypatch):
    pytest.importorskip("onnxruntime")
    logits = np.random.default_rng(0).standard_normal((5, 32, 32), dtype=np.float32) * 3
    whole_scores = np.concatenate([band for _, band in upsampled_array_bands(logits, 90, 70, "letterbox")], 1)
    whole_labels = array_labels(logits, 90, 70, "letterbox")
    monkeypatch.setattr(segmented, "BAND_VALUES", 5 * 70 * 8)  # 8 rows a band
    bands = list(upsampled_array_bands(logits, 90, 70, "letterbox"))
    assert len(bands) == 12 and [rows.start for rows, _ in bands] == list(range(0, 90, 8))
    banded = np.concatenate([band for _, band in bands], 1)
    np.testing.assert_allclose(banded, whole_scores, rtol=0, atol=1e-3)
    torch.testing.assert_close(torch.from_numpy(banded), torch_scores(logits, 90, 70, "letterbox"),
                               rtol=0, atol=1e-3)  # fmt: skip
    labels = array_labels(logits, 90, 70, "letterbox")
    np.testing.assert_array_equal(labels, banded.argmax(0))
    assert (labels == whole_labels).mean() > 0.999


def test_normalised_arrays_are_torchs_values_to_the_bit():
    """The numpy normalisation gives the tensors the torch arithmetic gave (fastai's), bit for bit."""
    pixels = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    pixels[0, :3] = [[0, 0, 0], [255, 255, 255], [1, 128, 254]]
    for mean, std in (((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), ((0.1, -3.3, 9.9), (1e-4, 0.77, 99.0))):
        tensor = torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255.0)
        expected = (tensor - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
        array = normalised_array(Image.fromarray(pixels), mean, std)
        assert array.dtype == np.float32 and array.shape == (3, 37, 53)
        assert torch.equal(torch.from_numpy(array), expected)


@pytest.mark.parametrize("model", ["run folder", "file"])
@pytest.mark.parametrize("tta", [False, True])
def test_predict_on_onnx_never_imports_torch(tmp_path, run_folder, model, tta):
    """The whole command, in a process where `import torch` fails: the INT8 file chosen by `auto`
    (its digest matched) or given, the masks right, the runtime logged."""
    pytest.importorskip("onnxruntime")
    given = run_folder if model == "run folder" else run_folder / "model.int8.onnx"
    options = ["--tta"] if tta else []
    images = thirds(tmp_path / "in")
    result = fastseg_without_torch(["predict", "--model", str(given), str(images), "--out",
                                    str(tmp_path / "out"), "--device", "cpu", *options])  # fmt: skip
    assert result.returncode == 0, result.stderr
    if model == "run folder":
        assert "runtime: onnxruntime int8 (model.int8.onnx: its check lost 0.004 mIoU" in result.stdout
    with (tmp_path / "out" / "predictions.csv").open() as file:
        assert [row["runtime"] for row in csv.DictReader(file)] == ["onnxruntime int8"]
    with Image.open(tmp_path / "out" / "a.png") as mask:
        labels = np.array(mask)
    assert (labels[:, 2:8] == 0).all() and (labels[:, 12:18] == 1).all() and (labels[:, 22:28] == 2).all()


def test_auto_knows_its_int8_file_by_the_recorded_digest_without_torch_load(run_folder, monkeypatch):
    """A matching digest decides without reading model.pth's fields; once model.pth changes, the
    fields are compared as before (here its metadata differs: another training)."""
    pytest.importorskip("onnxruntime")

    def refused(*args, **kwargs):
        raise AssertionError("model.pth read with torch.load")

    with monkeypatch.context() as patch:
        patch.setattr(torch, "load", refused)
        choice = choose_runtime(run_folder, "auto", "cpu")
    assert (choice.kind, choice.path.name) == ("int8", "model.int8.onnx")
    config = ModelConfig(num_classes=3)
    classes = Classes.create(DESCRIPTION["classes"], [tuple(c) for c in DESCRIPTION["colors"]], 255)
    save_model(run_folder / "model.pth", SegmentationModel(config).eval(), config, 32, {"run": "another"},
               classes=classes)  # fmt: skip
    choice = choose_runtime(run_folder, "auto", "cpu")
    assert (choice.kind, choice.reason) == ("torch", "model.pth; model.int8.onnx is not its export "
                                                     "(different metadata)")  # fmt: skip


@pytest.mark.parametrize(
    ("name", "platform", "files", "expected"),
    [("cpu", "darwin", ["/dev/nvidiactl"], True), ("auto", "linux", [], True),
     ("auto", "linux", ["/dev/nvidiactl"], False), ("auto", "linux", ["/dev/dxg"], False),
     ("auto", "linux", ["/dev/kfd"], False), ("auto", "darwin", [], False), ("cuda", "linux", [], False),
     ("mps", "linux", [], False)],
)  # fmt: skip
def test_the_cpu_is_known_without_torch_only_where_no_gpu_can_be(monkeypatch, name, platform, files,
                                                                  expected):  # fmt: skip
    monkeypatch.setattr(device_module.sys, "platform", platform)
    monkeypatch.setattr(device_module.os.path, "exists", lambda path: path in files)
    assert device_module.surely_cpu(name) is expected


def test_a_plain_process_on_the_cpu_launches_without_torch_and_still_gives_torchs_device(monkeypatch):
    from fastseg.launch.processes import launched

    monkeypatch.setattr(device_module, "surely_cpu", lambda name="auto": True)
    monkeypatch.setattr("fastseg.launch.processes.surely_cpu", lambda name="auto": True)
    with launched("auto", torch_free=True) as launch:
        assert (launch.rank, launch.world, launch.device_name) == (0, 1, "cpu")
        assert launch.device == torch.device("cpu")


@pytest.mark.slow
def test_export_records_the_digest_of_the_model_it_read(tmp_path, run_folder):
    pytest.importorskip("onnx")
    from fastseg.export.exporter import export
    from fastseg.inference.runtime import open_onnx

    result = export(run_folder, out=tmp_path / "model.onnx")
    loaded, _ = open_onnx(result.path)
    assert loaded.export[SOURCE_DIGEST] == file_sha256(run_folder / "model.pth")
    assert loaded.export[DESCRIPTION_DIGEST] == description_sha256(loaded.export)
    edited = {**loaded.export, "classes": ["a", "b", "c"]}
    assert loaded.export[DESCRIPTION_DIGEST] != description_sha256(edited)


class Numbers:
    """A map-style dataset of `{"index", "image"}` items, slow and out of order on threads; item
    `fail` raises."""

    def __init__(self, count, fail=None):
        self.count, self.fail, self.made = count, fail, []

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        import time

        time.sleep(0.002 * ((7 * index) % 5))  # later items often finish first
        if index == self.fail:
            raise ValueError(f"item {index}")
        self.made.append(index)
        return {"index": index, "image": np.full((1, 2, 2), index, np.float32)}


def test_threaded_batches_are_the_plain_batches_in_order_and_stop_when_asked():
    from fastseg.inference.files import Batches, loader

    plain = [batch["index"] for batch in Batches(Numbers(23), 4)]
    threaded = loader(Numbers(23), 4, 3, threads=True)
    assert len(threaded) == 6
    batches = list(threaded)
    expected = [list(range(start, min(start + 4, 23))) for start in range(0, 23, 4)]
    assert [batch["index"] for batch in batches] == plain == expected
    assert all((batch["image"][:, 0, 0, 0] == batch["index"]).all() for batch in batches)
    with pytest.raises(ValueError, match="item 9"):
        list(loader(Numbers(23, fail=9), 4, 3, threads=True))
    dataset = Numbers(1000)
    first = next(iter(loader(dataset, 4, 3, threads=True)))  # the caller stops after one batch
    assert first["index"] == [0, 1, 2, 3] and len(dataset.made) <= 3 * 4  # at most two batches ahead
