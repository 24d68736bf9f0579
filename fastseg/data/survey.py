"""`fastseg check-data`: what a data set holds and everything wrong with it, without training.

Every listed pair is opened once (the training check's own `inspect_pairs`, threaded); where
`fastseg train` stops at the first problem list, this collects all of them, and counts each
split's images and class pixels so a user sees an empty class or a lopsided split at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from fastseg.data.check import all_void_problem, binary_void_hint, inspect_pairs
from fastseg.data.dataset import SegmentationData
from fastseg.errors import DatasetError, shown


@dataclass
class SplitSurvey:
    name: str
    images: int  # listed, readable or not
    pixels: np.ndarray  # (C + 1,) pixels of each class in the split's usable masks, void last


@dataclass
class DataSurvey:
    description: str
    class_names: list[str]
    splits: list[SplitSurvey] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def survey_dataset(
    dataset: SegmentationData,
    threads: int | None = None,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> DataSurvey:
    """Images and class pixels per split, and every problem, a line each (none raised)."""
    survey = DataSurvey(dataset.summary_line(), list(dataset.classes.names), problems=list(dataset.problems))
    listed = {}
    try:
        listed = dataset.listed_splits()
    except DatasetError as error:
        survey.problems.append(str(error))
    if "test" not in listed and "val" in listed:
        survey.notes.append("no test split: training halves val into validation and test (seed 42)")
    ids = [image_id for members in listed.values() for image_id in members]
    results = iter(inspect_pairs(dataset, ids, len(ids), threads, progress, void=True))
    for name, members in listed.items():
        pixels = np.zeros(len(dataset.classes) + 1, dtype=np.int64)
        for _ in members:
            problem, counts = next(results)
            if problem:
                survey.problems.append(problem)
            else:
                pixels += counts
        survey.splits.append(SplitSurvey(name, len(members), pixels))
    train = next((split for split in survey.splits if split.name == "train"), None)
    hint = (binary_void_hint(dataset, train.pixels[:-1], void_pixels=int(train.pixels[-1]))
            if train is not None and train.pixels.sum() else None)  # fmt: skip
    if hint:
        survey.problems.append(f"{dataset.root}: {hint}")
    elif train is not None and train.pixels.sum() and not train.pixels[:-1].sum():  # what train refuses
        survey.problems.append(f"{dataset.root}: {all_void_problem(train.images)}")
    val = next((split for split in survey.splits if split.name == "val"), None)
    if val is not None and val.pixels.sum() and not val.pixels[:-1].sum():  # train refuses it too
        survey.problems.append(f"{dataset.root}: {all_void_problem(val.images, 'validation')}")
    # a pair in two VOC lists is one problem; a newline in a file's name does not make two
    survey.problems = list(dict.fromkeys(map(shown, survey.problems)))
    return survey


def survey_table(survey: DataSurvey) -> list[str]:
    """Lines of a table: a row per class (and void), a column per split, shares of its pixels."""
    names = [*survey.class_names, "(void)"]
    width = max(len(name) for name in [*names, "pairs"])
    header = " ".join(f"{split.name:>9}" for split in survey.splits)
    lines = [f"{'class':<{width}} {header}"]
    for row, name in enumerate(names):
        shares = []
        for split in survey.splits:
            total = split.pixels.sum()
            shares.append(f"{100 * split.pixels[row] / total:8.2f}%" if total else f"{'-':>9}")
        lines.append(f"{name:<{width}} {' '.join(shares)}")
    lines.append(f"{'pairs':<{width}} " + " ".join(f"{split.images:>9}" for split in survey.splits))
    return lines
