"""Small fastai callbacks, one behaviour each."""

from __future__ import annotations

from fastai.callback.core import Callback


class L1Regularization(Callback):
    """Adds `coef * sum(|w|)` over trainable parameters to the training loss (the seed's L1 term).

    It changes `loss_grad` (what `backward` sees) and `loss` (what is logged), training only.
    """

    order = 0

    def __init__(self, coef: float):
        self.coef = coef

    def after_loss(self) -> None:
        if not self.training or self.coef == 0:
            return
        penalty = self.coef * sum(p.abs().sum() for p in self.learn.model.parameters() if p.requires_grad)
        self.learn.loss_grad = self.learn.loss_grad + penalty
        self.learn.loss = self.learn.loss + penalty.detach()


class EpochOffset(Callback):
    """Numbers the epochs of a resumed fit from where the interrupted one stopped.

    fastai's own `start_epoch` replays skipped epochs through `after_epoch`, which breaks the
    trackers; a resumed run instead fits the remaining epochs and shifts their numbers.
    """

    order = -5  # before the Recorder (50), the trackers (60+) and the progress bar

    def __init__(self, offset: int):
        self.offset = offset

    def before_epoch(self) -> None:
        self.learn.epoch = self.learn.epoch + self.offset
