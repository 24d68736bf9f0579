"""Resuming a run exactly where it stopped: everything a resumed fit saves, puts back and shifts.

`last.pth` is the one commit point of a resumable run: it holds the model, the optimizer and the
progress (epochs done, the trackers' best score and patience counter, the smoothed training
loss) together, so they cannot disagree; `last.json` mirrors the progress for people and tools,
written after it (both through the run folder). A resumed run fits only the epochs left:

- `ResumableCheckpoint` writes them after every epoch and on Ctrl-C (`saved_on_interrupt`), in
  the decoder-only warm-up as in the main schedule, and puts the saved progress back when a
  resumed fit begins, after fastai's own callbacks have reset it;
- `EpochOffset` numbers the fit's epochs on from where the interrupted fit stopped;
- `schedule.RunScheduler` places every batch by its position in the whole run and
  `schedule.SeededEpochs` seeds each epoch from its number, so the resumed run trains the same
  batches at the same learning rates as an uninterrupted one (issue #19);
- the run folder keeps `history.csv`'s rows of the epochs done (`epoch_records.HistoryLogger`).

fastai 2.8 calls callbacks sorted by `order` alone. Each callback here names the fastai callback
it must follow or precede in `run_after` / `run_before` (fastai's vocabulary, as its
`DistributedTrainer` uses it) and takes its `order` from that neighbour's;
tests/test_training_structure.py checks that every fastseg callback's `order` agrees with them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from fastai.callback.core import Callback, TrainEvalCallback
from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback
from fastai.callback.training import GradientAccumulation
from fastai.learner import Learner, Recorder

from fastseg.errors import CheckpointError, FastsegError
from fastseg.runs.folder import BEST, CONFIG, LAST, LAST_STATE, RunFolder
from fastseg.training.checkpointing import load_checkpoint, plain, read_checkpoint, save_checkpoint
from fastseg.training.config import TrainConfig

COMPLETED_EPOCHS = "completed_epochs"  # progress key: main-schedule epochs done
WARMUP_EPOCHS = "warmup_epochs"  # a progress key only while the `--freeze-epochs` warm-up runs
SMOOTH_LOSS = "smooth_loss"  # a progress key: fastai's smoothed training loss, [value, batches]
TRAINED_WITH = "trained_with"  # a key of last.pth's progress: the options that shaped what was trained
# a progress key: the processes config.json's per-process batch_size was for (the run's first
# launch), so a resume under another count knows the run's global batch (`trainer.kept_global_batch`)
PROCESSES = "processes"
# Options that do not change what is trained: a resume may find the data set moved, or run on
# another device with other loader workers, trackers or compilation
RESUME_MAY_CHANGE = ("data", "out", "device", "num_workers", "trackers", "compile")


class TrainingInterrupted(FastsegError):
    """Ctrl-C during training; a resumable checkpoint was saved."""


class EpochOffset(Callback):
    """Numbers the epochs of a resumed fit from where the interrupted one stopped.

    fastai's own `start_epoch` replays skipped epochs through `after_epoch`, which breaks the
    trackers; a resumed run instead fits the remaining epochs and shifts their numbers.
    """

    run_after, run_before = TrainEvalCallback, Recorder
    # Right after TrainEvalCallback, which numbers the fit's epochs from 0, and before any
    # callback of fastai's default order (0): every before_epoch sees the run's epoch number, the
    # Recorder's (which writes it into the epoch column) and `schedule.SeededEpochs` (next) too.
    order = TrainEvalCallback.order + 5

    def __init__(self, offset: int):
        self.offset = offset

    def before_epoch(self) -> None:
        self.learn.epoch = self.learn.epoch + self.offset


class ResumableCheckpoint(Callback):
    """After every epoch, model + optimizer + progress to `last.pth`, mirrored in `last.json`; at
    the start of a resumed fit (`resumed`: the saved progress), that progress put back.

    - `early`, `saver`: the fit's trackers, whose best score and patience counter are saved and
      restored (held here: after Ctrl-C fastai has already removed them from the Learner).
    - `warm_up`: the decoder-only warm-up's fit, whose epochs are counted apart
      (`warmup_epochs`), with no main-schedule epoch done, no best score and no patience used.
    - `writes`: False on the other processes of a multi-process run, which only restore (not
      `save`, which would shadow `Learner.save` in fastai's attribute lookup).
    """

    run_after = (TrainEvalCallback, Recorder, SaveModelCallback, EarlyStoppingCallback)
    # After EarlyStoppingCallback, the last of fastai's trackers. In before_fit fastai resets the
    # iteration count (TrainEvalCallback), the smoothed loss (Recorder) and the trackers' best and
    # patience, which a resumed fit puts back afterwards; in after_epoch the trackers update their
    # best and patience, which are saved afterwards.
    order = EarlyStoppingCallback.order + 1

    def __init__(self, run: RunFolder, start_epoch: int = 0, early: EarlyStoppingCallback | None = None,
                 saver: SaveModelCallback | None = None, resumed: dict[str, Any] | None = None,
                 warm_up: bool = False, writes: bool = True, config: TrainConfig | None = None,
                 processes: int | None = None):  # fmt: skip
        self.trained_with = None if config is None else trained_with(config)
        self.processes = processes  # PROCESSES: the run's, not this launch's, when they differ
        self.folder = run  # not `run`: fastai's Callback.run says whether the callback runs
        # the epochs done so far: a Ctrl-C before this fit's first epoch ends keeps the resumed
        # run's count (it saved 0, and the next resume retrained done epochs on trained weights)
        self.completed_epochs = start_epoch
        self.early, self.saver, self.resumed = early, saver, resumed
        self.warm_up, self.writes = warm_up, writes
        self.restored = False

    def before_fit(self) -> None:
        if not self.resumed:
            return
        self.restored = True
        # TensorBoard's steps go on from the epochs already done, not from 0 (fastai resets
        # `train_iter` and would count the resumed fit's batches from the start)
        start_epoch = int(self.resumed.get(COMPLETED_EPOCHS, 0))
        self.learn.train_iter = start_epoch * len(self.learn.dls.train)
        best, wait = self.resumed.get("best"), int(self.resumed.get("wait", 0))
        if best is not None:
            for tracker in (self.early, self.saver):
                if tracker is not None:
                    tracker.best = best
        if self.early is not None:
            self.early.wait = wait
        smooth = self.resumed.get(SMOOTH_LOSS)  # [value, batches] as `smoothing_state` saved it
        valid = isinstance(smooth, (list, tuple)) and len(smooth) == 2 and type(smooth[1]) is int \
            and smooth[1] >= 0 and isinstance(smooth[0], float)  # fmt: skip
        if valid and hasattr(self.learn, "recorder"):  # else it restarts
            self.learn.recorder.smooth_loss.val = torch.tensor(smooth[0], dtype=torch.float32)
            self.learn.recorder.smooth_loss.count = smooth[1]

    def after_epoch(self) -> None:
        self.completed_epochs = self.learn.epoch + 1
        if self.writes:
            self.write(self.learn, self.completed_epochs)

    def interrupted_epoch(self, learn: Learner) -> int:
        """The epoch of the run a Ctrl-C stopped, which resuming redoes: mid-epoch, `learn.epoch`;
        before this fit's first epoch has begun (fastai counts each fit from 0, and `EpochOffset`
        shifts it only in `before_epoch`), the first epoch not done."""
        return max(learn.epoch, self.completed_epochs)

    def save_interrupted(self, learn: Learner) -> None:
        """Ctrl-C: progress up to the interrupted epoch. `learn` is passed in: fastai has removed
        this callback from it by now."""
        if self.writes:
            self.write(learn, self.interrupted_epoch(learn))

    def write(self, learn: Learner, completed_epochs: int) -> None:
        """`last.pth` then `last.json`."""
        if self.warm_up:
            progress = {COMPLETED_EPOCHS: 0, WARMUP_EPOCHS: completed_epochs, "best": None, "wait": 0}
        elif self.resumed and not self.restored:  # Ctrl-C before before_fit put the progress back:
            kept = {"best": self.resumed.get("best"), "wait": int(self.resumed.get("wait", 0))}
            smooth = self.resumed.get(SMOOTH_LOSS)  # fastai has reset the trackers and the Recorder
            progress = {COMPLETED_EPOCHS: completed_epochs, **kept}
            progress.update({SMOOTH_LOSS: smooth} if smooth is not None else {})
        else:
            progress = {COMPLETED_EPOCHS: completed_epochs, **tracker_state(self.early, self.saver),
                        **smoothing_state(learn)}  # fmt: skip
        if self.processes is not None:
            progress[PROCESSES] = self.processes
        recorded = progress if self.trained_with is None else {**progress, TRAINED_WITH: self.trained_with}
        save_checkpoint(learn, self.folder, LAST, with_opt=True, progress=recorded)
        self.folder.write_resume_state(progress)


@contextmanager
def saved_on_interrupt(learn: Learner, checkpoint: ResumableCheckpoint, where: str) -> Iterator[None]:
    """Ctrl-C during the block: a resumable checkpoint, then `TrainingInterrupted` saying how to
    continue. `where` names the phase, with `{epoch}` for the epoch of the run it stopped in
    (the one the checkpoint resumes at, also before a resumed fit's first epoch)."""
    try:
        yield
    except KeyboardInterrupt:
        checkpoint.save_interrupted(learn)
        raise TrainingInterrupted(
            f"interrupted {where.format(epoch=checkpoint.interrupted_epoch(learn))}; checkpoint saved, "
            f"continue with: fastseg train --resume {checkpoint.folder.path}"
        ) from None


def smoothing_state(learn: Learner) -> dict[str, Any]:
    """The Recorder's smoothed loss (the `train_loss` column): a moving average over every batch
    since the fit began, which a resumed fit would start afresh, logging other train_loss values
    than the uninterrupted run although every weight is the same (found by the kill -9 test)."""
    smooth = getattr(getattr(learn, "recorder", None), "smooth_loss", None)
    if smooth is None or not isinstance(getattr(smooth, "val", None), torch.Tensor):
        return {}
    return {SMOOTH_LOSS: [float(smooth.val), int(smooth.count)]}


def tracker_state(early: EarlyStoppingCallback | None, saver: SaveModelCallback | None) -> dict[str, Any]:
    """The best score so far (None before any epoch scored: not -inf, which JSON cannot hold)
    and the patience counter."""
    best = float(saver.best) if saver is not None and saver.best is not None else None
    return {
        "best": best if best is not None and math.isfinite(best) else None,
        "wait": int(getattr(early, "wait", 0)) if early is not None else 0,
    }


class KeptGlobalBatch(GradientAccumulation):
    """A run resumed under fewer processes than it started with: each process adds up the
    gradients of `steps` of its batches before the optimiser steps, so every step's gradient
    still averages the run's global batch (and an epoch takes the run's number of steps, at its
    learning rates: `schedule.RunScheduler` places a step's batches at its first), in each
    process's memory as before. BatchNorm's statistics cover one batch at a time, fewer images
    than the run's step: such a resume is close to the run, not bit for bit. fastai's
    `GradientAccumulation`, whose count also went on across epochs: a partial count left at an
    epoch's end is dropped, as `last.pth` (written then) cannot hold it."""

    def __init__(self, batch_size: int, steps: int):
        super().__init__(n_acc=batch_size * steps)
        self.steps = steps

    def before_train(self) -> None:
        self.count = 0
        self.learn.opt.zero_grad()


def run_processes(run: RunFolder) -> int | None:
    """The processes the run's config.json batch_size is per (`PROCESSES` in last.json, which
    mirrors last.pth); None for a checkpoint of an earlier fastseg, which did not record them."""
    processes = run.read_resume_state().get(PROCESSES)
    if processes is None:
        return None
    if type(processes) is not int or processes < 1:
        raise FastsegError(f"{run.file(LAST_STATE)}: processes must be a whole number >= 1, got "
                           f"{processes!r}; restore the file or start a new run")  # fmt: skip
    return processes


def finished_model(run: RunFolder) -> Path | None:
    """The model of a run that already finished (`last.json` says so), None for one still to
    resume (or without `last.json`: `RunFolder.check_can_start` says why it cannot resume).
    Resuming a finished run is not a mistake (a script that retries after a crash resumes twice):
    its caller says where the model is and changes nothing. A finished run whose `model.pth` has
    gone since is a `FastsegError`: there is nothing to point at, and nothing left to resume."""
    if not run.file(LAST_STATE).is_file() or not run.read_resume_state().get("finished"):
        return None
    if not run.model.is_file():
        raise FastsegError(f"{run.path}: this run already finished, but its {run.model.name} is missing; "
                           "start a new run with --out")  # fmt: skip
    return run.model


def trained_with(config: TrainConfig) -> dict[str, Any]:
    """The options of `config` that shape what is trained (all but `RESUME_MAY_CHANGE`), as
    plain values (lists, not tuples): what `last.pth` records and a resume compares."""
    values = {key: value for key, value in config.to_dict().items() if key not in RESUME_MAY_CHANGE}
    return plain(values)


def changed_since_checkpoint(recorded: Any, config: TrainConfig) -> list[str]:
    """`name before -> now` for each option `config` (config.json, today) changed since the
    checkpoint recorded them (`recorded`); [] for a checkpoint of an earlier fastseg without them."""
    if not isinstance(recorded, dict):
        return []
    now = trained_with(config)
    flat = {}
    for values, into in ((recorded, "before"), (now, "now")):
        for key, value in values.items():
            items = value.items() if key == "augment" and isinstance(value, dict) else [(None, value)]
            for inner, item in items:
                flat.setdefault(key if inner is None else f"augment.{inner}", {})[into] = item
    return [f"{name} {pair.get('before')!r} -> {pair.get('now')!r}".replace("'", "")
            for name, pair in flat.items() if pair.get("before") != pair.get("now")]  # fmt: skip


def resume_from_checkpoint(
    learn: Learner, run: RunFolder, freeze_epochs: int, config: TrainConfig | None = None
) -> tuple[dict[str, Any], int]:
    """Load `last.pth` into `learn` and check `best.pth` before any epoch is spent: a best model
    that cannot be read back would only fail at the very end. With `config` (the run's
    config.json today), a config.json edited since the checkpoint is refused: the resumed run
    would train other epochs, sizes or rates than the ones it started with, as if it had always
    been so. Returns the saved progress of the main schedule and the warm-up epochs done (a
    progress without them: the warm-up was over)."""
    last = run.checkpoint(LAST)
    progress = load_checkpoint(learn, last, with_opt=True)
    changed = changed_since_checkpoint(progress.pop(TRAINED_WITH, None), config) if config else []
    if changed:
        raise CheckpointError(
            f"{run.file(CONFIG)}: changed since {last.name} was saved ({'; '.join(changed)}); a resumed "
            "run trains what it started with: restore those values, or start a new run with --config"
        )
    if COMPLETED_EPOCHS not in progress:
        raise CheckpointError(
            f"{last}: written by an earlier fastseg, without its progress; start again with --force"
        )
    best = run.checkpoint(BEST)
    if progress.get("best") is not None:
        if not best.is_file():
            raise CheckpointError(
                f"{best}: missing, but the run recorded a best epoch; start again with --force"
            )
        read_checkpoint(best)
    warmed_up = int(progress.pop(WARMUP_EPOCHS, freeze_epochs))
    return progress, warmed_up
