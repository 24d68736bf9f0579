"""A review of commit 6758146 (the fixes of tests/test_hostile_onnx_path.py's defects in
torch-free ONNX predict): each test here is a defect found in or beside those fixes, each
failing before its fix."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
from PIL import Image

from fastseg.inference.files import Batches


class SlowItems:
    """A map-style dataset whose items take `seconds` each (as decoding a photo does, off the GIL)
    and which records the most items made at once."""

    def __init__(self, count: int, seconds: float) -> None:
        self.count, self.seconds = count, seconds
        self.running = self.most_at_once = 0
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
        return {"index": index, "image": np.zeros((3, 2, 2), np.float32), "error": ""}


def test_threaded_batches_keep_every_thread_busy_at_batch_size_one():
    """`--num-workers 4 --batch-size 1` on an ONNX model: torch's DataLoader it replaces kept its 4
    workers decoding (prefetch_factor 2 each); `Batches(threads=4)` submits only as many items as
    two batches hold, so with batches of one image only 2 of its 4 threads ever decode, and a
    machine's cores sit idle (same for batch size 2 with more than 4 workers, 8 with more than 16)."""
    dataset = SlowItems(8, 0.3)
    batches = [batch["index"] for batch in Batches(dataset, 1, threads=4)]
    assert batches == [[index] for index in range(8)]  # in order, one per batch (holds now)
    assert dataset.most_at_once == 4


def test_a_run_folder_with_runtime_torch_asks_torch_for_its_device(tmp_path, monkeypatch):
    """6758146 made `launched()` take `surely_cpu`'s answer only for an ONNX file or a run folder,
    so that 'a model.pth given by name asks torch, as before'. A run folder with `--runtime torch`
    is model.pth too (torch is imported to run it anyway, so the guess saves nothing), yet a GPU
    that torch sees and the device-file list misses (as the hostile test's Jetson case) makes it
    run on the CPU where before #24 it ran on the GPU. The device the launch hands to
    `choose_runtime` is recorded; the run stops there."""
    import torch

    from fastseg.inference import predict as predict_module
    from fastseg.launch import device as device_module

    class Chosen(Exception):
        """Stops predict once the launch's device is known."""

    def recording(model, runtime, device_name, *rest):
        raise Chosen(device_name)

    monkeypatch.setattr(device_module.sys, "platform", "linux")
    monkeypatch.setattr(device_module, "GPU_DEVICE_FILES", ())  # the list misses this GPU...
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # ...which torch sees
    monkeypatch.setattr(predict_module, "choose_runtime", recording)
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.pth").write_bytes(b"not read: choose_runtime is replaced")
    (tmp_path / "in").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "in" / "a.png")
    with pytest.raises(Chosen) as chosen:
        predict_module.predict(run, [tmp_path / "in"], tmp_path / "out", runtime="torch", device="auto")
    assert str(chosen.value).startswith("cuda")


def _tensor_score() -> object:
    import torch

    return torch.tensor(0.5)


ODD_METADATA = {"nan": {"valid_loss": math.nan}, "inf": {"best": math.inf}, "huge-int": {"seed": 10**400},
                "tensor": {"valid_miou": _tensor_score}}  # fmt: skip


@pytest.mark.parametrize("metadata", list(ODD_METADATA.values()), ids=list(ODD_METADATA))
def test_an_export_of_a_model_with_odd_metadata_is_refused_in_one_line_or_read_back(tmp_path, metadata):
    """`checked_fields` lets model.pth's metadata be any dict a tensors-only load gives, so a
    model.pth made by a script or another tool may hold NaN or inf (a diverged loss), a huge
    integer or a tensor there. `description_json` writes it with `json.dumps`: NaN and Infinity
    and the 401 digits are written, and `described_model`, the strict JSON reader of every
    exported file, refuses them, so `fastseg export` succeeds and every `predict` of its file
    fails ('NaN is not a number JSON allows'); a tensor is a TypeError, a traceback from export.
    Either export says so in one line (a `FastsegError` naming the metadata), or its file must
    be readable. 6758146's `description_sha256` did not change this (json.dumps allows NaN; no
    new crash)."""
    import torch

    from fastseg.classes import Classes
    from fastseg.errors import FastsegError
    from fastseg.model.checkpoint import load_model, save_model
    from fastseg.model.config import ModelConfig
    from fastseg.model.exported import described_model, description_json
    from fastseg.model.network import SegmentationModel

    torch.manual_seed(0)
    config = ModelConfig(num_classes=3)
    classes = Classes.create(["a", "b", "c"], [(0, 0, 0), (1, 1, 1), (2, 2, 2)], 255)
    metadata = {key: value() if callable(value) else value for key, value in metadata.items()}
    path = save_model(tmp_path / "model.pth", SegmentationModel(config).eval(), config, 32, metadata,
                      classes=classes)  # fmt: skip
    loaded = load_model(path)
    try:
        text = description_json(loaded, precision="fp32")
    except FastsegError as error:  # refused at export: one line (a typed error), and no file
        assert "metadata" in str(error)
        return
    read = described_model(tmp_path / "model.onnx", text)
    assert read.classes == ["a", "b", "c"]
    assert set(read.metadata) == set(metadata)


def test_fastseg_export_of_metadata_it_cannot_carry_is_one_line_naming_the_file(tmp_path):
    pytest.importorskip("onnx")
    import torch
    from click.testing import CliRunner

    from cli.main import main
    from fastseg.classes import Classes
    from fastseg.model.checkpoint import save_model
    from fastseg.model.config import ModelConfig
    from fastseg.model.network import SegmentationModel

    torch.manual_seed(0)
    config = ModelConfig(num_classes=3)
    classes = Classes.create(["a", "b", "c"], [(0, 0, 0), (1, 1, 1), (2, 2, 2)], 255)
    path = save_model(tmp_path / "model.pth", SegmentationModel(config).eval(), config, 32,
                      {"valid_loss": math.nan}, classes=classes)  # fmt: skip
    result = CliRunner().invoke(main, ["export", "--model", str(path)])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {path}: its metadata holds a value"), lines
    assert not (tmp_path / "model.onnx").exists()
