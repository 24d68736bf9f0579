"""Every image and mask of a split opened once before work starts, so a bad file is named at
once instead of failing a run hours in."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np

from fastseg.data.class_weights import mask_pixel_counts
from fastseg.data.dataset import SegmentationData
from fastseg.data.split import Split
from fastseg.errors import DatasetError
from fastseg.launch.device import cores_per_process


class Share(NamedTuple):
    """This process's part of a multi-process check: every `world`-th pair from `rank`, and
    `gather`, which returns every process's results in rank order (all-gather)."""

    rank: int
    world: int
    gather: Callable[[Any], list[Any]]


ALONE = Share(0, 1, lambda results: [results])


def check_dataset(
    dataset: SegmentationData,
    split: Split,
    threads: int | None = None,
    progress: Callable[[Iterable, int], Iterable] | None = None,
    action: str = "training",
    share: Share = ALONE,
) -> np.ndarray:
    """All problems of the split's pairs in one `DatasetError`, one line each; else the training
    masks' pixel counts `(n_train, C)`, for the class weights (each mask is decoded once).

    A thread per core of this process's share by default: Pillow decodes outside the GIL, and on
    trainaug's 12,031 pairs the check would take an estimated 37 s on one core (3 ms a pair
    measured on VOC-sized pairs). `threads=1` is the serial pass. Under DDP each process opens
    its `share` of the pairs, not all of them, and every process gets every result, so all raise
    the same problems and compute the same class weights.
    """
    ids = [*split.train, *split.valid, *split.test]
    dataset.require_files(ids)
    world = share.world
    gathered = share.gather(process_share(dataset, split, share.rank, world, threads, progress))
    results = [gathered[row % world][row // world] for row in range(len(ids))]
    scored = len(split.train) + len(split.valid)
    _raise_problems(dataset, [*dataset.problems, *(problem for problem, _ in results if problem)], action)
    counted_pixels = np.stack([counts for _, counts in results[:scored]])  # (pairs, C + 1): void last
    counts, valid = counted_pixels[: len(split.train), :-1], counted_pixels[len(split.train) :, :-1]
    void = int(counted_pixels[: len(split.train), -1].sum())
    hint = binary_void_hint(dataset, counts.sum(0), void_pixels=void)
    if hint:
        raise DatasetError(f"{dataset.root}: {hint}")
    if len(split.valid) and counts.sum() and not valid.sum():
        raise DatasetError(f"{dataset.root}: {all_void_problem(len(split.valid), 'validation')}")
    return counts


def process_share(
    dataset: SegmentationData,
    split: Split,
    rank: int,
    world: int,
    threads: int | None = None,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> list[tuple[str | None, np.ndarray | None]]:
    """What process `rank` of `world` contributes to `check_dataset`: every `world`-th pair from
    its own, and for the training and validation ones (they lead the ids) the pixel counts with
    their void last."""
    ids = [*split.train, *split.valid, *split.test]
    counted = len(range(rank, len(split.train) + len(split.valid), world))
    return inspect_pairs(dataset, ids[rank::world], counted, threads, progress, void=True)


def binary_void_hint(dataset: SegmentationData, class_pixels: np.ndarray, void_pixels: int = 1) -> str | None:
    """The one-line fix for binary masks stored as 0 / 255 (what most tools export): with void =
    255 they read as background and void, and the object class never appears (issue #19). Only
    where the training masks hold void: masks of 0 alone have no 255 to map."""
    classes = dataset.classes
    if len(classes) != 2 or class_pixels[1] > 0 or classes.ignore_index != 255 or not void_pixels:
        return None
    return (
        f"class {classes.names[1]!r} has no pixels in the training masks: masks holding 0 and 255, as "
        f"most tools export binary masks, read 255 as void here; add `mask_values: {{0: 0, 255: 1}}` "
        "to dataset.yaml (255 = the object), or set ignore_index to a value the masks do not use"
    )


def check_ids(dataset: SegmentationData, ids: list[str], action: str, threads: int | None = None) -> None:
    """The same check on `ids` only (`fastseg report`'s evaluated images): every problem in one
    `DatasetError`, one line each, before any work starts."""
    dataset.require_files(ids)
    results = inspect_pairs(dataset, ids, 0, threads, None)
    _raise_problems(dataset, [problem for problem, _ in results if problem], action)


def _raise_problems(dataset: SegmentationData, problems: list[str], action: str) -> None:
    if problems:
        raise DatasetError(lines=[f"{len(problems)} problem(s) in {dataset.root}, {action} not started:",
                                  *problems])  # fmt: skip


def all_void_problem(images: int, split: str = "training") -> str:
    """What `check-data` and `train` say of masks that label no pixel: training ones would train at
    loss 0 and lr-find suggest from a flat line; validation ones give no score, so the first epoch
    was kept as "best" and early stopping ended the run without a word (one wording, two places)."""
    if split == "validation":
        return (f"the validation masks label no pixel (all {images} are void): no score to keep the best "
                "epoch by or stop early on; check the masks and the data set's void value")  # fmt: skip
    return (f"the training masks label no pixel (all {images} are void): nothing to train on; check "
            "the masks and the data set's void value")  # fmt: skip


def inspect_pairs(
    dataset: SegmentationData,
    ids: list[str],
    counted: int,
    threads: int | None = None,
    progress: Callable[[Iterable, int], Iterable] | None = None,
    void: bool = False,
) -> list[tuple[str | None, np.ndarray | None]]:
    """`(problem, pixel counts (C,) of the first `counted` masks)` per id, each pair opened once on
    a thread pool; with `void`, the counts have a last entry: the mask's void pixels."""

    def inspect(row: int) -> tuple[str | None, np.ndarray | None]:
        problem, mask = dataset.inspect_pair(ids[row])
        if mask is None or row >= counted:
            return problem, None
        counts = mask_pixel_counts(mask, len(dataset.classes))
        return problem, np.append(counts, mask.size - counts.sum()) if void else counts

    with ThreadPoolExecutor(max_workers=threads or cores_per_process()) as pool:
        results = pool.map(inspect, range(len(ids)))
        if progress is not None:
            results = progress(results, len(ids))
        return list(results)
