import pytest
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.learner import Learner
from torch import nn

from fastseg.training.callbacks import L1Regularization


def tiny_learner(coef: float) -> Learner:
    torch.manual_seed(0)
    x = torch.randn(8, 3)
    data = list(zip(x, x.sum(1, keepdim=True), strict=True))
    dls = DataLoaders(DataLoader(data, bs=8), DataLoader(data, bs=8), device="cpu")
    return Learner(dls, nn.Linear(3, 1), loss_func=nn.MSELoss(), cbs=[L1Regularization(coef)])


class RecordLoss(Callback):
    """Captures the loss right after L1 (order 0) has run."""

    order = 1

    def after_loss(self):
        if self.training:
            self.learn.seen = (self.learn.loss_grad.item(), self.learn.loss.item())
            raise CancelFitException()


@pytest.mark.parametrize("coef", [0.0, 1e-2])
def test_l1_adds_exactly_coef_times_sum_of_abs_weights(coef):
    learn = tiny_learner(coef)
    model = learn.model
    x, y = learn.dls.train.one_batch()
    with torch.no_grad():
        plain = nn.functional.mse_loss(model(x), y).item()
        penalty = sum(p.abs().sum() for p in model.parameters()).item()
    learn.fit(1, lr=0.0, cbs=[RecordLoss()])
    loss_grad, loss = learn.seen
    assert loss_grad == pytest.approx(plain + coef * penalty, rel=1e-6)
    assert loss == pytest.approx(loss_grad, rel=1e-6)
