"""One plain line per epoch, for log files and `RUN/train.log`.

fastprogress redraws its bars with carriage returns, which a file keeps as fragments; when the
output is not a terminal, training drops the bars and prints this line instead:

    epoch 3 (40 planned)  train_loss 0.512  ...  valid_miou 0.412  lr 1.20e-03  time 00:05  best

Epochs count from 0, as in history.csv, fastai's table and the final summary; losses and scores
print in fastseg's one number style (`fastseg.number_style`), history.csv keeps every digit.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

from fastai.callback.core import Callback
from fastai.learner import Recorder

from fastseg.number_style import score


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

    order = Recorder.order + 2  # after the Recorder has this epoch's values

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


class LineSink(io.TextIOBase):
    """A text stream that hands every complete line written to it to `write_line`: put in place
    of stdout, it catches fastai's `print`s ("Better model found at epoch 3 ...")."""

    def __init__(self, write_line: Callable[[str], None]):
        self.write_line, self.pending = write_line, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            if line.strip():
                self.write_line(line)
        return len(text)

    def flush(self) -> None:
        pass
