"""Training checkpoints that survive any crash, and resuming from them exactly where a run stopped.

fastai's `learn.save` and `SaveModelCallback` write straight onto `last.pth` / `best.pth`, so a
kill at the wrong moment destroyed the only resumable checkpoint, and `SaveModelCallback` reloads
the best epoch with `weights_only=False` (unpickling). Here every checkpoint goes through
`fastseg.atomic` (temporary file, fsync, rename: the old file or the new one, never half of
either), holds only tensors, lists and numbers, and is read back by the weights-only loader.

`last.pth` is the one commit point of a resumable run: it holds the model, the optimizer and the
progress (epochs done, the trackers' best score and patience counter) together, so they cannot
disagree; `last.json` mirrors the progress for people and tools, written after it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback
from fastai.learner import Learner
from fastai.torch_core import get_model, rank_distrib
from fastcore.foundation import L

from fastseg.atomic import atomic_path
from fastseg.errors import CheckpointError
from fastseg.model.checkpoint import load_weights_only
from fastseg.runs.folder import RunFolder

KIND = "fastseg training checkpoint"


def plain(value: Any) -> Any:
    """fastai's optimizer state as types `torch.load(weights_only=True)` reads: fastcore `L` and
    tuples become lists, numpy scalars (the one-cycle schedule's learning rates) Python numbers."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, L)):
        return [plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    return value


def save_checkpoint(
    learn: Learner, path: Path, with_opt: bool, progress: dict[str, Any] | None = None
) -> None:
    """`{"model", ["opt"], ["progress"]}` to `path`, atomically and durably; rank 0 only."""
    if rank_distrib():
        return
    state: dict[str, Any] = {"model": get_model(learn.model).state_dict()}
    if with_opt and learn.opt is not None:
        state["opt"] = plain(learn.opt.state_dict())
    if progress is not None:
        state["progress"] = plain(progress)
    with atomic_path(path, durable=True) as temporary:
        torch.save(state, temporary)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's dict, or one line naming the file and what to do. fastseg writes them
    atomically, so a damaged one was damaged afterwards (disk, copy, hand)."""
    hint = "restore it from a copy, or start the run again with --force"
    try:
        state = load_weights_only(path, KIND)
    except CheckpointError as error:
        raise CheckpointError(f"{error}; {hint}") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise CheckpointError(f"{path}: not a {KIND}; {hint}")
    return state


def load_checkpoint(learn: Learner, path: Path, with_opt: bool) -> dict[str, Any]:
    """Weights (and optimizer state) from `path` into `learn`; returns the saved progress."""
    state = read_checkpoint(path)
    try:
        get_model(learn.model).load_state_dict(state["model"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit this run's model ({first})") from None
    if with_opt:
        if "opt" not in state:
            raise CheckpointError(f"{path}: holds no optimizer state; start again with --force")
        if learn.opt is None:
            learn.create_opt()
        learn.opt.load_state_dict({"state": state["opt"]["state"], "hypers": L(state["opt"]["hypers"])})
    return dict(state.get("progress") or {})


class AtomicSaveModel(SaveModelCallback):
    """fastai's `SaveModelCallback` (best epoch by `monitor`, reloaded at the end of fit), writing
    `best.pth` atomically and reading it back weights-only. Its "Better model found" line is
    fastai's; `fastseg.training.run_log` decides where prints go."""

    def __init__(self, run: RunFolder, monitor: str):
        super().__init__(monitor=monitor, comp=np.greater, fname="best")
        self.folder = run  # not `run`: fastai's Callback.run says whether the callback runs

    @property
    def path(self) -> Path:
        return self.folder.checkpoint(self.fname)

    def _save(self, name: str) -> None:
        save_checkpoint(self.learn, self.folder.checkpoint(name), with_opt=False)
        self.last_saved_path = self.folder.checkpoint(name)

    def after_fit(self, **kwargs: Any) -> None:
        """The best epoch's weights; none saved (no epoch ever scored) keeps the last ones.
        Rank 0 alone: it alone exports them, and it may still be replacing `best.pth` when another
        rank gets here."""
        if rank_distrib():
            return
        if self.path.is_file():
            load_checkpoint(self.learn, self.path, with_opt=False)


class ResumableCheckpoint(Callback):
    """After every epoch: model + optimizer + progress to `last.pth`, mirrored in `last.json`.

    Runs after the trackers have updated their bests, so a resumed run continues with the same
    best score and patience counter.
    """

    order = 64

    def __init__(self, run: RunFolder):
        self.folder = run  # not `run`: fastai's Callback.run says whether the callback runs
        self.completed_epochs = 0

    def after_epoch(self) -> None:
        self.completed_epochs = self.learn.epoch + 1
        save_resumable(self.learn, self.folder, self.completed_epochs, *trackers(self.learn))


def save_resumable(
    learn: Learner,
    run: RunFolder,
    completed_epochs: int,
    early: EarlyStoppingCallback | None,
    saver: SaveModelCallback | None,
) -> None:
    """`last.pth` then `last.json`. The trackers are passed in rather than looked up: after
    Ctrl-C, fastai has already removed the callbacks given to `fit` from the Learner."""
    progress = {"completed_epochs": completed_epochs, **tracker_state(early, saver), **smoothing_state(learn)}
    save_checkpoint(learn, run.checkpoint("last"), with_opt=True, progress=progress)
    run.write_resume_state(progress)


SMOOTH_LOSS = "smooth_loss"  # a progress key: fastai's smoothed training loss, [value, batches]


def smoothing_state(learn: Learner) -> dict[str, Any]:
    """The Recorder's smoothed loss (the `train_loss` column): a moving average over every batch
    since the fit began, which a resumed fit would start afresh, logging other train_loss values
    than the uninterrupted run although every weight is the same (found by the kill -9 test)."""
    smooth = getattr(getattr(learn, "recorder", None), "smooth_loss", None)
    if smooth is None or not isinstance(getattr(smooth, "val", None), torch.Tensor):
        return {}
    return {SMOOTH_LOSS: [float(smooth.val), int(smooth.count)]}


WARMUP_EPOCHS = "warmup_epochs"  # a progress key only while the `--freeze-epochs` warm-up runs


class WarmUpCheckpoint(ResumableCheckpoint):
    """After every epoch of the decoder-only warm-up: `last.pth` and `last.json`, as
    `ResumableCheckpoint` writes them, with no main-schedule epoch done yet."""

    def __init__(self, run: RunFolder, completed_epochs: int = 0):
        super().__init__(run)
        self.completed_epochs = completed_epochs

    def after_epoch(self) -> None:
        self.completed_epochs = self.learn.epoch + 1
        save_warm_up(self.learn, self.folder, self.completed_epochs)


def save_warm_up(learn: Learner, run: RunFolder, warmup_epochs: int) -> None:
    """`last.pth` then `last.json` for a run still in its warm-up: no best score, no patience used."""
    progress = {"completed_epochs": 0, WARMUP_EPOCHS: warmup_epochs, "best": None, "wait": 0}
    save_checkpoint(learn, run.checkpoint("last"), with_opt=True, progress=progress)
    run.write_resume_state(progress)


def trackers(learn: Learner) -> tuple[EarlyStoppingCallback | None, SaveModelCallback | None]:
    """The Learner's early-stopping and model-saving trackers, found by type: fastai names them
    `learn.early_stopping` and `learn.save_model`, and a lookup by another name finds nothing."""
    early = next((cb for cb in learn.cbs if isinstance(cb, EarlyStoppingCallback)), None)
    saver = next((cb for cb in learn.cbs if isinstance(cb, SaveModelCallback)), None)
    return early, saver


def tracker_state(early: EarlyStoppingCallback | None, saver: SaveModelCallback | None) -> dict[str, Any]:
    """The best score so far (None before any epoch scored: not -inf, which JSON cannot hold)
    and the patience counter."""
    best = float(saver.best) if saver is not None and saver.best is not None else None
    return {
        "best": best if best is not None and math.isfinite(best) else None,
        "wait": int(getattr(early, "wait", 0)) if early is not None else 0,
    }


def resume_from_checkpoint(learn: Learner, run: RunFolder) -> dict[str, Any]:
    """Load `last.pth` into `learn` and check `best.pth` before any epoch is spent: a best model
    that cannot be read back would only fail at the very end. Returns the saved progress."""
    last = run.checkpoint("last")
    progress = load_checkpoint(learn, last, with_opt=True)
    if "completed_epochs" not in progress:
        raise CheckpointError(
            f"{last}: written by an earlier fastseg, without its progress; start again with --force"
        )
    best = run.checkpoint("best")
    if progress.get("best") is not None:
        if not best.is_file():
            raise CheckpointError(
                f"{best}: missing, but the run recorded a best epoch; start again with --force"
            )
        read_checkpoint(best)
    return progress


class ContinueIterationCount(Callback):
    """A resumed fit counts training iterations on from the epochs already done, not from 0.

    fastai resets `train_iter` in `before_fit` and skips the done epochs without counting them;
    the schedule does not use it (`schedule.RunScheduler` places batches by epoch), but the
    trackers' steps do:
    TensorBoard's curves of a resumed run went back to step 0 and overlapped the first part."""

    order = 0  # after TrainEvalCallback's reset (-10), before any batch is logged

    def __init__(self, start_epoch: int):
        self.start_epoch = start_epoch

    def before_fit(self) -> None:
        self.learn.train_iter = self.start_epoch * len(self.learn.dls.train)


class RestoreTrackers(Callback):
    """Puts a resumed run's best score and patience counter back after the trackers reset them."""

    order = 66  # after TrackerCallback (60), SaveModel (61), EarlyStopping (63) `before_fit`

    def __init__(self, best: float | None, wait: int, smooth_loss: Any = None):
        self.best, self.wait, self.smooth_loss = best, wait, smooth_loss

    def before_fit(self) -> None:
        early, saver = trackers(self.learn)
        if self.best is not None:
            for tracker in (early, saver):
                if tracker is not None:
                    tracker.best = self.best
        if early is not None:
            early.wait = self.wait
        smooth = self.smooth_loss  # [value, batches] as `smoothing_state` saved it; else it restarts
        valid = isinstance(smooth, (list, tuple)) and len(smooth) == 2 and type(smooth[1]) is int \
            and smooth[1] >= 0 and isinstance(smooth[0], float)  # fmt: skip
        if valid and hasattr(self.learn, "recorder"):  # after the Recorder's own before_fit reset
            self.learn.recorder.smooth_loss.val = torch.tensor(smooth[0], dtype=torch.float32)
            self.learn.recorder.smooth_loss.count = smooth[1]
