import json

import numpy as np
import pytest

from fastseg.data.class_weights import class_weights, mask_pixel_counts
from fastseg.data.voc import VOC_CLASSES, VOCFolder
from fastseg.imaging.masks import read_mask, write_mask
from fastseg.runs.folder import RunFolder

V = 255


@pytest.fixture
def tiny_masks(tmp_path):
    """Two 2x3 masks: image a = [0,0,1 / 1,V,V], image b = [0,2,2 / 2,2,V]."""
    folder = VOCFolder(tmp_path)
    (tmp_path / "SegmentationClass").mkdir()
    write_mask(folder.mask_path("a"), np.array([[0, 0, 1], [1, V, V]]))
    write_mask(folder.mask_path("b"), np.array([[0, 2, 2], [2, 2, V]]))
    return folder


def pixel_counts(folder: VOCFolder, ids: list[str], num_classes: int) -> np.ndarray:
    return np.stack([mask_pixel_counts(read_mask(folder.mask_path(i)), num_classes) for i in ids])


def test_pixel_counts_leave_void_out(tiny_masks):
    counts = pixel_counts(tiny_masks, ["a", "b"], num_classes=3)
    assert counts.tolist() == [[2, 2, 0], [1, 0, 4]]


def test_balanced_weights_by_hand(tiny_masks):
    counts = pixel_counts(tiny_masks, ["a", "b"], num_classes=3)
    # 9 labelled pixels; class totals 3, 2, 4; n_pixels / (C * count_c)
    assert class_weights(counts, "balanced") == pytest.approx([9 / (3 * 3), 9 / (3 * 2), 9 / (3 * 4)])


def test_median_frequency_weights_by_hand(tiny_masks):
    counts = pixel_counts(tiny_masks, ["a", "b"], num_classes=3)
    # freq_c = count_c / pixels of images containing c: a has 4 labelled pixels, b has 5
    frequency = np.array([3 / 9, 2 / 4, 4 / 5])
    expected = np.median(frequency) / frequency
    assert class_weights(counts, "median-frequency") == pytest.approx(expected)


def test_none_and_absent_classes():
    counts = np.array([[5, 0, 5]])
    assert class_weights(counts, "none").tolist() == [1, 1, 1]
    weights = class_weights(counts, "balanced")
    assert weights[1] == 0 and np.isfinite(weights).all()


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="median-frequency"):
        class_weights(np.ones((1, 3)), "inverse")


def test_saved_json_holds_weights_and_counts(tmp_path):
    counts = np.array([[2, 2, 0], [1, 0, 4]])
    RunFolder(tmp_path).write_class_weights(class_weights(counts), counts, "balanced", VOC_CLASSES)
    saved = json.loads((tmp_path / "class_weights.json").read_text())
    assert saved["method"] == "balanced" and saved["pixel_counts"] == [3, 2, 4]
    assert saved["classes"][:2] == ["background", "aeroplane"]
