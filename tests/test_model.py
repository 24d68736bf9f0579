from urllib.error import URLError

import pytest
import torch
import torchvision
from torch import nn

from fastseg.errors import FastsegError
from fastseg.model import ModelConfig, SegmentationModel, param_groups
from fastseg.pretrained import cached_weights_path, load_encoder_weights


@pytest.fixture(scope="module")
def model() -> SegmentationModel:
    torch.manual_seed(0)
    return SegmentationModel(ModelConfig()).eval()


@pytest.mark.parametrize("size", [(64, 64), (97, 131), (33, 47), (375, 500)])
def test_logits_have_the_input_size_for_odd_sizes(model, size):
    with torch.no_grad():
        logits = model(torch.randn(1, 3, *size))
    assert logits.shape == (1, 21, *size)


def test_backward_reaches_every_parameter():
    model = SegmentationModel().train()
    logits = model(torch.randn(2, 3, 48, 40))
    nn.functional.cross_entropy(logits, torch.randint(0, 21, (2, 48, 40))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def count_macs(module: nn.Module, images: torch.Tensor) -> dict[str, int]:
    """Multiply-adds of every conv, attributed to the model part (encoder/decoder/head) it is in."""
    totals = {"encoder": 0, "decoder": 0, "head": 0}
    hooks = []
    for name, layer in module.named_modules():
        if isinstance(layer, nn.Conv2d):
            part = name.split(".")[0]

            def hook(layer, _inputs, output, part=part):
                kernel = layer.kernel_size[0] * layer.kernel_size[1] * layer.in_channels // layer.groups
                totals[part] += output.numel() * kernel

            hooks.append(layer.register_forward_hook(hook))
    with torch.no_grad():
        module(images)
    for handle in hooks:
        handle.remove()
    return totals


def test_decoder_costs_at_most_40_percent_of_encoder(model):
    macs = count_macs(model, torch.zeros(1, 3, 224, 224))
    assert 15.0e9 < macs["encoder"] < 16.0e9  # vgg16_bn features at 224²: ~15.4 GMACs
    assert (macs["decoder"] + macs["head"]) <= 0.40 * macs["encoder"]


def test_config_round_trip_rebuilds_the_same_architecture(model):
    config = ModelConfig.from_dict(model.config.to_dict())
    rebuilt = SegmentationModel(config)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }


def test_param_groups_cover_every_parameter_once(model):
    encoder, decoder = param_groups(model)
    ids = [id(p) for p in encoder + decoder]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert {id(p) for p in encoder} == {id(p) for p in model.encoder.parameters()}


def test_imagenet_weights_come_from_the_torch_home_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    reference = torchvision.models.vgg16_bn().state_dict()
    path = cached_weights_path()
    assert str(path).startswith(str(tmp_path))
    path.parent.mkdir(parents=True)
    torch.save(reference, path)

    def no_network(*args, **kwargs):
        raise AssertionError("the network was touched although the weights are cached")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    model = SegmentationModel()
    load_encoder_weights(model, pretrained=True)
    encoder = model.encoder.state_dict()
    assert torch.equal(encoder["stages.0.0.weight"], reference["features.0.weight"])
    assert torch.equal(encoder["stages.4.41.running_var"], reference["features.41.running_var"])


def test_offline_without_cache_gives_one_line_advice(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(FastsegError, match="--no-pretrained.*--encoder-weights") as error:
        load_encoder_weights(SegmentationModel(), pretrained=True)
    assert "\n" not in str(error.value)


def test_local_encoder_weights_file_and_bad_file(tmp_path):
    reference = torchvision.models.vgg16_bn().state_dict()
    good = tmp_path / "vgg.pth"
    torch.save(reference, good)
    model = SegmentationModel()
    load_encoder_weights(model, pretrained=False, weights_file=good)
    assert torch.equal(model.encoder.state_dict()["stages.2.14.weight"], reference["features.14.weight"])
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    with pytest.raises(FastsegError, match="bad.pth"):
        load_encoder_weights(model, pretrained=False, weights_file=bad)
