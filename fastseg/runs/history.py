"""`history.csv`, one row per epoch: the one module that reads and writes its format.

fastai's `CSVLogger` appends to the file in place, so a kill in the middle of a row left half a
row, and a resumed run repeated the header and the epochs redone after the crash. Here the file
is rewritten whole and atomically after every epoch (it is a few kilobytes), holding the rows of
the epochs the checkpoint holds plus the new one. The rows are fastai's Recorder values joined
by commas (`training.epoch_records.HistoryLogger` hands them over); `fastseg runs`, `report` and
the trainer's final export read them back here. Files written by older versions may still hold
repeated header rows, which every reader drops.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from fastseg.atomic import write_text
from fastseg.errors import FastsegError, first_line
from fastseg.structured_files import read_utf8

if TYPE_CHECKING:
    import pandas as pd

HEADER_START = "epoch,"  # fastai's Recorder names its first column "epoch"


def write_history(path: Path, header: str, rows: list[str]) -> None:
    write_text(path, "\n".join([header, *rows]) + "\n")


def rows_before(path: Path, epoch: int) -> list[str]:
    """The rows of epochs `< epoch` already on disk, as written (an interrupted epoch is redone)."""
    if not path.is_file():
        return []
    text = read_utf8(path, "history")  # damaged, unreadable, a FIFO: one line naming it
    rows = []
    for line in text.splitlines()[1:]:
        first = line.split(",", 1)[0]
        if first.isdecimal() and int(first) < epoch:  # isdigit takes "²", which int() refuses
            rows.append(line)
    return rows


def read_history(path: Path) -> pd.DataFrame:
    """`history.csv` as numbers; a resumed run's repeated header rows are dropped."""
    import pandas as pd

    history = _read_csv(path, ("epoch", "valid_miou", "valid_pixel_accuracy"))
    history = history[history["epoch"].astype(str) != "epoch"]
    try:  # pandas' "coerce" does not coerce a whole number past float's range: it raises
        numeric = history.drop(columns=["time"], errors="ignore").apply(pd.to_numeric, errors="coerce")
    except OverflowError:
        raise _too_large(path) from None
    return numeric.drop_duplicates("epoch", keep="last").reset_index(drop=True)


def read_epoch_seconds(path: Path) -> list[float]:
    """Each epoch's duration from the `time` column (fastai writes `mm:ss` or `h:mm:ss`)."""
    # an empty cell (a row cut short) is NaN, which pandas 3's astype(str) keeps as a float: no time
    times = _read_csv(path, ("time",))["time"].dropna().astype(str)
    seconds = []
    for text in times[times != "time"]:  # a resumed run's repeated header
        parts = text.split(":")
        if all(part.isdecimal() for part in parts):  # isdigit takes "²", which int() refuses
            try:
                seconds.append(float(sum(int(part) * 60**power for power, part in enumerate(parts[::-1]))))
            except (OverflowError, ValueError):  # ValueError: past Python's 4300 digits for int()
                raise _too_large(path) from None
    return seconds


def _too_large(path: Path) -> FastsegError:
    """A number no float holds (400 digits): no training wrote it, and pandas and `float()` raise
    an OverflowError that stopped `fastseg runs` for every run, not a `FastsegError` naming the file."""
    return FastsegError(f"{path}: not a history fastseg wrote (a number too large for a float)")


def _read_csv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """The file as pandas reads it, holding `columns`; a file that is not such a CSV (binary, not
    UTF-8, empty, cut mid-quote, another table) is a `FastsegError` naming it, so `fastseg runs`
    shows that run's row as damaged by this file rather than by a pandas exception's name.
    Read as every run file is (`read_utf8`): a FIFO or a device is refused, and so is a file past
    16 MB, which no training writes (pandas read a 192 MB one whole: 18 s and 1.1 GB for one row)."""
    import pandas as pd

    text = read_utf8(path, "history")
    try:
        table = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as error:
        reason = first_line(error)
        raise FastsegError(f"{path}: not a history fastseg wrote ({reason})") from None
    missing = [name for name in columns if name not in table.columns]
    if missing:
        raise FastsegError(f"{path}: not a history fastseg wrote (no {', '.join(missing)} column)")
    return table


def looks_like_history(path: Path) -> bool:
    """Whether a file named history.csv is one fastseg wrote (`--force` replaces only those)."""
    return path.read_text(encoding="utf-8", errors="replace").startswith(HEADER_START)
