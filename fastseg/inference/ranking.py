"""Ranking a report's images best first, by one of their scores, and choosing the ones the report
shows. No pandas import here: the CLI reads `RANKINGS` for `--help`."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

# `--rank-by` name -> (per-image column, ascending): a low loss is good, a high accuracy is.
RANKINGS = {"accuracy": ("pixel_accuracy", False), "miou": ("miou", False), "loss": ("loss", True)}
# Best and worst by the score the page leads with: ranked by loss, a "best" image could score a
# lower mIoU than a "worst" one (issue #21); the seed's loss ranking stays one option away.
DEFAULT_RANKING = "miou"
# What each ranking is, in the words the report page uses beside "best" and "worst".
RANKING_WORDS = {
    "miou": "per-image mIoU (the IoU of each class in the image's truth or prediction, averaged; "
    "higher is better)",
    "accuracy": "per-image pixel accuracy (the share of its labelled pixels given their true class; "
    "higher is better)",
    "loss": "per-image loss (the weighted cross-entropy the model trained on; lower is better)",
}
# How many images each example set shows at most: the seed's 10 best, 5 worst and 5 at random.
EXAMPLES = {"best": 10, "worst": 5, "random": 5}


def rank(per_image: pd.DataFrame, rank_by: str) -> pd.DataFrame:
    """Best first. NaN scores (no labelled pixel) go last."""
    column, ascending = RANKINGS[rank_by]
    return per_image.sort_values(column, ascending=ascending, na_position="last", kind="stable")


def choose_examples(
    scored: int, total: int, seed: int, limits: dict[str, int] = EXAMPLES
) -> dict[str, list[int]]:
    """Positions in the ranked order (0 the best) of the images each example set shows, no image in
    two sets: `worst` (worst first) and `best` (best first) among the `scored` images that have a
    score (ranked first), `random` drawn with `seed` from all the others, in ranked order.

    On a small set the two ends would meet: with 16 images the seed's 10 best and 5 worst covered
    15 and repeated the random ones, and a "best" image could be a "worst" one. The ends keep
    their 10:5 proportion then (at least one worst image from two scored images on), and the random
    ones are the images left over (none, when every image is already shown)."""
    if not 0 <= scored <= total:
        raise ValueError(f"{scored} scored images of {total}")
    best_limit, worst_limit = limits["best"], limits["worst"]
    worst = min(worst_limit, scored * worst_limit // (best_limit + worst_limit))
    if scored >= 2 and worst_limit:
        worst = max(worst, 1)
    best = min(best_limit, scored - worst)
    chosen = {"best": list(range(best)), "worst": list(range(scored - 1, scored - 1 - worst, -1))}
    shown = set(chosen["best"]) | set(chosen["worst"])
    others = [position for position in range(total) if position not in shown]
    chosen["random"] = sorted(random.Random(seed).sample(others, min(limits["random"], len(others))))
    return chosen
