"""What every epoch leaves behind: its row in `RUN/history.csv` and its line in `RUN/train.log`.

Both are written after fastai's Recorder has the epoch's values. The row goes through the run
folder (`fastseg.runs.history` owns the format). The line is plain: fastprogress redraws its bars
with carriage returns, which a file keeps as fragments, so when the output is not a terminal,
training drops the bars and prints this line instead:

    epoch 3 (40 planned)  train_loss 0.512  ...  valid_miou 0.412  lr 1.20e-03  time 00:05  best

Epochs count from 0, as in history.csv, fastai's table and the final summary; losses and scores
print in fastseg's one number style (`fastseg.number_style`), history.csv keeps every digit.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback
from fastai.learner import Recorder

from fastseg.number_style import score
from fastseg.runs.folder import RunFolder


def epoch_line(names: list[str], values: list, epoch: int, planned_epochs: int, lr: float, best: bool) -> str:
    """`epoch E (N planned)  name value ...  lr X  time T[  best]` from the Recorder's names and values."""
    fields = [f"epoch {epoch} ({planned_epochs} planned)"]
    for name, value in zip(names, values, strict=True):
        if name in ("epoch", "time"):
            continue
        if isinstance(value, float):  # a diverged loss stays "nan" (score() would say n/a)
            value = "nan" if math.isnan(value) else score(value)
        fields.append(f"{name} {value}")
    fields.append(f"lr {lr:.2e}")
    fields.append(f"time {values[names.index('time')]}" if "time" in names else "")
    return "  ".join(field for field in fields if field) + ("  best" if best else "")


class EpochLog(Callback):
    """After every epoch, one line to `say`; "best" marks a new best validation mIoU.

    The best is tracked here rather than read from `SaveModelCallback`, so the line does not
    depend on which tracker saves the model; a resumed run passes its saved best in."""

    run_after = Recorder
    order = Recorder.order + 2  # after the Recorder has this epoch's values (in its after_epoch)

    def __init__(self, say: Callable[[str], None], planned_epochs: int, monitor: str,
                 best: float | None = None):  # fmt: skip
        self.say, self.planned_epochs, self.monitor, self.best = say, planned_epochs, monitor, best

    def after_epoch(self) -> None:
        recorder = self.learn.recorder
        names, values = list(recorder.metric_names), list(recorder.log)
        current = values[names.index(self.monitor)] if self.monitor in names else None
        better = current is not None and (self.best is None or current > self.best)
        if better:
            self.best = current
        lr = self.learn.opt.hypers[-1]["lr"]  # the decoder's (the encoder's is a fixed ratio of it)
        self.say(epoch_line(names, values, self.learn.epoch, self.planned_epochs, lr, better))


class HistoryLogger(Callback):
    """`history.csv` rewritten whole after every epoch (`fastseg.runs.history`), chained into
    fastai's `learn.logger` as fastai's `CSVLogger` is (same columns): the Recorder hands each
    epoch's values to the logger in its after_epoch. A resumed fit (`start_epoch`) keeps the rows
    of the epochs its checkpoint holds."""

    run_after = ProgressCallback
    # ProgressCallback's order, as fastai's CSVLogger has: both take over `learn.logger` in
    # before_fit, and ProgressCallback, one of the Learner's default callbacks, is always added
    # first, so fastai's stable sort runs it first and its table stays in the chain behind this.
    order = ProgressCallback.order

    def __init__(self, run: RunFolder, start_epoch: int = 0):
        self.folder = run  # not `run`: fastai's Callback.run says whether the callback runs
        self.start_epoch = start_epoch

    def before_fit(self) -> None:
        self.header = ",".join(self.recorder.metric_names)
        self.rows = self.folder.history_rows_before(self.start_epoch) if self.start_epoch else []
        self.old_logger, self.learn.logger = self.learn.logger, self._write_row

    def _write_row(self, log: list) -> None:
        self.rows.append(",".join(str(value) for value in log))
        self.folder.write_history(self.header, self.rows)
        self.old_logger(log)

    def after_fit(self) -> None:
        self.learn.logger = self.old_logger
