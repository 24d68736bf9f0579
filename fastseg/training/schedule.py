"""One-cycle fitting that can resume mid-schedule.

The defaults match the seed's `torch.optim.lr_scheduler.OneCycleLR` (pct_start 0.3, initial lr
max/25, final lr initial/1e4, momentum cycled 0.95 -> 0.85 -> 0.95) rather than fastai's own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
from fastai.callback.core import Callback
from fastai.callback.schedule import ParamScheduler, combined_cos

from fastseg.training.callbacks import EpochOffset


def _tail(schedule: Callable[[float], float], start: float, pct: float) -> float:
    return schedule(start + pct * (1 - start))


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
) -> None:
    """`learn.fit_one_cycle`, but epochs `[start_epoch, n_epoch)` of the schedule only.

    `lr_max` may be a `slice(encoder, decoder)`: fastai spreads it over the parameter groups and
    every group follows the same one-cycle shape from its own peak."""
    if learn.opt is None:
        learn.create_opt()
    learn.opt.set_hyper("lr", lr_max)
    lr = np.array([hyper["lr"] for hyper in learn.opt.hypers])
    start = start_epoch / n_epoch
    schedules = {
        "lr": combined_cos(pct_start, lr / div, lr, lr / div_final),
        "mom": combined_cos(pct_start, *moms),
    }
    schedules = {name: partial(_tail, schedule, start) for name, schedule in schedules.items()}
    callbacks = [ParamScheduler(schedules), *cbs]
    if start_epoch:
        callbacks.append(EpochOffset(start_epoch))
    learn.fit(n_epoch - start_epoch, wd=wd, cbs=callbacks)
