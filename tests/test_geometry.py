"""Squish and letterbox: sizes by hand, letterboxed inference cropping its padding away, training and
inference fitting an image the same way, and the mode riding in model.pth."""

import numpy as np
import pytest
import torch
from PIL import Image

from fastseg.checkpoint import load_model, save_model
from fastseg.classes import IMAGENET_MEAN, IMAGENET_STD
from fastseg.config import AugmentConfig
from fastseg.data import build_dataloaders
from fastseg.errors import CheckpointError
from fastseg.geometry import LETTERBOX, SQUISH, content_size
from fastseg.images import load_rgb
from fastseg.inference import Segmenter, normalise
from fastseg.model import ModelConfig, SegmentationModel
from fastseg.split import seed_split
from fastseg.voc import find_voc


@pytest.mark.parametrize(
    ("height", "width", "size", "mode", "expected"),
    [
        (375, 500, 512, LETTERBOX, (384, 512)),
        (500, 375, 512, LETTERBOX, (512, 384)),
        (100, 100, 64, LETTERBOX, (64, 64)),
        (10, 1000, 64, LETTERBOX, (1, 64)),  # never 0 px
        (375, 500, 224, SQUISH, (224, 224)),
    ],
)
def test_content_size_by_hand(height, width, size, mode, expected):
    assert content_size(height, width, size, mode) == expected


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown resize mode 'crop'"):
        content_size(1, 1, 1, "crop")


def test_letterboxed_input_keeps_aspect_and_pads_with_zero():
    red = Image.new("RGB", (40, 20), (255, 0, 0))
    tensor = normalise(red, 32, IMAGENET_MEAN, IMAGENET_STD, LETTERBOX)
    assert tensor.shape == (3, 32, 32)
    expected_red = (1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    torch.testing.assert_close(tensor[0, :16], torch.full((16, 32), expected_red))
    assert tensor[:, 16:].abs().max() == 0


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """Untrained model files, one per resize mode, input 32²."""
    torch.manual_seed(0)
    model, folder = SegmentationModel().eval(), tmp_path_factory.mktemp("models")
    return {mode: save_model(folder / f"{mode}.pth", model, ModelConfig(), size=32, resize=mode)
            for mode in (SQUISH, LETTERBOX)}  # fmt: skip


def segmenter(path) -> Segmenter:
    return Segmenter(load_model(path), torch.device("cpu"), precision="fp32")


@pytest.mark.parametrize("side", [32, 64])  # the model's own input side, and `predict --size 64`
def test_letterboxed_logits_lose_their_padding_before_upsampling(model_files, side):
    """Logits say class 3 over the image and class 7 over the padding: at full size the
    letterbox model predicts 3 everywhere; a squish model would keep the 7s."""
    logits = torch.zeros(21, side, side)
    logits[3, : side // 2, :] = 1  # a 20x40 image fills the top half
    logits[7, side // 2 :, :] = 1
    letterboxed = segmenter(model_files[LETTERBOX]).full_size(logits, 20, 40)
    assert letterboxed.shape == (21, 20, 40)
    assert set(Segmenter.labels(letterboxed).unique().tolist()) == {3}
    squished = Segmenter.labels(segmenter(model_files[SQUISH]).full_size(logits, 20, 40))
    assert {3, 7} <= set(squished.unique().tolist())


def test_training_validation_and_inference_fit_images_alike(voc_root):
    """A crop-trained model is validated on letterboxed batches; predict/report must feed it the
    same picture (content in the same place, padding 0), or its scores would not carry over."""
    folder = find_voc(voc_root)
    split = seed_split(folder.ids("train"), folder.ids("val"))
    augment = AugmentConfig(random_scale_crop=True)
    dls = build_dataloaders(folder, split.train, split.valid, size=48, batch_size=4, augment=augment,
                            num_workers=0, device="cpu", crop_size=32)  # fmt: skip
    images, _ = dls.valid.one_batch()
    for row, image_id in enumerate(split.valid[:4]):
        expected = normalise(
            load_rgb(folder.image_path(image_id)), 48, IMAGENET_MEAN, IMAGENET_STD, LETTERBOX
        )
        difference = (images[row].as_subclass(torch.Tensor) - expected).abs()
        # Pillow vs torch bilinear differ by ~0.002; content one pixel off differs by 0.05 or more
        assert difference.mean() < 0.01, (image_id, difference.mean())


def test_resize_mode_rides_in_the_model_file(model_files, tmp_path):
    assert load_model(model_files[LETTERBOX]).resize == LETTERBOX
    state = torch.load(model_files[SQUISH], weights_only=True)
    del state["resize"]  # written before letterboxing existed
    torch.save(state, tmp_path / "old.pth")
    assert load_model(tmp_path / "old.pth").resize == SQUISH
    state["resize"] = "stretch"
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="bad.pth: unknown resize mode 'stretch'"):
        load_model(tmp_path / "bad.pth")


@pytest.mark.parametrize("size", [None, 48])  # the model's own 32, and another side
def test_predict_with_a_letterbox_model_keeps_only_the_image_area(model_files, tmp_path, monkeypatch, size):
    """Logits coded by position, class 3 where the input holds image and 7 over its zero padding:
    the written mask is all 3 at the image's size only if the padding was cropped off correctly."""
    from click.testing import CliRunner

    from cli.main import main

    def coded_logits(self, images):
        padding = (images == 0).all(dim=1)  # (N, S, S)
        logits = torch.zeros(images.shape[0], 21, *images.shape[2:])
        logits[:, 3] = (~padding).float()
        logits[:, 7] = padding.float()
        return logits

    monkeypatch.setattr(Segmenter, "logits", coded_logits)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(1, 255, (29, 61, 3), dtype=np.uint8)).save(tmp_path / "wide.png")
    arguments = ["predict", "--model", str(model_files[LETTERBOX]), str(tmp_path / "wide.png"),
                 "--out", str(tmp_path / "out"), "--quiet", "--num-workers", "0",
                 *(["--size", str(size)] if size else [])]  # fmt: skip
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "wide.png") as mask:
        assert mask.size == (61, 29) and mask.mode == "P"
        assert set(np.unique(np.asarray(mask)).tolist()) == {3}
