"""One confusion matrix behind every number fastseg reports.

Training metrics, `fastseg report` and the per-image scores behind best/worst ranking all come
from :class:`ConfusionMatrix`, so they cannot disagree. Void pixels (255) never enter it; rows are
the truth, columns the prediction (torchvision's `references/segmentation` convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fastseg.imaging.masks import VOID_LABEL


@dataclass
class Scores:
    """Metrics of one confusion matrix. Per-class values are NaN for a class absent from both
    truth and prediction (no evidence either way), and such classes are left out of the means."""

    pixel_accuracy: float
    mean_class_accuracy: float
    mean_iou: float
    frequency_weighted_iou: float
    class_accuracy: list[float]
    class_iou: list[float]


class ConfusionMatrix:
    """Pixel counts `(C, C)`: `matrix[t, p]` pixels of true class t predicted as p."""

    def __init__(self, num_classes: int, ignore_index: int = VOID_LABEL):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self._summed: torch.Tensor | None = None

    def reset(self) -> None:
        self.matrix.zero_()
        self._summed = None

    @staticmethod
    def counts(
        prediction: torch.Tensor,
        target: torch.Tensor,
        num_classes: int,
        ignore_index: int = VOID_LABEL,
    ) -> torch.Tensor:
        """Counts `(C, C)` of class indices `prediction` vs `target` (any equal shapes), void left out."""
        target = target.reshape(-1).long()
        keep = (target != ignore_index) & (target >= 0) & (target < num_classes)
        flat = target[keep] * num_classes + prediction.reshape(-1)[keep].long()
        return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        self.add(self.counts(prediction, target, self.num_classes, self.ignore_index))

    def add(self, counts: torch.Tensor) -> None:
        """Add counts `(C, C)`, e.g. one image's, kept for its own score."""
        if self.matrix.device != counts.device:  # follow the data: no GPU->CPU sync per batch
            self.matrix = self.matrix.to(counts.device)
        self.matrix += counts
        self._summed = None

    def summed_over_processes(self) -> torch.Tensor:
        """The matrix summed over DDP processes (each holds its shard's), computed once per
        update; the matrix itself in a single process."""
        if self._summed is None:
            from fastseg.launch.processes import all_reduce_sum

            self._summed = all_reduce_sum(self.matrix)
        return self._summed

    def scores(self) -> Scores:
        return scores_from_matrix(self.matrix)


def _nanmean(values: torch.Tensor) -> float:
    kept = values[~torch.isnan(values)]
    return kept.mean().item() if kept.numel() else math.nan


def scores_from_matrix(matrix: torch.Tensor) -> Scores:
    """Pixel accuracy, class accuracy, IoU (per class and averaged) from counts `(C, C)`."""
    matrix = matrix.double().cpu()
    true_positive = matrix.diag()
    truth = matrix.sum(1)
    predicted = matrix.sum(0)
    total = matrix.sum()
    union = truth + predicted - true_positive
    nan = torch.full_like(true_positive, math.nan)
    class_accuracy = torch.where(truth > 0, true_positive / truth.clamp(min=1), nan)
    class_iou = torch.where(union > 0, true_positive / union.clamp(min=1), nan)
    present = union > 0
    frequency = truth / total if total > 0 else torch.zeros_like(truth)
    return Scores(
        pixel_accuracy=(true_positive.sum() / total).item() if total > 0 else math.nan,
        mean_class_accuracy=_nanmean(class_accuracy),
        mean_iou=_nanmean(class_iou),
        frequency_weighted_iou=(frequency[present] * class_iou[present]).sum().item()
        if total > 0
        else math.nan,
        class_accuracy=class_accuracy.tolist(),
        class_iou=class_iou.tolist(),
    )
