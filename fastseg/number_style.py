"""One style for every number fastseg prints (issue #21: the demo printed 0.955, train 0.5831 and
report 61.69 %). Scores that are fractions (mIoU, pixel accuracy, IoU, losses in epoch lines) print
with three decimals, 0.955; a percent sign only where the unit is a percent (check-data's share of
pixels). The files keep full precision (history.csv, metrics.json); this is only what a person reads.
No imports: `fastseg runs --help` stays instant."""

from __future__ import annotations

import math

SCORE_DECIMALS = 3  # 0.001 mIoU is below run-to-run noise on any data set fastseg trains on


def score(value: float | None) -> str:
    """`0.955`; `n/a` for a score that does not exist (None, NaN: no pixels of any class)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{SCORE_DECIMALS}f}"


def score_change(value: float) -> str:
    """A difference of two scores, signed: `+0.012`, `-0.009`."""
    return f"{value:+.{SCORE_DECIMALS}f}"


def quantity(count: int, noun: str) -> str:
    """`1 image`, `16 images`: a count a person reads ("1 images" was in report's summary)."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
