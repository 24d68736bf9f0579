"""`--encoder NAME`: timm backbones behind the same U-Net decoder, and VGG16-BN left as it was.

Every family the README names (ResNet, ConvNeXt, EfficientNet, MobileNetV3, RegNetY) at odd and
even sizes, `backward()`, `model.pth` round trips, trained weights from a local file (timm's own
need the network, which the tests do not have: its failure is checked instead), `fastseg predict`
without fastai, and ONNX parity for two families (tolerances as tests/test_export.py's).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from model_files import randomise_batchnorm_statistics
from PIL import Image

from cli.main import main
from fastseg.classes import Classes
from fastseg.data.voc import VOC
from fastseg.errors import CheckpointError, FastsegError
from fastseg.model.checkpoint import load_model, save_model
from fastseg.model.config import ModelConfig
from fastseg.model.decoder import UnetDecoder
from fastseg.model.network import SegmentationModel
from fastseg.model.pretrained import load_encoder_weights

VOC_CONFIG = ModelConfig(num_classes=len(VOC))  # the seed's 21 classes

timm = pytest.importorskip("timm")

ENCODERS = ["resnet18", "resnet34", "resnet50", "convnext_tiny", "efficientnet_b0", "efficientnet_b3",
            "mobilenetv3_large_100", "regnety_002"]  # fmt: skip
CLASSES = Classes.create(["background", "thing", "other"])


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tensors this small gain nothing from threads, and on a busy 2-core machine OpenMP's
    threads wait for each other: a forward pass measured 6 s with 2 threads, 0.08 s with one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def timm_model(name: str, num_classes: int = 3) -> SegmentationModel:
    torch.manual_seed(0)
    return SegmentationModel(ModelConfig(num_classes=num_classes, encoder=name))


@pytest.mark.parametrize("name", ENCODERS)
def test_timm_encoder_behind_the_unet(name, tmp_path):
    """Logits at the input's size (odd in training, even in eval), gradients in every part, and
    `model.pth` giving back the same network (one model per encoder: they take seconds to build)."""
    model = timm_model(name).train()
    logits = model(torch.randn(2, 3, 33, 47))
    assert logits.shape == (2, 3, 33, 47)
    torch.nn.functional.cross_entropy(logits, torch.randint(0, 3, (2, 33, 47))).backward()
    for part in (model.encoder, model.decoder, model.head):
        grads = [p.grad for p in part.parameters()]
        assert grads and sum(g.abs().sum().item() for g in grads if g is not None) > 0
    assert all(p.grad is not None for p in [*model.decoder.parameters(), *model.head.parameters()])
    model.eval()
    path = save_model(tmp_path / "model.pth", model, model.config, size=32, classes=CLASSES)
    loaded = load_model(path)
    assert loaded.model.config.encoder == name
    assert loaded.model.state_dict().keys() == model.state_dict().keys()
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = model(images)
        assert expected.shape == (1, 3, 32, 32)
        torch.testing.assert_close(loaded.model(images), expected, rtol=0, atol=0)


def test_decoder_places_skips_by_stride():
    """ConvNeXt's maps start at 1/4: the 1/2 and 1/1 blocks have no skip; ResNet's at 1/2."""
    convnext, resnet = timm_model("convnext_tiny"), timm_model("resnet18")
    assert convnext.decoder.skip_index == (2, 1, 0, None, None)
    assert resnet.decoder.skip_index == (3, 2, 1, 0, None)
    widths = [block.fuse[0].in_channels for block in convnext.decoder.blocks]
    assert widths == [256 + 384, 256 + 192, 128 + 96, 64, 32]  # decoder + skip channels, then decoder alone
    vgg = SegmentationModel(VOC_CONFIG)
    assert vgg.decoder.skip_index == (4, 3, 2, 1, 0)  # VGG16-BN: a map at every scale


def test_encoders_whose_strides_do_not_reach_32_are_refused():
    with pytest.raises(FastsegError, match=r"strides \[2, 4, 16\].*1/32"):
        UnetDecoder((8, 8, 8), (4, 4, 4, 4, 4), (2, 4, 16))


def test_vgg_stays_the_default_and_old_files_mean_vgg():
    config = ModelConfig.from_dict({"num_classes": 21, "decoder_channels": [256, 128, 64, 32, 16]})
    assert config.encoder == "vgg16_bn" and config.to_dict()["encoder"] == "vgg16_bn"
    assert next(iter(SegmentationModel(VOC_CONFIG).state_dict())) == "encoder.stages.0.0.weight"


def test_a_model_file_naming_an_unknown_encoder_is_one_line(tmp_path):
    model = timm_model("resnet18")
    path = save_model(tmp_path / "model.pth", model, model.config, size=32, classes=CLASSES)
    state = torch.load(path, weights_only=True)
    state["model_config"]["encoder"] = "no_such_net"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=f"{path}: unknown encoder 'no_such_net'") as error:
        load_model(path)
    assert "\n" not in str(error.value)


def test_local_encoder_weights_load_from_torch_and_safetensors_files(tmp_path):
    """A timm classification state dict (head included, as timm saves them) initialises the encoder."""
    from safetensors.torch import save_file

    torch.manual_seed(1)
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    torch.save(state, tmp_path / "resnet18.pth")
    save_file(state, tmp_path / "resnet18.safetensors")
    for path in (tmp_path / "resnet18.pth", tmp_path / "resnet18.safetensors"):
        model = timm_model("resnet18")
        assert not torch.equal(model.encoder.model.conv1.weight, state["conv1.weight"])
        assert load_encoder_weights(model, pretrained=False, weights_file=path) == str(path)
        loaded = model.encoder.model.state_dict()
        assert all(torch.equal(loaded[key], state[key]) for key in loaded)


def test_weights_of_another_backbone_are_one_line(tmp_path):
    torch.save(timm.create_model("resnet34", pretrained=False).state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(FastsegError, match=r"resnet34.pth: not resnet18 weights .*unexpected: 96") as error:
        load_encoder_weights(timm_model("resnet18"), weights_file=tmp_path / "resnet34.pth")
    assert "\n" not in str(error.value)


def test_offline_pretrained_gives_one_line_naming_both_options(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FastsegError, match="--encoder-weights FILE.*--no-pretrained") as error:
        load_encoder_weights(timm_model("resnet18"), pretrained=True)
    assert "\n" not in str(error.value) and "resnet18" in str(error.value)


def test_vgg_models_never_import_timm(tmp_path):
    """A VGG model's `fastseg predict` start-up does not pay for timm (3.7 s with torchvision)."""
    path = save_model(tmp_path / "model.pth", SegmentationModel(VOC_CONFIG), VOC_CONFIG, size=32, classes=VOC)
    code = (f"import sys; from fastseg.model.checkpoint import load_model; load_model({str(path)!r}); "
            "import fastseg.inference.predict; print('timm' in sys.modules)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.slow  # four interpreters import torch and timm
def test_timm_is_imported_without_running_the_tracker_it_looks_for(tmp_path):
    """`import timm` imports wandb where it is installed (about a second of a timm model's predict
    start-up, for nothing fastseg calls). A stand-in wandb that leaves a mark when imported shows
    that plain `import timm` runs it (so this test can fail), that fastseg's `import_timm` does
    not, and that wandb is still importable afterwards (training with `--log wandb`)."""
    (tmp_path / "wandb.py").write_text("import os\nopen(os.environ['MARK'], 'a').write('x')\n")
    mark = tmp_path / "mark"

    def marks_after(code: str) -> str:
        mark.unlink(missing_ok=True)
        environment = {**os.environ, "MARK": str(mark), "PYTHONPATH": str(tmp_path)}
        subprocess.run([sys.executable, "-c", code], env=environment, check=True, capture_output=True)
        return mark.read_text() if mark.exists() else ""

    assert marks_after("import timm") == "x"
    fastseg = "import sys; from fastseg.model.timm_encoder import import_timm; timm = import_timm(); "
    assert marks_after(fastseg + "assert 'wandb' not in sys.modules and timm.is_model('resnet18')") == ""
    assert marks_after(fastseg + "import wandb") == "x"
    already = "import wandb; " + fastseg + "assert sys.modules['wandb'] is wandb"  # left as it is
    assert marks_after(already) == "x"


# one encoder per family of layers the exporter must translate: resnet's plain convolutions and
# BatchNorm (resnet34/50 add nothing), efficientnet's depthwise convolutions and SiLU squeeze-excite
# (b3 is b0 wider), convnext's LayerNorm and GELU, mobilenetv3's hard-swish, regnety's grouped ones
@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "convnext_tiny", "mobilenetv3_large_100",
                                  "regnety_002"])  # fmt: skip
def test_onnx_logits_match_torch(name, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from fastseg.export.onnx_file import export_graph, save_onnx, with_description
    from fastseg.inference.runtime import open_onnx

    model = randomise_batchnorm_statistics(timm_model(name).eval())  # statistics not the identity
    path = save_model(tmp_path / "model.pth", model, model.config, size=32, classes=CLASSES)
    loaded = load_model(path)
    proto = with_description(export_graph(loaded), loaded, precision="fp32")
    described, runtime = open_onnx(save_onnx(proto, tmp_path / "m.onnx"))
    assert described.export["model_config"]["encoder"] == name
    reference = load_model(path).model
    torch.manual_seed(1)
    for shape in [(1, 3, 32, 32), (2, 3, 45, 61)]:
        images = torch.randn(shape)
        with torch.no_grad():
            expected = reference(images)
        logits = torch.as_tensor(runtime.logits(images))  # onnxruntime answers with an array
        assert logits.shape == (shape[0], 3, *shape[2:])
        assert (logits - expected).abs().max().item() <= 1e-4
        assert (logits.argmax(1) == expected.argmax(1)).float().mean().item() >= 0.999


def train_arguments(voc_root, run_dir, *extra):
    return ["train", "--data", str(voc_root), "--out", str(run_dir), "--recipe", "seed", "--size", "32",
            "--batch-size", "8", "--epochs", "1", "--no-pretrained", "--num-workers", "0", "--device", "cpu",
            "--quiet", *extra]  # fmt: skip


def test_an_unknown_encoder_is_one_line_before_anything_is_made(voc_root, tmp_path):
    result = CliRunner().invoke(main, train_arguments(voc_root, tmp_path / "run", "--encoder", "resnet_nine"))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: unknown encoder 'resnet_nine': use vgg16_bn or a timm model name "
        "(python -c 'import timm; print(timm.list_models())')"
    ]
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def timm_run(voc_root, tmp_path_factory):
    """A run folder that `fastseg train --encoder regnety_002` made (one epoch, 32²)."""
    run = tmp_path_factory.mktemp("timm") / "run"
    result = CliRunner().invoke(main, train_arguments(voc_root, run, "--encoder", "regnety_002"))
    assert result.exit_code == 0, result.output
    return run


@pytest.mark.slow
def test_train_records_the_encoder_in_the_run_and_the_model(timm_run):
    config = json.loads((timm_run / "config.json").read_text())
    assert config["train"]["encoder"] == config["model"]["encoder"] == "regnety_002"
    loaded = load_model(timm_run)
    assert loaded.model.config.encoder == "regnety_002" and loaded.size == 32
    assert next(iter(loaded.model.state_dict())).startswith("encoder.model.stem.")


@pytest.mark.slow
def test_report_and_int8_export_work_for_a_timm_run(timm_run, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnx

    report = CliRunner().invoke(main, ["report", "--model", str(timm_run), "--out", str(tmp_path / "report"),
                                       "--quiet", "--num-workers", "0", "--precision", "fp32"])  # fmt: skip
    assert report.exit_code == 0, report.output
    assert "mean IoU" in report.output and (tmp_path / "report" / "metrics.json").is_file()
    int8 = tmp_path / "model.int8.onnx"
    arguments = ["export", str(timm_run), "--int8", "--out", str(int8), "--force",
                 "--calibration-images", "4", "--num-workers", "0", "--quiet"]  # fmt: skip
    export = CliRunner().invoke(main, arguments)
    assert export.exit_code == 0, export.output
    assert any(node.op_type == "QuantizeLinear" for node in onnx.load(str(int8)).graph.node)
    Image.fromarray(np.zeros((30, 50, 3), np.uint8)).save(tmp_path / "a.png")
    arguments = ["predict", "--model", str(int8), str(tmp_path / "a.png"), "--out", str(tmp_path / "masks"),
                 "--quiet", "--num-workers", "0"]  # fmt: skip
    predicted = CliRunner().invoke(main, arguments)
    assert predicted.exit_code == 0, predicted.output
    with Image.open(tmp_path / "masks" / "a.png") as mask:
        assert mask.size == (50, 30)
