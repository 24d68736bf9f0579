"""Models the tests of export, serve and `--runtime` make the same way (only tests use them, so
they live with them: `from model_files import seeded_voc_model`).

- a seeded, untrained VOC network whose BatchNorm statistics are randomised
  (`randomise_batchnorm_statistics`, which other tests apply to their own networks), so its masks
  hold several classes and BatchNorm folding has something to get wrong;
- the files beside model.pth that `fastseg export` reads in a run folder: split.json over the
  tiny generated VOC set (its calibration and validation images), config.json naming the set;
- the description `fastseg export` writes into a 3-class, 32² model's ONNX file, for graphs made
  by hand (an identity graph, a damaged one) that must pass for an export; `identity_onnx`
  writes the identity graph (its logits are its input: a red, green, blue picture is labelled
  0, 1, 2).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastseg.data.voc import VOC, find_voc
from fastseg.model.checkpoint import save_model
from fastseg.model.config import ModelConfig
from fastseg.model.network import SegmentationModel

EXPORT_DESCRIPTION = {"format": "fastseg-export/1", "source_format": "fastseg-model/2", "size": 32,
                      "resize": "squish", "classes": ["background", "thing", "other"],
                      "colors": [[0, 0, 0], [128, 0, 0], [0, 128, 0]], "ignore_index": 255,
                      "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "metadata": {},
                      "model_config": {"num_classes": 3, "decoder_channels": [256, 128, 64, 32, 16],
                                       "encoder": "vgg16_bn"}}  # fmt: skip


def identity_onnx(path: Path, **description: object) -> Path:
    """A graph whose logits are its input, described (`EXPORT_DESCRIPTION`, updated by
    `description`) as an export of a 3-class 32² model."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    shape = ["n", 3, "h", "w"]
    node = helper.make_node("Identity", ["images"], ["logits"])
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)
    graph = helper.make_graph([node], "g", [images], [helper.make_tensor_value_info("logits", 1, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    helper.set_model_props(model, {"fastseg": json.dumps({**EXPORT_DESCRIPTION, **description})})
    onnx.save(model, str(path))
    return path


def thirds(folder: Path) -> Path:
    """`folder/a.png`, a 30x20 picture of red, green and blue thirds: the identity graph
    (`identity_onnx`) labels them 0, 1, 2."""
    folder.mkdir(exist_ok=True)
    pixels = np.zeros((20, 30, 3), np.uint8)
    pixels[:, :10, 0] = pixels[:, 10:20, 1] = pixels[:, 20:, 2] = 255
    Image.fromarray(pixels).save(folder / "a.png")
    return folder


def fastseg_without_torch(arguments: list[str], setup: str = "") -> subprocess.CompletedProcess:
    """`fastseg ARGUMENTS` in a new process where importing torch raises ImportError, after
    `setup` (Python run first, e.g. a patched machine); its output captured."""
    code = f"import sys; sys.modules['torch'] = None\n{setup}\nfrom cli.main import main; main(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, *arguments], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[1])  # fmt: skip


def seeded_voc_model() -> SegmentationModel:
    """VOC's 21 classes, default shape, in eval mode; the same weights and statistics each call."""
    torch.manual_seed(0)
    return randomise_batchnorm_statistics(SegmentationModel(ModelConfig(num_classes=len(VOC))).eval())


def randomise_batchnorm_statistics(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with every BatchNorm2d's running mean drawn from U(-0.2, 0.2) and variance from
    U(0.5, 2) (torch's global generator: seed it first), not the identity a fresh network starts
    with, so BatchNorm folding and exporters have something to get wrong. Returns `model`."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return model


def save_seeded_voc_model(path: Path, size: int = 32, **options: object) -> Path:
    """`seeded_voc_model()` written as `path` (model.pth) at `size`²; `options` are `save_model`'s."""
    config = ModelConfig(num_classes=len(VOC))
    return save_model(path, seeded_voc_model(), config, size=size, classes=VOC, **options)


def save_untrained_voc_model(path: Path, size: int, **options: object) -> Path:
    """A seeded VOC network as initialised (BatchNorm statistics left as they start) written as
    `path` at `size`²: the model whose masks predict's and tiling's tests know."""
    torch.manual_seed(0)
    config = ModelConfig(num_classes=len(VOC))
    return save_model(path, SegmentationModel(config).eval(), config, size=size, classes=VOC, **options)


def write_run_files(folder: Path, voc_root: Path) -> Path:
    """split.json (VOC's train list; its val list cut into 6 valid and the rest test) and
    config.json naming `voc_root`, as `fastseg train` leaves them in `folder`."""
    lists = find_voc(voc_root).root / "ImageSets" / "Segmentation"
    val = (lists / "val.txt").read_text().split()
    split = {"train": (lists / "train.txt").read_text().split(), "valid": val[:6], "test": val[6:]}
    (folder / "split.json").write_text(json.dumps(split))
    (folder / "config.json").write_text(json.dumps({"train": {"data": str(voc_root)}}))
    return folder
