"""What a run tells while it trains: one line per epoch to `RUN/train.log` (and to the caller
when output is not a terminal), fastai's own prints kept out of stdout, and the experiment trackers
(`--log`) opened, fed and closed."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from contextlib import ExitStack, redirect_stdout
from types import TracebackType

from fastai.callback.core import Callback

from fastseg.runs.folder import RunFolder
from fastseg.training.config import TrainConfig
from fastseg.training.epoch_records import EpochLog
from fastseg.training.experiment_trackers import Fenced, Tracker, TrackerRunMissing
from fastseg.training.result import TrainResult


def _dropped(line: str) -> None:
    """Where fastai's prints go while fastseg logs the epochs itself."""


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


class RunReporter:
    """Used as `with RunReporter(...) as reporter:` around fitting and export.

    - `echo`: where each epoch's line is shown (None: only `train.log`, as with `--quiet`, or on
      a terminal, where fastai's progress table shows the epochs).
    - `capture_prints`: stdout is taken over while training, so fastai's trackers' `print`s
      ("Better model found at epoch ...", "No improvement since ...") are dropped: what they say
      is in fastseg's own epoch lines ("best") and summary, and `train.log` holds only those
      (issue #19). This catches them from any subclass of fastai's callbacks, without patching them.
    - `main`: only the main process of a multi-process run writes or tracks anything.
    """

    def __init__(self, run: RunFolder, config: TrainConfig, monitor: str, best: float | None,
                 echo: Callable[[str], None] | None, capture_prints: bool, main: bool):  # fmt: skip
        self.run, self.config, self.echo = run, config, echo
        self.capture_prints, self.main = capture_prints, main
        self.trackers: list[Tracker] = [Fenced(name, self.say) for name in config.trackers] if main else []
        self.epoch_log = EpochLog(self.say, config.epochs, monitor, best)
        self.stack = ExitStack()
        self.stdout = sys.stdout

    @property
    def callbacks(self) -> list[Callback]:
        if not self.main:
            return []
        return [self.epoch_log, *(cb for cb in (tracker.callback() for tracker in self.trackers) if cb)]

    def say(self, line: str) -> None:
        """An epoch's line: to `train.log`, and shown on the real stdout (not the capture)."""
        self.run.append_log(line)
        if self.echo is not None:
            with redirect_stdout(self.stdout):
                self.echo(line)

    def __enter__(self) -> RunReporter:
        self.stdout = sys.stdout
        self.status = "FAILED"
        try:  # a tracker that cannot start: those opened before it are closed (no __exit__ runs)
            self._open_trackers()
        except BaseException:
            self.stack.close()
            raise
        if self.capture_prints and self.main:
            self.stack.enter_context(redirect_stdout(LineSink(_dropped)))
        return self

    def _open_trackers(self) -> None:
        """Each tracker continues the run it logged to before an interruption (`trackers.json`),
        so a resumed training run is one run in MLflow and W&B, not two halves. The main process
        alone tracks: the others have no trackers to open (zipped with the names, they raised)."""
        if not self.main:
            return
        run_ids = self.run.read_tracker_runs()
        for name, tracker in zip(self.config.trackers, self.trackers, strict=True):
            try:
                run_id = tracker.open(self.run, self.config, run_ids.get(name))
            except TrackerRunMissing as missing:
                self.say(f"{missing}; logging to a new run")
                run_id = tracker.open(self.run, self.config, None)
            self.stack.callback(self._close, tracker)
            if run_id is not None and run_ids.get(name) != run_id:
                run_ids[name] = run_id
                self.run.write_tracker_runs(run_ids)

    def finish(self, result: TrainResult | None) -> None:
        """After export: the trackers get the best scores, the figures and the model."""
        if result is None:  # not the main process
            return
        best = {"valid_miou": result.best_miou, "valid_pixel_accuracy": result.best_pixel_accuracy}
        scores = {name: value for name, value in best.items() if value is not None}
        for tracker in self.trackers:
            tracker.finish(self.run, self.config, scores)
        self.status = "FINISHED"

    def _close(self, tracker: Tracker) -> None:
        tracker.close(self.status)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:  # fmt: skip
        if KeyboardInterrupt in (kind, type(getattr(error, "__context__", None))):
            self.status = "KILLED"  # Ctrl-C, or an error raised while handling it (TrainingInterrupted)
        self.stack.close()
