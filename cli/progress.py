"""Progress for the inference commands without fastai's bars (and their import cost): one line
redrawn in place on a terminal; in a log file, a plain line at most every 10 % and every 30 s,
never control characters."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO

from fastseg.progress_lines import LineThrottle


def counted(label: str, stream: TextIO | None = None) -> Callable[[Iterable], Iterator]:
    """A `progress` function for `predict` / `report`: wraps their iterable of batches."""

    def wrap(items: Iterable) -> Iterator:
        output = stream or sys.stderr
        total = len(items) if hasattr(items, "__len__") else None
        interactive = output.isatty()
        throttle = LineThrottle()
        for done, item in enumerate(items, start=1):
            yield item
            of = f"/{total}" if total else ""
            if interactive:
                output.write(f"\r{label}: {done}{of}")
                output.flush()
                continue
            if throttle.due(done, total):
                output.write(f"{label}: {done}{of}\n")
        if interactive:
            output.write("\r\033[K")  # leave the terminal line empty for the summary
            output.flush()

    return wrap


def counted_with_total(label: str) -> Callable[[Iterable, int], Iterator]:
    """`counted` for a library that hands over its results and their count apart (check-data's
    survey, `fastseg import`): the line says `done/total`."""
    return lambda results, total: counted(label)(_Sized(results, total))


class _Sized:
    """An iterable that knows its length, for the progress line."""

    def __init__(self, items: Iterable, total: int):
        self.items, self.total = items, total

    def __iter__(self) -> Iterator:
        return iter(self.items)

    def __len__(self) -> int:
        return self.total
