"""`history.csv`, one row per epoch, rewritten whole after each epoch.

fastai's `CSVLogger` appends to the file in place, so a kill in the middle of a row left half a
row, and a resumed run repeated the header and the epochs redone after the crash. This logger
keeps the rows of the epochs the checkpoint holds, adds one row per epoch, and replaces the file
atomically each time (it is a few kilobytes).
"""

from __future__ import annotations

from fastai.callback.core import Callback

from fastseg.atomic import write_text
from fastseg.runs.folder import HISTORY, RunFolder


class HistoryLogger(Callback):
    """Chained into fastai's `learn.logger` like `CSVLogger` (same order, same columns)."""

    order = 60

    def __init__(self, run: RunFolder, start_epoch: int = 0):
        self.path = run.file(HISTORY)
        self.start_epoch = start_epoch

    def before_fit(self) -> None:
        self.header = ",".join(self.recorder.metric_names)
        self.rows = self._rows_before(self.start_epoch) if self.start_epoch else []
        self.old_logger, self.learn.logger = self.learn.logger, self._write_row

    def _rows_before(self, epoch: int) -> list[str]:
        """The rows of epochs `< epoch` already on disk (an interrupted epoch is redone)."""
        if not self.path.is_file():
            return []
        rows = []
        for line in self.path.read_text().splitlines()[1:]:
            first = line.split(",", 1)[0]
            if first.isdigit() and int(first) < epoch:
                rows.append(line)
        return rows

    def _write_row(self, log: list) -> None:
        self.rows.append(",".join(str(value) for value in log))
        write_text(self.path, "\n".join([self.header, *self.rows]) + "\n")
        self.old_logger(log)

    def after_fit(self) -> None:
        self.learn.logger = self.old_logger
