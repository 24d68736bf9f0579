"""Ranking a report's images best first, by one of their scores. No pandas import here: the CLI
reads `RANKINGS` for `--help`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

# `--rank-by` name -> (per-image column, ascending): a low loss is good, a high accuracy is.
RANKINGS = {"accuracy": ("pixel_accuracy", False), "miou": ("miou", False), "loss": ("loss", True)}


def rank(per_image: pd.DataFrame, rank_by: str) -> pd.DataFrame:
    """Best first. NaN scores (no labelled pixel) go last."""
    column, ascending = RANKINGS[rank_by]
    return per_image.sort_values(column, ascending=ascending, na_position="last", kind="stable")
