import math

import numpy as np
import pytest
import torch

from fastseg.metrics import ConfusionMatrix, scores_from_matrix
from fastseg.training.metrics import segmentation_metrics

V = 255


def test_counts_by_hand_with_void_left_out():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, V, V]])
    prediction = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 1]])
    counts = ConfusionMatrix.counts(prediction, target, num_classes=3)
    expected = torch.tensor([[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    assert torch.equal(counts, expected)
    assert counts.sum() == 6  # the two void pixels are not counted


def test_scores_by_hand():
    # truth rows, prediction columns. class 0: 1 right, 1 as class 1; class 1: 2 right;
    # class 2: 1 right, 1 as class 0
    scores = scores_from_matrix(torch.tensor([[1, 1, 0], [0, 2, 0], [1, 0, 1]]))
    assert scores.pixel_accuracy == pytest.approx(4 / 6)
    assert scores.class_accuracy == pytest.approx([1 / 2, 2 / 2, 1 / 2])
    # IoU = TP / (truth + predicted - TP)
    assert scores.class_iou == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert scores.mean_iou == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert scores.mean_class_accuracy == pytest.approx(2 / 3)
    expected_fw_iou = (2 / 6) * (1 / 3) + (2 / 6) * (2 / 3) + (2 / 6) * (1 / 2)
    assert scores.frequency_weighted_iou == pytest.approx(expected_fw_iou)


def test_absent_class_is_nan_and_left_out_of_means():
    scores = scores_from_matrix(torch.tensor([[3, 0, 0], [1, 1, 0], [0, 0, 0]]))
    assert math.isnan(scores.class_iou[2]) and math.isnan(scores.class_accuracy[2])
    assert scores.mean_iou == pytest.approx((3 / 4 + 1 / 2) / 2)


def test_predicted_but_absent_class_counts_as_zero_iou():
    scores = scores_from_matrix(torch.tensor([[2, 0, 1], [0, 1, 0], [0, 0, 0]]))
    assert scores.class_iou[2] == 0.0
    assert scores.mean_iou == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_update_accumulates_over_batches():
    matrix = ConfusionMatrix(num_classes=3)
    target = torch.tensor([0, 1, 2, V])
    matrix.update(torch.tensor([0, 1, 1, 0]), target)
    matrix.update(torch.tensor([0, 1, 2, 2]), target)
    assert matrix.matrix.sum() == 6
    assert matrix.matrix[2].tolist() == [0, 1, 1]
    matrix.reset()
    assert matrix.matrix.sum() == 0


class FakeLearn:
    def __init__(self, logits, target):
        self.pred, self.yb, self.dl = logits, (target,), None


def test_fastai_metrics_share_one_matrix_over_an_epoch():
    pixel_accuracy, miou = segmentation_metrics(num_classes=3)
    target = torch.tensor([[[0, 1], [2, V]]])
    perfect = torch.nn.functional.one_hot(torch.tensor([[[0, 1], [2, 0]]]), 3).permute(0, 3, 1, 2).float()
    wrong = torch.nn.functional.one_hot(torch.tensor([[[1, 1], [1, 1]]]), 3).permute(0, 3, 1, 2).float()
    for metric in (pixel_accuracy, miou):
        metric.reset()
    for logits in (perfect, wrong):
        for metric in (pixel_accuracy, miou):
            metric.accumulate(FakeLearn(logits, target))
    # 6 labelled pixels: 3 right in the first batch, 1 right (class 1) in the second
    assert pixel_accuracy.value == pytest.approx(4 / 6)
    expected = scores_from_matrix(torch.tensor([[1, 1, 0], [0, 2, 0], [0, 1, 1]])).mean_iou
    assert miou.value == pytest.approx(expected)
    assert [pixel_accuracy.name, miou.name] == ["pixel_accuracy", "miou"]
    assert np.isfinite(miou.value)
