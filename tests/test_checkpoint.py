"""A crafted or damaged `model.pth` is refused in one line naming the file and the field."""

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cli.main import main
from fastseg.data.voc import VOC
from fastseg.errors import CheckpointError
from fastseg.model.checkpoint import load_model, save_model
from fastseg.model.config import ModelConfig
from fastseg.model.network import SegmentationModel


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    """The dict inside a good model.pth."""
    path = save_model(
        tmp_path_factory.mktemp("model") / "model.pth",
        SegmentationModel(ModelConfig(num_classes=len(VOC))).eval(),
        ModelConfig(num_classes=len(VOC)),
        32,
        classes=VOC,
    )
    return torch.load(path, weights_only=True)


def crafted(state, path, **changes):
    """`state` with `changes` (a value of None removes the field), saved to `path`."""
    values = {**state, **changes}
    torch.save({key: value for key, value in values.items() if value is not None}, path)
    return path


NAMES = "field 'classes' must be a list of 21 names (one per class), got"
TENSORS = "field 'state_dict' must be a dict of named tensors, got"
POSITIVE = "field 'std' must be 3 positive finite numbers, got"
SIZE = "field 'size' must be a whole number of pixels from 32 to 8192, got"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"model_config": None}, "field 'model_config' is missing"),
        ({"model_config": "unet"}, "field 'model_config' must be a dict, got 'unet'"),
        ({"model_config": {"num_classes": 0}}, "model config is not valid: num_classes must be a whole"),
        ({"size": "big"}, "field 'size' must be a whole number of pixels from 32 to 8192, got 'big'"),
        ({"size": 0}, "field 'size' must be a whole number of pixels from 32 to 8192, got 0"),
        ({"size": True}, "field 'size' must be a whole number of pixels from 32 to 8192, got True"),
        ({"size": None}, "field 'size' is missing"),
        ({"resize": "stretch"}, "unknown resize mode 'stretch' (expected squish or letterbox)"),
        ({"mean": [0.5, 0.5]}, "field 'mean' must be 3 finite numbers, got [0.5, 0.5]"),
        ({"mean": ["a", 0.5, 0.5]}, "field 'mean' must be 3 finite numbers, got ['a', 0.5, 0.5]"),
        ({"std": [0.2, 0.0, 0.2]}, f"{POSITIVE} [0.2, 0.0, 0.2]"),
        ({"std": [0.2, float("nan"), 0.2]}, f"{POSITIVE} [0.2, nan, 0.2]"),
        ({"classes": ["background"] * 20}, f"{NAMES} 20"),
        ({"classes": "background"}, f"{NAMES} 'background'"),
        ({"classes": list(range(21))}, f"{NAMES} [0, 1, 2,"),
        ({"metadata": ["a"]}, "field 'metadata' must be a dict, got ['a']"),
        ({"state_dict": None}, "field 'state_dict' is missing"),
        ({"state_dict": [1, 2]}, f"{TENSORS} [1, 2]"),
        ({"state_dict": {"head.weight": 3}}, f"{TENSORS} {{'head.weight': 3}}"),
        ({"format": None}, "not a fastseg model file (expected format fastseg-model/2)"),
        # issue #19 (3, 7): each of these was a traceback, a 480 GB allocation or an all-background model
        ({"size": 200_000}, f"{SIZE} 200000"),
        ({"size": 31}, f"{SIZE} 31"),
        ({"model_config": {"num_classes": True}}, "model config is not valid: num_classes must be a whole"),
        ({"model_config": {"num_classes": 300}}, "model config is not valid: num_classes must be a whole"),
    ],
)
def test_each_bad_field_is_one_line_naming_the_file_and_the_field(state, tmp_path, changes, problem):
    path = crafted(state, tmp_path / "model.pth", **changes)
    with pytest.raises(CheckpointError) as caught:
        load_model(path)
    assert str(caught.value).startswith(f"{path}: {problem}")
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200 + len(str(path))


def test_a_long_value_is_cut_short_in_the_message(state, tmp_path):
    path = crafted(state, tmp_path / "model.pth", metadata="x" * 5000)
    with pytest.raises(CheckpointError, match=r"'metadata' must be a dict, got 'xxxx+\.\.\.$") as caught:
        load_model(path)
    assert len(str(caught.value)) < 120 + len(str(path))


def mismatched(state):
    """One weight gone, one foreign, one of another shape."""
    weights = dict(state["state_dict"])
    del weights["decoder.center.0.weight"]
    weights["decoder.extra.weight"] = torch.zeros(3)
    weights["head.weight"] = torch.zeros(21, 8, 1, 1)
    return weights


def test_mismatched_weights_are_one_line_with_counts_and_an_example(state, tmp_path):
    path = crafted(state, tmp_path / "model.pth", state_dict=mismatched(state))
    with pytest.raises(CheckpointError) as caught:
        load_model(path)
    assert str(caught.value) == (
        f"{path}: weights do not match the saved model config: 1 missing, 1 unexpected, 1 wrong shape, "
        "e.g. missing decoder.center.0.weight"
    )
    assert caught.value.details.splitlines() == [
        "missing: decoder.center.0.weight",
        "unexpected: decoder.extra.weight",
        "wrong shape: head.weight is (21, 8, 1, 1) in the file, (21, 16, 1, 1) in the model",
    ]


@pytest.mark.parametrize("command", ["predict", "report"])
def test_cli_shows_one_line_and_every_key_only_with_verbose(state, tmp_path, voc_root, command):
    path = crafted(state, tmp_path / "model.pth", state_dict=mismatched(state))
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    if command == "predict":
        arguments = ["predict", "--model", str(path), str(tmp_path / "a.jpg"), "--out", str(tmp_path / "out")]
    else:  # a run folder around the file
        from fastseg.data.split import seed_split
        from fastseg.data.voc import find_voc
        from fastseg.runs.folder import RunFolder

        folder = find_voc(voc_root)
        RunFolder(tmp_path).write_split(seed_split(folder.ids("train"), folder.ids("val")))
        arguments = ["report", "--model", str(path), "--data", str(voc_root), "--out", str(tmp_path / "out")]
    headline = (
        f"Error: {path}: weights do not match the saved model config: 1 missing, 1 unexpected, "
        "1 wrong shape, e.g. missing decoder.center.0.weight"
    )
    quiet = CliRunner().invoke(main, arguments)
    assert quiet.exit_code == 1
    assert quiet.output == f"{headline} (--verbose: every key)\n"
    verbose = CliRunner().invoke(main, [*arguments, "--verbose"])
    assert verbose.exit_code == 1
    assert verbose.output.splitlines() == [
        headline,
        "missing: decoder.center.0.weight",
        "unexpected: decoder.extra.weight",
        "wrong shape: head.weight is (21, 8, 1, 1) in the file, (21, 16, 1, 1) in the model",
    ]
    assert not (tmp_path / "out").exists()


def test_cli_crafted_size_is_one_error_line(state, tmp_path):
    path = crafted(state, tmp_path / "model.pth", size="big")
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    result = CliRunner().invoke(main, ["predict", "--model", str(path), str(tmp_path / "a.jpg"), "--out",
                                       str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 1
    assert result.output == f"Error: {path}: {SIZE} 'big'\n"


@pytest.mark.parametrize(
    "content",
    [b"half of a file", b"h\xe1\xa3\x19", b"\x8a", b"X"],
    ids=["KeyError", "KeyError-short", "IndexError", "struct.error"],
)
def test_any_garbage_is_one_line_never_a_traceback(tmp_path, content):
    """Bytes that are not a zip reach torch's legacy pickle reader, whose weights-only unpickler
    raises whatever the garbage provokes (found by feeding it random bytes)."""
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"model.pth: not a readable fastseg model"):
        load_model(path)
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "a.png")
    result = CliRunner().invoke(
        main, ["predict", "--model", str(path), str(images), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert "model.pth: not a readable fastseg model" in result.output


def test_weights_load_exactly_and_half_precision_ones_as_fp32(state, tmp_path):
    """The network is built on the meta device and takes the file's tensors: every parameter and
    buffer must be real, equal to the file's, and fp32 even when the file holds fp16."""
    loaded = load_model(crafted(state, tmp_path / "model.pth")).model
    assert not any(tensor.is_meta for tensor in [*loaded.parameters(), *loaded.buffers()])
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, state["state_dict"][name]), name
    half = {
        name: value.half() if value.is_floating_point() else value
        for name, value in state["state_dict"].items()
    }
    loaded = load_model(crafted(state, tmp_path / "half.pth", state_dict=half)).model
    assert {parameter.dtype for parameter in loaded.parameters()} == {torch.float32}
    assert loaded(torch.zeros(1, 3, 32, 32)).shape == (1, 21, 32, 32)


@pytest.mark.parametrize("damage", ["nan", "int64"])
def test_weights_that_are_not_finite_floats_are_refused_on_load(state, tmp_path, damage):
    """Issue #19 (3, 7): NaN weights loaded and predicted background everywhere; int64 weights were
    a traceback. Both are one line naming the tensor."""
    weights = dict(state["state_dict"])
    name = "head.weight"
    weights[name] = weights[name].clone().fill_(float("nan")) if damage == "nan" else weights[name].long()
    path = crafted(state, tmp_path / "model.pth", state_dict=weights)
    kind = "NaN or infinite values in" if damage == "nan" else "not floating point"
    with pytest.raises(CheckpointError, match=f"1 {kind}, e.g. {kind} {name}$"):
        load_model(path)


def test_a_raw_pickle_is_one_line_without_torchs_warning(tmp_path, capfd):
    import pickle

    path = tmp_path / "model.pth"
    path.write_bytes(pickle.dumps({"format": "fastseg-model/2"}))
    arguments = ["predict", "--model", str(path), str(tmp_path), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "Warning" not in capfd.readouterr().err


def test_a_file_from_before_own_data_sets_loads_as_vocs(state, tmp_path):
    """No colours, void value, resize mode or encoder (files older than those fields), and a
    model_config without a class count: read as before, VOC's colour map, 255, squish, VGG16-BN
    and 21 classes. The model has no class-count default any more; this is the file format's."""
    old_config = {"decoder_channels": state["model_config"]["decoder_channels"]}
    path = crafted(state, tmp_path / "old.pth", colors=None, ignore_index=None, resize=None,
                   model_config=old_config)  # fmt: skip
    loaded = load_model(path)
    assert loaded.model.config == ModelConfig(num_classes=21, decoder_channels=(256, 128, 64, 32, 16))
    assert loaded.classes == list(VOC.names) and loaded.colors == list(VOC.colors)
    assert (loaded.ignore_index, loaded.resize) == (255, "squish")
    assert loaded.class_set == VOC
    with torch.no_grad():
        assert loaded.model(torch.zeros(1, 3, 32, 32)).shape == (1, 21, 32, 32)
