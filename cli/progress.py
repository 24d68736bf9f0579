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
