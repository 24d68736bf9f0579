"""Small fastai callbacks, one behaviour each."""

from __future__ import annotations

from fastai.callback.core import Callback
from fastai.callback.fp16 import MixedPrecision


class L1Regularization(Callback):
    """Adds `coef * sum(|w|)` over trainable parameters to the training loss (the seed's L1 term).

    It changes `loss_grad` (what `backward` sees) and `loss` (what is logged), training only.
    """

    # No `order` of its own: fastai's default (0) runs it before MixedPrecision (GPU runs), whose
    # after_loss closes the autocast block the loss was computed in and whose before_backward
    # scales `loss_grad`, so the penalty joins the loss first.
    run_before = MixedPrecision

    def __init__(self, coef: float):
        self.coef = coef

    def after_loss(self) -> None:
        if not self.training or self.coef == 0:
            return
        penalty = self.coef * sum(p.abs().sum() for p in self.learn.model.parameters() if p.requires_grad)
        self.learn.loss_grad = self.learn.loss_grad + penalty
        self.learn.loss = self.learn.loss + penalty.detach()
