"""Small fastai callbacks, one behaviour each."""

from __future__ import annotations

import json
from pathlib import Path

from fastai.callback.core import Callback
from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback


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


class ResumableCheckpoint(Callback):
    """After every epoch: model + optimizer to `last.pth`, and the tracker state to `last.json`.

    Runs after `SaveModelCallback` and `EarlyStoppingCallback` have updated their bests, so a
    resumed run continues with the same best score and patience counter.
    """

    order = 64

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.completed_epochs = 0

    def after_epoch(self) -> None:
        self.completed_epochs = self.learn.epoch + 1
        save_resumable(self.learn, self.run_dir, self.completed_epochs, *trackers(self.learn))


def save_resumable(
    learn,  # noqa: ANN001 - a fastai Learner
    run_dir: Path,
    completed_epochs: int,
    early: EarlyStoppingCallback | None,
    saver: SaveModelCallback | None,
) -> None:
    """`last.pth` (model + optimizer) and `last.json` (epochs done, tracker state).

    The trackers are passed in rather than looked up: after Ctrl-C, fastai has already removed
    the callbacks given to `fit` from the Learner when the interrupted run is saved."""
    learn.save("last", with_opt=True)
    state = {"completed_epochs": completed_epochs, **tracker_state(early, saver)}
    write_json_atomic(Path(run_dir) / "last.json", state)


def trackers(learn) -> tuple[EarlyStoppingCallback | None, SaveModelCallback | None]:  # noqa: ANN001
    """The Learner's early-stopping and model-saving trackers, found by type: fastai names them
    `learn.early_stopping` and `learn.save_model`, and a lookup by another name finds nothing."""
    early = next((cb for cb in learn.cbs if isinstance(cb, EarlyStoppingCallback)), None)
    saver = next((cb for cb in learn.cbs if isinstance(cb, SaveModelCallback)), None)
    return early, saver


def tracker_state(early: EarlyStoppingCallback | None, saver: SaveModelCallback | None) -> dict:
    return {
        "best": float(saver.best) if saver is not None and saver.best is not None else None,
        "wait": int(getattr(early, "wait", 0)) if early is not None else 0,
    }


class RestoreTrackers(Callback):
    """Puts a resumed run's best score and patience counter back after the trackers reset them."""

    order = 66  # after TrackerCallback (60), SaveModel (61), EarlyStopping (63) `before_fit`

    def __init__(self, best: float | None, wait: int):
        self.best, self.wait = best, wait

    def before_fit(self) -> None:
        early, saver = trackers(self.learn)
        if self.best is not None:
            for tracker in (early, saver):
                if tracker is not None:
                    tracker.best = self.best
        if early is not None:
            early.wait = self.wait


def write_json_atomic(path: Path, values: dict) -> None:
    """Write JSON through a temporary file and a rename, so a crash never leaves half a file."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(values, indent=1))
    temporary.replace(path)
