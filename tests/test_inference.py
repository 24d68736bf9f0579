"""Full-size labels from a band of rows at a time equal upsampling the whole map at once."""

import pytest
import torch
import torch.nn.functional as F

import fastseg.inference.segmented as segmented_module
from fastseg.classes import Classes
from fastseg.imaging.geometry import SQUISH
from fastseg.inference.segmenter import Segmenter
from fastseg.model.checkpoint import load_model, save_model
from fastseg.model.config import ModelConfig
from fastseg.model.network import SegmentationModel


@pytest.fixture(scope="module")
def squish_segmenter(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pth"
    save_model(path, SegmentationModel(ModelConfig(num_classes=5)).eval(), ModelConfig(num_classes=5), 32,
               resize=SQUISH, classes=Classes.create("abcde"))  # fmt: skip
    return Segmenter.with_torch(load_model(path), torch.device("cpu"), precision="fp32")


@pytest.mark.parametrize(("height", "width"), [(375, 500), (20, 33), (1000, 17), (3, 4)])
@pytest.mark.parametrize("band_values", [1, 5 * 33 * 7, 1 << 24])  # one row, 7 rows, the whole image
def test_banded_upsampling_equals_the_whole_map(squish_segmenter, monkeypatch, height, width, band_values):
    monkeypatch.setattr(segmented_module, "BAND_VALUES", band_values)
    torch.manual_seed(0)
    logits = torch.randn(5, 32, 32)
    whole = F.interpolate(logits[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    bands = list(squish_segmenter.bands(logits, height, width))
    assert [rows.start for rows, _ in bands] == sorted({rows.start for rows, _ in bands})
    assert bands[-1][0].stop == height
    torch.testing.assert_close(torch.cat([band for _, band in bands], dim=1), whole, rtol=0, atol=2e-5)
    labels = squish_segmenter.labels(logits, height, width)
    assert labels.shape == (height, width)
    assert (torch.from_numpy(labels).long() == whole.argmax(0)).float().mean() == 1.0


def test_bands_stay_within_their_budget(squish_segmenter, monkeypatch):
    monkeypatch.setattr(segmented_module, "BAND_VALUES", 5 * 500 * 10)  # 10 rows of 5 classes x 500
    sizes = [band.shape for _, band in squish_segmenter.bands(torch.randn(5, 32, 32), 375, 500)]
    assert len(sizes) == 38 and max(shape[1] for shape in sizes) == 10
