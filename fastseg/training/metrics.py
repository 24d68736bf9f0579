"""fastai `Metric`s reading one shared :class:`~fastseg.metrics.ConfusionMatrix` per epoch.

fastai's `DiceMulti`/`JaccardCoeffMulti` count void pixels, so they are not used. The metrics
returned by :func:`segmentation_metrics` share one matrix: the first resets and fills it, the
others only read it, so argmax and bincount run once per batch.
"""

from __future__ import annotations

from collections.abc import Callable

from fastai.learner import Metric

from fastseg.metrics import ConfusionMatrix, Scores, scores_from_matrix
from fastseg.training.ddp import real_items_in_batch


class ConfusionMatrixMetric(Metric):
    """One score of a shared confusion matrix; `owner` is the metric that accumulates."""

    def __init__(self, name: str, score: Callable[[Scores], float], matrix: ConfusionMatrix, owner: bool):
        self._name, self.score, self.matrix, self.owner = name, score, matrix, owner

    @property
    def name(self) -> str:
        return self._name

    def reset(self) -> None:
        if self.owner:
            self.matrix.reset()

    def accumulate(self, learn) -> None:  # noqa: ANN001 - a fastai Learner
        if self.owner:
            keep = real_items_in_batch(learn.dl, learn.pred.shape[0])  # no DDP padding repeats
            prediction = learn.pred[:keep].argmax(dim=1)
            self.matrix.update(prediction.detach(), learn.yb[0][:keep].detach())

    @property
    def value(self) -> float:
        # Under DDP each process holds its shard's counts: every process reports the whole set's score.
        return self.score(scores_from_matrix(self.matrix.summed_over_processes()))


def segmentation_metrics(num_classes: int) -> list[ConfusionMatrixMetric]:
    """`[pixel_accuracy, miou]` over non-void pixels, accumulated over the whole epoch."""
    matrix = ConfusionMatrix(num_classes)
    return [
        ConfusionMatrixMetric("pixel_accuracy", lambda s: s.pixel_accuracy, matrix, owner=True),
        ConfusionMatrixMetric("miou", lambda s: s.mean_iou, matrix, owner=False),
    ]
