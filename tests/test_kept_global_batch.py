"""A run resumed under fewer processes adds up several batches' gradients a step
(`resume.KeptGlobalBatch`): each step must be the step the run took with its whole batch, in its
gradient and in its learning rate and momentum (`schedule.RunScheduler`)."""

from __future__ import annotations

import pytest
import torch
from fastai.callback.core import Callback
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.learner import Learner
from fastai.optimizer import SGD
from torch import nn

from fastseg.training.resume import KeptGlobalBatch
from fastseg.training.schedule import fit_one_cycle


class Steps(Callback):
    """The learning rate and momentum each optimiser step ran with."""

    def __init__(self):
        self.hypers = []

    def after_step(self):
        hyper = self.opt.hypers[0]
        self.hypers.append((hyper["lr"], hyper["mom"]))


def fitted(batch_size: int, steps: int, items: int, one_cycle: bool):
    """A linear model fitted 2 epochs on `items` fixed pairs, batches of `batch_size`, `steps`
    batches a step; its weights and each step's (lr, momentum)."""
    generator = torch.Generator().manual_seed(0)
    pairs = list(zip(torch.randn(items, 3, generator=generator), torch.randn(items, 1, generator=generator),
                     strict=True))  # fmt: skip
    torch.manual_seed(1)
    model = nn.Linear(3, 1)
    loaders = DataLoaders(DataLoader(pairs, bs=batch_size, shuffle=False, drop_last=True),
                          DataLoader(pairs, bs=batch_size))  # fmt: skip
    recorded = Steps()
    callbacks = [recorded, *([KeptGlobalBatch(batch_size, steps)] if steps > 1 else [])]
    learn = Learner(loaders, model, loss_func=nn.MSELoss(), opt_func=SGD, lr=0.1)
    with learn.no_bar(), learn.no_logging():
        if one_cycle:
            fit_one_cycle(learn, 2, 0.1, cbs=callbacks)
        else:
            learn.fit(2, cbs=callbacks)
    return model.weight.detach().clone(), recorded.hypers


@pytest.mark.parametrize("items", [16, 10])  # 10: an unfinished step at each epoch's end, dropped
def test_two_batches_a_step_give_the_gradient_of_their_sum(items):
    whole, whole_steps = fitted(4, 1, items, one_cycle=False)
    added, added_steps = fitted(2, 2, items, one_cycle=False)
    assert len(added_steps) == len(whole_steps) == 2 * (items // 4)
    torch.testing.assert_close(added, whole, rtol=1e-6, atol=1e-7)


def test_each_step_takes_the_rate_and_momentum_of_the_runs_own_step():
    """The rates were set before every batch, so a step took its last batch's: with two a step the
    first step ran at 3.5 times the run's rate and the last at a quarter of it."""
    whole, whole_hypers = fitted(4, 1, 16, one_cycle=True)
    added, added_hypers = fitted(2, 2, 16, one_cycle=True)
    assert len(added_hypers) == len(whole_hypers) == 8
    for (lr, mom), (expected_lr, expected_mom) in zip(added_hypers, whole_hypers, strict=True):
        assert lr == pytest.approx(expected_lr, rel=1e-9) and mom == pytest.approx(expected_mom, rel=1e-9)
    torch.testing.assert_close(added, whole, rtol=1e-5, atol=1e-6)
