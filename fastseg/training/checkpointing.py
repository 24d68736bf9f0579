"""Resumable training: the checkpoint written after every epoch, and the trackers' state put back
when a run resumes, so an interrupted run continues exactly where it stopped."""

from __future__ import annotations

from fastai.callback.core import Callback
from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback

from fastseg.runs.folder import LAST, RunFolder


class ResumableCheckpoint(Callback):
    """After every epoch: model + optimizer to `last.pth`, and the tracker state to `last.json`.

    Runs after `SaveModelCallback` and `EarlyStoppingCallback` have updated their bests, so a
    resumed run continues with the same best score and patience counter.
    """

    order = 64

    def __init__(self, run: RunFolder):
        self.run = run
        self.completed_epochs = 0

    def after_epoch(self) -> None:
        self.completed_epochs = self.learn.epoch + 1
        save_resumable(self.learn, self.run, self.completed_epochs, *trackers(self.learn))


def save_resumable(
    learn,  # noqa: ANN001 - a fastai Learner
    run: RunFolder,
    completed_epochs: int,
    early: EarlyStoppingCallback | None,
    saver: SaveModelCallback | None,
) -> None:
    """`last.pth` (model + optimizer) and `last.json` (epochs done, tracker state).

    The trackers are passed in rather than looked up: after Ctrl-C, fastai has already removed
    the callbacks given to `fit` from the Learner when the interrupted run is saved."""
    learn.save(LAST, with_opt=True)
    run.write_resume_state({"completed_epochs": completed_epochs, **tracker_state(early, saver)})


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
