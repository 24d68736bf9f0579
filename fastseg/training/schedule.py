"""One-cycle fitting that can resume mid-schedule, exactly.

The defaults match the seed's `torch.optim.lr_scheduler.OneCycleLR` (pct_start 0.3, initial lr
max/25, final lr initial/1e4, momentum cycled 0.95 -> 0.85 -> 0.95) rather than fastai's own.

A resumed run fits only the epochs left, numbered on from where the interrupted run stopped
(`resume.EpochOffset`). fastai's `ParamScheduler` reads `pct_train`, which `TrainEvalCallback` sets to
`epoch / n_epoch` of the current fit: with a shifted epoch and a shorter fit that is neither the
resumed fit's position nor the run's, and a run resumed after epoch 0 of 4 trained epoch 1 at
the lr of epoch 2 (issue #19). `RunScheduler` places every batch by its position in the whole
run instead, the same number whether the run was interrupted or not; `SeededEpochs` makes each
epoch's data order and augmentation a function of (seed, epoch), so the resumed run also sees
the same batches and ends with the same weights.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence

import numpy as np
from fastai.callback.core import Callback
from fastai.callback.schedule import ParamScheduler, combined_cos
from fastai.torch_core import set_seed

from fastseg.training.resume import EpochOffset, KeptGlobalBatch


class RunScheduler(ParamScheduler):
    """fastai's `ParamScheduler`, at position `(epoch + batch / batches) / total_epochs` of the run.

    Where a step adds up the gradients of several batches (`resume.KeptGlobalBatch`: a run resumed
    under fewer processes), every batch of a step is placed at the step's first batch: the step
    then takes the rate the run's own step took there, not the rate of its last batch (half a
    step late with two batches a step: 3.5 times the first step's rate, a quarter of the last's)."""

    def __init__(self, schedules: dict, total_epochs: int):
        super().__init__(schedules)
        self.total_epochs = total_epochs

    def before_fit(self) -> None:
        super().before_fit()
        kept = [callback.steps for callback in self.learn.cbs if isinstance(callback, KeptGlobalBatch)]
        self.batches_a_step = kept[0] if kept else 1  # looked up once, not before every batch

    def before_batch(self) -> None:
        first = self.learn.iter - self.learn.iter % self.batches_a_step
        self._update_val((self.learn.epoch + first / self.learn.n_iter) / self.total_epochs)


class SeededEpochs(Callback):
    """Seeds Python, NumPy, torch and the training loader's shuffle from (seed, phase, epoch)
    before every epoch: loader workers take their seeds from torch's, so they follow too."""

    run_after = EpochOffset  # seeds from the run's epoch number, not the fit's
    order = EpochOffset.order + 1  # still before any callback of the default order (0)

    def __init__(self, seed: int, phase: str = "main"):
        self.seed, self.phase = seed, phase

    def before_epoch(self) -> None:
        epoch_seed = zlib.crc32(f"{self.seed}/{self.phase}/{self.learn.epoch}".encode())
        set_seed(epoch_seed)
        self.learn.dls.train.rng = random.Random(epoch_seed)


def fit_one_cycle(
    learn,  # noqa: ANN001 - a fastai Learner
    n_epoch: int,
    lr_max: float | slice,
    start_epoch: int = 0,
    wd: float | None = None,
    pct_start: float = 0.3,
    div: float = 25.0,
    div_final: float = 25.0 * 1e4,
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95),
    cbs: Sequence[Callback] = (),
    seed: int | None = None,
    phase: str = "main",
) -> None:
    """`learn.fit_one_cycle`, but epochs `[start_epoch, n_epoch)` of the schedule only.

    `lr_max` may be a `slice(encoder, decoder)`: fastai spreads it over the parameter groups and
    every group follows the same one-cycle shape from its own peak. With `seed`, each epoch's
    randomness is seeded from (seed, `phase`, epoch)."""
    if learn.opt is None:
        learn.create_opt()
    learn.opt.set_hyper("lr", lr_max)
    lr = np.array([hyper["lr"] for hyper in learn.opt.hypers])
    schedules = {
        "lr": combined_cos(pct_start, lr / div, lr, lr / div_final),
        "mom": combined_cos(pct_start, *moms),
    }
    callbacks = [RunScheduler(schedules, n_epoch), *cbs]
    if start_epoch:
        callbacks.append(EpochOffset(start_epoch))
    if seed is not None:
        callbacks.append(SeededEpochs(seed, phase))
    learn.fit(n_epoch - start_epoch, wd=wd, cbs=callbacks)
