"""Squish and letterbox: sizes by hand, letterboxed inference cropping its padding away, training and
inference fitting an image the same way, and the mode riding in model.pth."""

import numpy as np
import pytest
import torch
from PIL import Image

from fastseg.data.split import seed_split
from fastseg.data.voc import VOC, find_voc
from fastseg.errors import CheckpointError
from fastseg.imaging.geometry import IMAGE_FILL, LETTERBOX, SQUISH, content_size, fit_image, fit_mask
from fastseg.imaging.images import load_rgb
from fastseg.imaging.normalise import IMAGENET_MEAN, IMAGENET_STD, normalise
from fastseg.inference.files import ImageFiles
from fastseg.inference.segmenter import Segmenter
from fastseg.model.checkpoint import load_model, save_model
from fastseg.model.config import ModelConfig
from fastseg.model.network import SegmentationModel
from fastseg.training.config import AugmentConfig
from fastseg.training.data import build_dataloaders


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


def test_letterboxed_input_keeps_aspect_and_pads_with_the_mean_colour():
    assert tuple(round(255 * channel) for channel in IMAGENET_MEAN) == IMAGE_FILL
    red = Image.new("RGB", (40, 20), (255, 0, 0))
    tensor = normalise(fit_image(red, 32, LETTERBOX), IMAGENET_MEAN, IMAGENET_STD)
    assert tensor.shape == (3, 32, 32)
    expected_red = (1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    torch.testing.assert_close(tensor[0, :16], torch.full((16, 32), expected_red))
    assert 0 < tensor[:, 16:].abs().max() < 0.01  # the mean colour, rounded to 8 bits


def test_masks_are_fitted_by_nearest_and_padded_with_void():
    mask = Image.fromarray(np.array([[1, 2], [3, 4]], np.uint8))
    fitted = np.asarray(fit_mask(mask.resize((4, 2), Image.NEAREST), 8, LETTERBOX))
    assert fitted.shape == (8, 8)
    assert set(np.unique(fitted[:4]).tolist()) == {1, 2, 3, 4}  # no value between classes
    assert (fitted[4:] == 255).all()


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """Untrained model files, one per resize mode, input 32²."""
    torch.manual_seed(0)
    config = ModelConfig(num_classes=len(VOC))
    model, folder = SegmentationModel(config).eval(), tmp_path_factory.mktemp("models")
    return {mode: save_model(folder / f"{mode}.pth", model, config, size=32, resize=mode, classes=VOC)
            for mode in (SQUISH, LETTERBOX)}  # fmt: skip


def segmenter(path) -> Segmenter:
    return Segmenter.with_torch(load_model(path), torch.device("cpu"), precision="fp32")


@pytest.mark.parametrize("side", [32, 64])  # the model's own input side, and `predict --size 64`
def test_letterboxed_logits_lose_their_padding_before_upsampling(model_files, side):
    """Logits say class 3 over the image and class 7 over the padding: at full size the
    letterbox model predicts 3 everywhere; a squish model would keep the 7s."""
    logits = torch.zeros(21, side, side)
    logits[3, : side // 2, :] = 1  # a 20x40 image fills the top half
    logits[7, side // 2 :, :] = 1
    letterboxed = segmenter(model_files[LETTERBOX]).labels(logits, 20, 40)
    assert letterboxed.shape == (20, 40)
    assert set(np.unique(letterboxed).tolist()) == {3}
    squished = segmenter(model_files[SQUISH]).labels(logits, 20, 40)
    assert {3, 7} <= set(np.unique(squished).tolist())


@pytest.mark.parametrize("mode", [LETTERBOX, SQUISH])
def test_training_validation_and_inference_feed_identical_tensors(voc_root, mode):
    """The validation batches training scores on and the inputs predict/report build are the same
    tensors, bit for bit; the same images fitted one pixel smaller differ clearly, so the
    comparison would catch content moved by a single pixel."""
    folder = find_voc(voc_root)
    split = seed_split(folder.ids("train"), folder.ids("val"))
    augment = AugmentConfig(random_scale_crop=mode == LETTERBOX)
    dls = build_dataloaders(folder, split.train, split.valid, size=48, batch_size=4, augment=augment,
                            num_workers=0, device="cpu", crop_size=32)  # fmt: skip
    images = dls.valid.one_batch()[0].as_subclass(torch.Tensor)
    paths = [folder.image_path(image_id) for image_id in split.valid[:4]]
    items = ImageFiles(paths, 48, mode, IMAGENET_MEAN, IMAGENET_STD)
    inference = torch.stack([torch.from_numpy(item["image"]) for item in items])
    torch.testing.assert_close(images, inference, rtol=0, atol=1e-6)
    smaller = [normalise(fit_image(load_rgb(path), 47, mode)) for path in paths]
    one_pixel_off = torch.stack([torch.nn.functional.pad(image, (0, 1, 0, 1)) for image in smaller])
    assert (images - one_pixel_off).abs().mean() > 0.05


def test_squish_is_fastais_resize_bit_for_bit(voc_root):
    """The seed recipe used fastai's `Resize(method="squish")`; its replacement changes no pixel."""
    from fastai.vision.augment import Resize, ResizeMethod
    from fastai.vision.core import PILImage, PILMask

    from fastseg.training.data import FitToInput

    folder = find_voc(voc_root)
    for image_id in folder.ids("train")[:4]:
        pair = (PILImage.create(folder.image_path(image_id)), PILMask.create(folder.read_mask(image_id)))
        theirs = Resize(40, method=ResizeMethod.Squish)(pair, split_idx=0)
        ours = FitToInput(40, SQUISH)(pair, split_idx=0)
        for their_picture, our_picture in zip(theirs, ours, strict=True):
            np.testing.assert_array_equal(np.asarray(their_picture), np.asarray(our_picture))


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

    fill = normalise(Image.new("RGB", (1, 1), IMAGE_FILL))[:, 0, 0].view(1, 3, 1, 1)

    def coded_logits(self, images):
        padding = (images == fill).all(dim=1)  # (N, S, S): exactly the normalised mean colour
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
