"""When a count deserves a line in a log file: progress bars redraw one line with carriage
returns, which a file keeps as fragments, so outside a terminal progress is a plain line now and
then instead (used by the inference commands' progress and by downloads)."""

from __future__ import annotations

import time

LOG_EVERY_SECONDS = 30.0


class LineThrottle:
    """`due(done, total)`: True at the last item, and otherwise at most once per tenth of the total
    and once every `seconds` (an unknown total: every `seconds`)."""

    def __init__(self, seconds: float = LOG_EVERY_SECONDS):
        self.seconds = seconds
        self.last_time, self.last_share = time.monotonic(), 0

    def due(self, done: int, total: int | None) -> bool:
        if total and done >= total:
            return True
        share = 10 * done // total if total else self.last_share + 1
        now = time.monotonic()
        if share > self.last_share and now - self.last_time >= self.seconds:
            self.last_time, self.last_share = now, share
            return True
        return False
