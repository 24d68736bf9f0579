"""`predictions.csv`, predict's log: one row per input image (ok, failed or skipped) with its
size, model time, runtime and each class's share; read back by `--skip-existing`, and merged from
one file per process under `torchrun`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from fastseg.atomic import atomic_path
from fastseg.errors import DatasetError, bytes_escaped
from fastseg.imaging.masks import read_mask
from fastseg.inference.image_outputs import class_fractions
from fastseg.inference.jobs import Job, is_done
from fastseg.launch.processes import Launch, barrier
from fastseg.structured_files import StructuredFileError, read_utf8

# then one column per class
FIXED_FIELDS = ["path", "width", "height", "status", "error", "seconds", "runtime"]
# predictions.csv before the runtime column (issue #24): still read back by `--skip-existing`
OLD_FIXED_FIELDS = ["path", "width", "height", "status", "error", "seconds"]


def csv_fields(class_names: Sequence[str], fixed: Sequence[str] = FIXED_FIELDS) -> list[str]:
    """`predictions.csv`'s header: the fixed columns, then each class's share of the image. The
    `runtime` column says what ran the model for that row (`torch bf16`, `onnxruntime int8`, ...:
    `fastseg.inference.runtime_choice.runtime_label`), blank for a failed image."""
    return [*fixed, *class_names]


def logged_text(value: object) -> str:
    """A cell of `predictions.csv` as text that UTF-8 can hold (`errors.bytes_escaped`): a file
    name's bytes that are not UTF-8 stopped the whole run with a UnicodeEncodeError and lost the
    log. `--skip-existing` looks an image's earlier row up by this same text."""
    return bytes_escaped(str(value))


def csv_row(source: Path, status: str, error: str = "", size: tuple[int, int] | None = None,
            seconds: float | None = None, fractions: list[float] | None = None,
            runtime: str = "") -> list:  # fmt: skip
    """One `predictions.csv` row (without fractions the class columns are left to `PredictionLog`,
    which fills them blank); `size` is `(height, width)`."""
    height, width = size or ("", "")
    timing = "" if seconds is None else f"{seconds:.4f}"
    return [source, width, height, status, error, timing, runtime, *(fractions or [])]


class PredictionLog:
    """`predictions.csv`: one row per input image (ok, failed or skipped), written to a temporary
    file as the run goes and renamed into place when it ends; `runtime` goes in every "ok" row."""

    def __init__(self, file: TextIO, fields: list[str], runtime: str = ""):
        self.writer = csv.writer(file, lineterminator="\n")  # csv's default is CRLF
        self.width = len(fields)
        self.runtime = runtime
        self.writer.writerow(fields)

    def row(self, source: Path, status: str, error: str = "", **values: Any) -> None:
        if status == "ok":
            values.setdefault("runtime", self.runtime)
        self.write(csv_row(source, status, error, **values))

    def write(self, row: list) -> None:
        cells = [logged_text(cell) if isinstance(cell, (str, Path)) else cell for cell in row]
        self.writer.writerow(cells + [""] * (self.width - len(row)))


MAX_LOG_BYTES = 1 << 30  # an earlier predictions.csv read back whole: millions of rows, not a device


def previous_rows(path: Path, fields: list[str]) -> dict[str, list[str]]:
    """The rows of an earlier `predictions.csv` that hold an image's figures, by path; read before
    this run replaces the file. An unreadable or foreign file (another model's classes included) is
    no loss: masks are read back. Read through `read_utf8`, which refuses a FIFO or a device
    (opening a FIFO named predictions.csv blocked forever)."""
    try:
        rows = list(csv.reader(io.StringIO(read_utf8(path, "predictions.csv", MAX_LOG_BYTES), newline="")))
    except (StructuredFileError, csv.Error):
        return {}
    if not rows:
        return {}
    classes = fields[len(FIXED_FIELDS) :]
    if rows[0] == csv_fields(classes, OLD_FIXED_FIELDS):  # before the runtime column: left blank
        old = len(OLD_FIXED_FIELDS)
        rows = [rows[0], *([*row[:old], "", *row[old:]] for row in rows[1:] if len(row) == len(rows[0]))]
    elif rows[0] != fields:
        return {}
    return {row[0]: row for row in rows[1:] if len(row) == len(fields) and row[1]}


def log_time(path: Path) -> int | None:
    """When `path` (an earlier `predictions.csv`) was last written, in ns; None without one. Asked
    before the log is read: a log replaced between the two is then taken for older than it is,
    which only sends more masks to be read back (`skipped_rows`)."""
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def skipped_rows(
    jobs: list[Job], overlay: bool, previous: dict[str, list[str]], num_classes: int,
    logged_ns: int | None = None,
) -> dict[Job, list]:  # fmt: skip
    """The log rows of the jobs `--skip-existing` leaves (`is_done`), with the size, time and class
    fractions of the earlier run's row, or, without one (an interrupted run writes no CSV), the
    size and fractions read back from the mask. A mask that cannot be read is not done, unless
    the log lists it (`jobs._cut_short`: such a file is left).

    An earlier row stands only for a mask written no later than its log (`logged_ns`, the log's
    `log_time`; None: no row does): a run killed or stopped after rewriting some masks leaves the
    log of the run before it, whose rows for those masks gave another model's (another `--size`'s)
    class shares for the labels now there."""
    rows = {}
    for job in (job for job in jobs if is_done(job, overlay)):
        earlier = previous.get(logged_text(job.source))
        if earlier is not None:
            earlier = [job.source, *earlier[1:3], "skipped", "", *earlier[5:]]  # its time, runtime, shares
            if logged_ns is not None and _written_ns(job.mask) <= logged_ns:
                rows[job] = earlier
                continue
        try:
            labels = read_mask(job.mask)
        except DatasetError:
            if earlier is not None:  # no mask to read: left as the log lists it, as before
                rows[job] = earlier
            continue
        fractions = class_fractions(labels, num_classes)
        rows[job] = csv_row(job.source, "skipped", size=labels.shape, fractions=fractions)
    return rows


def _written_ns(path: Path) -> float:
    try:
        return path.stat().st_mtime_ns
    except OSError:  # gone since `is_done` saw it: read back (and then not done)
        return math.inf


def merge_rank_csvs(out: Path, launch: Launch, fields: list[str]) -> Path:
    """One `predictions.csv`, rows sorted by path, from the per-process files (then removed);
    rank 0 merges once every process has finished its own. Alone, the file is already whole."""
    merged = out / "predictions.csv"
    if launch.world == 1:
        return merged
    barrier()
    if launch.main:
        parts = [out / f"predictions.rank{rank}.csv" for rank in range(launch.world)]
        rows = []
        for part in parts:
            with part.open(newline="") as file:
                rows += list(csv.reader(file))[1:]
        with atomic_path(merged) as temporary, temporary.open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file, lineterminator="\n")
            writer.writerow(fields)
            writer.writerows(sorted(rows, key=lambda row: row[0]))
        for part in parts:
            part.unlink()
    barrier()
    return merged
