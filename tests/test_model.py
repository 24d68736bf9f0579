"""Model shapes, cost, config round trip, parameter groups and encoder weight loading; CPU, offline."""

import json
import socket
from urllib.error import URLError

import pytest
import torch
import torchvision
from torch import nn

from fastseg.data.voc import VOC
from fastseg.errors import CheckpointError, FastsegError
from fastseg.model.config import ModelConfig
from fastseg.model.macs import count_macs
from fastseg.model.network import SegmentationModel, param_groups
from fastseg.model.pretrained import cached_weights_path, load_encoder_weights

VOC_CONFIG = ModelConfig(num_classes=len(VOC))  # the seed's 21 classes


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection attempt fails the test loudly (AssertionError is not an OSError we catch)."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def model() -> SegmentationModel:
    torch.manual_seed(0)
    return SegmentationModel(VOC_CONFIG).eval()


@pytest.fixture(scope="module")
def torchvision_state() -> dict[str, torch.Tensor]:
    """A torchvision `vgg16_bn` state dict with random values everywhere (BN statistics included,
    so equality after loading means something). Classifier keys are kept, with tiny tensors, to
    check they are dropped without writing 500 MB to disk."""
    with torch.device("meta"):  # torchvision's real layout, without allocating 138M parameters
        layout = torchvision.models.vgg16_bn(weights=None).state_dict()
    generator = torch.Generator().manual_seed(1)
    return {
        key: torch.zeros(1)  # the classifier only has to be dropped, not stored
        if not key.startswith("features.")
        else torch.randn(value.shape, generator=generator)
        if value.is_floating_point()
        else torch.tensor(0)
        for key, value in layout.items()
    }


def assert_encoder_equals(model: SegmentationModel, reference: dict[str, torch.Tensor]) -> None:
    """Every weight and BN statistic of `model.encoder` is the reference's `features.*` tensor."""
    ours = {  # stages.<s>.<i>.<name> -> features.<i>.<name>
        "features." + key.split(".", 2)[2]: value
        for key, value in model.encoder.state_dict().items()
        if not key.endswith("num_batches_tracked")
    }
    theirs = {k: v for k, v in reference.items() if k.startswith("features.") and "num_batches" not in k}
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs)


@pytest.mark.parametrize("size", [(64, 64), (97, 131), (33, 47), (375, 500), (17, 9), (1, 1)])
def test_logits_have_the_input_size_for_any_size(model, size):
    with torch.no_grad():
        logits = model(torch.randn(1, 3, *size))
    assert logits.shape == (1, 21, *size)


def test_encoder_maps_are_read_before_each_pool(model):
    with torch.no_grad():
        features = model.encoder(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in features] == [
        (64, 64, 96),
        (128, 32, 48),
        (256, 16, 24),
        (512, 8, 12),
        (512, 4, 6),
        (512, 2, 3),
    ]


def test_backward_reaches_every_parameter():
    model = SegmentationModel(VOC_CONFIG).train()
    logits = model(torch.randn(2, 3, 40, 48))
    nn.functional.cross_entropy(logits, torch.randint(0, 21, (2, 40, 48))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_decoder_costs_at_most_40_percent_of_encoder(model):
    macs = count_macs(model, torch.zeros(1, 3, 224, 224))
    assert round(macs["encoder"] / 1e9, 2) == 15.35  # vgg16_bn features at 224²
    assert round(macs["decoder"] / 1e9, 2) == 3.76  # the figure in decoder.py and the README
    assert macs["decoder"] + macs["head"] <= 0.40 * macs["encoder"]


def test_count_macs_by_hand():
    layers = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ConvTranspose2d(4, 2, 2, stride=2))
    # conv: 4x5x5 outputs x 3x3x3; transposed: 4x5x5 inputs x 2x2x2
    assert count_macs(layers, torch.zeros(1, 3, 5, 5)) == {"0": 100 * 27, "1": 100 * 8}


def test_channels_last_gives_the_same_logits(model):
    images = torch.randn(1, 3, 33, 47)
    with torch.no_grad():
        expected = model(images)
        channels_last = model.to(memory_format=torch.channels_last)(
            images.contiguous(memory_format=torch.channels_last)
        )
    model.to(memory_format=torch.contiguous_format)
    torch.testing.assert_close(channels_last, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_forward_compiles_as_one_graph(model):
    """No shape-dependent Python in `forward`: fullgraph=True raises on any graph break."""
    images = torch.randn(1, 3, 33, 47)
    with torch.no_grad():
        compiled = torch.compile(model, backend="eager", fullgraph=True, dynamic=False)(images)
        torch.testing.assert_close(compiled, model(images))


def test_config_round_trip_rebuilds_the_same_architecture():
    config = ModelConfig(num_classes=5, decoder_channels=(64, 32, 16, 8, 8))
    rebuilt_config = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert rebuilt_config == config
    original, rebuilt = SegmentationModel(config), SegmentationModel(rebuilt_config)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in original.state_dict().items()
    }
    rebuilt.load_state_dict(original.state_dict())
    with torch.no_grad():
        assert rebuilt.eval()(torch.randn(1, 3, 20, 30)).shape == (1, 5, 20, 30)


def test_bad_configs_are_refused():
    with pytest.raises(CheckpointError, match="unknown keys.*'width'"):
        ModelConfig.from_dict({"num_classes": 21, "width": 3})
    with pytest.raises(CheckpointError, match="decoder_channels must be 5"):
        ModelConfig.from_dict({"decoder_channels": [8, 8]})
    with pytest.raises(FastsegError, match="num_classes"):
        ModelConfig(num_classes=0)


def test_param_groups_cover_every_parameter_once(model):
    encoder, decoder = param_groups(model)
    ids = [id(p) for p in encoder + decoder]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert {id(p) for p in encoder} == {id(p) for p in model.encoder.parameters()}


def test_imagenet_weights_come_from_the_torch_home_cache(tmp_path, monkeypatch, torchvision_state):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # a set_dir() elsewhere would win over TORCH_HOME
    path = cached_weights_path()
    assert path == tmp_path / "hub" / "checkpoints" / "vgg16_bn-6c64b313.pth"
    path.parent.mkdir(parents=True)
    # torchvision's 2018 file has no num_batches_tracked counters; they must not be required.
    torch.save({k: v for k, v in torchvision_state.items() if "num_batches" not in k}, path)

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted although the weights are cached")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", no_download)
    model = SegmentationModel(VOC_CONFIG)
    assert "IMAGENET1K_V1" in load_encoder_weights(model, pretrained=True)
    assert_encoder_equals(model, {k: v for k, v in torchvision_state.items() if "num_batches" not in k})


def test_offline_without_cache_gives_one_line_advice(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    asked = []

    def offline(url, *args, **kwargs):  # what torchvision's get_state_dict calls
        asked.append(url)
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(FastsegError, match="--no-pretrained.*--encoder-weights FILE") as error:
        load_encoder_weights(SegmentationModel(VOC_CONFIG), pretrained=True)
    message = str(error.value)
    assert "\n" not in message
    assert str(tmp_path / "hub" / "checkpoints" / "vgg16_bn-6c64b313.pth") in message
    assert asked == ["https://download.pytorch.org/models/vgg16_bn-6c64b313.pth"]


def test_no_pretrained_leaves_the_random_encoder(model):
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    assert load_encoder_weights(model, pretrained=False) == "random initialisation"
    assert all(torch.equal(before[k], v) for k, v in model.encoder.state_dict().items())


def test_local_weights_files_in_every_accepted_layout(tmp_path, torchvision_state):
    full = tmp_path / "vgg16_bn.pth"
    torch.save(torchvision_state, full)
    model = SegmentationModel(VOC_CONFIG)
    assert load_encoder_weights(model, pretrained=True, weights_file=full) == str(full)
    assert_encoder_equals(model, torchvision_state)

    # A fastseg model.pth (a dict around `state_dict`) gives its encoder to a new model.
    checkpoint = tmp_path / "model.pth"
    torch.save({"format": "fastseg-model/1", "state_dict": model.state_dict(), "size": 64}, checkpoint)
    other = SegmentationModel(VOC_CONFIG)
    load_encoder_weights(other, pretrained=False, weights_file=checkpoint)
    assert_encoder_equals(other, torchvision_state)

    # torchvision `features` alone, keys without the `features.` prefix.
    bare = tmp_path / "features.pth"
    torch.save(
        {k.removeprefix("features."): v for k, v in torchvision_state.items() if "features" in k}, bare
    )
    third = SegmentationModel(VOC_CONFIG)
    load_encoder_weights(third, pretrained=False, weights_file=bare)
    assert_encoder_equals(third, torchvision_state)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"garbage", r"bad\.pth: not a readable state dict"),
        (
            {"features.0.weight": torch.zeros(64, 3, 3, 3)},
            r"bad\.pth: not vgg16_bn encoder weights \(missing: 77, e\.g\.",
        ),
        (
            {"features.0.weight": torch.zeros(64, 1, 3, 3)},
            r"wrong shape: 1, e\.g\. stages\.0\.0\.weight\)",
        ),
        ({"epoch": 3}, r"bad\.pth: not a state dict of tensors"),
    ],
)
def test_bad_weights_file_gives_one_line_naming_it(tmp_path, content, match):
    bad = tmp_path / "bad.pth"
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        torch.save(content, bad)
    with pytest.raises(FastsegError, match=match) as error:
        load_encoder_weights(SegmentationModel(VOC_CONFIG), pretrained=False, weights_file=bad)
    assert "\n" not in str(error.value)


def test_encoder_layers_and_initialisation_are_torchvisions():
    """fastseg builds VGG16-BN's layers itself (importing torchvision costs predict 1.8 s of start-up);
    they must be torchvision's `vgg16_bn().features`, index for index, drawn from the same seed."""
    from torchvision.models.vgg import cfgs, make_layers

    from fastseg.model.encoder import vgg16_bn_features

    torch.manual_seed(3)
    ours = vgg16_bn_features()
    torch.manual_seed(3)
    theirs = make_layers(cfgs["D"], batch_norm=True)
    for layer in theirs:  # torchvision's VGG.__init__
        if isinstance(layer, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            torch.nn.init.zeros_(layer.bias)
        elif isinstance(layer, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
    assert [repr(layer) for layer in ours] == [repr(layer) for layer in theirs]
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for name, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[name], value), name
