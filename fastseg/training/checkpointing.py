"""Training checkpoints that survive any crash: what `best.pth` and `last.pth` hold, and the best
epoch's tracker. Resuming from `last.pth` is `fastseg.training.resume`'s.

fastai's `learn.save` and `SaveModelCallback` write straight onto `last.pth` / `best.pth`, so a
kill at the wrong moment destroyed the only resumable checkpoint, and `SaveModelCallback` reloads
the best epoch with `weights_only=False` (unpickling). Here every checkpoint is written by the run
folder (`RunFolder.write_checkpoint`: temporary file, fsync, rename, the old file or the new one,
never half of either), holds only tensors, lists and numbers, and is read back by the
weights-only loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastai.callback.tracker import SaveModelCallback
from fastai.learner import Learner
from fastai.torch_core import get_model, rank_distrib
from fastcore.foundation import L

from fastseg.errors import CheckpointError, first_line
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
    learn: Learner, run: RunFolder, name: str, with_opt: bool, progress: dict[str, Any] | None = None
) -> None:
    """`{"model", ["opt"], ["progress"]}` to the run's `name`.pth, atomically and durably; rank 0 only."""
    if rank_distrib():
        return
    state: dict[str, Any] = {"model": get_model(learn.model).state_dict()}
    if with_opt and learn.opt is not None:
        state["opt"] = plain(learn.opt.state_dict())
    if progress is not None:
        state["progress"] = plain(progress)
    run.write_checkpoint(name, state)


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
        first = first_line(error)  # an empty message: the type, not an IndexError
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
    fastai's; `fastseg.training.reporting` decides where prints go."""

    def __init__(self, run: RunFolder, monitor: str):
        super().__init__(monitor=monitor, comp=np.greater, fname="best")
        self.folder = run  # not `run`: fastai's Callback.run says whether the callback runs

    @property
    def path(self) -> Path:
        return self.folder.checkpoint(self.fname)

    def _save(self, name: str) -> None:
        save_checkpoint(self.learn, self.folder, name, with_opt=False)
        self.last_saved_path = self.folder.checkpoint(name)

    def after_fit(self, **kwargs: Any) -> None:
        """The best epoch's weights; none saved (no epoch ever scored) keeps the last ones.
        Rank 0 alone: it alone exports them, and it may still be replacing `best.pth` when another
        rank gets here."""
        if rank_distrib():
            return
        if self.path.is_file():
            load_checkpoint(self.learn, self.path, with_opt=False)
