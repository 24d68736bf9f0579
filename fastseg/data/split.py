"""The seed's split of VOC 2012 `val` into validation and test halves (saved as the run's `split.json`).

The seed called `random_split(val, [0.5, 0.5], generator=torch.Generator().manual_seed(42))`.
We call the same function on the same list so the very same ids land in test.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from fastseg.errors import DatasetError, quoted

SUBSETS = ("test", "val", "train")  # what `fastseg report --split` evaluates


@dataclass(frozen=True)
class Split:
    """Ids of each subset; `train` from train.txt, `valid`/`test` from the seed's halving of val.txt."""

    train: list[str]
    valid: list[str]
    test: list[str]
    seed: int = 42
    test_from: str | None = None  # "val" when a data set without a test split had its val halved

    def ids(self, subset: str) -> list[str]:
        names = {"train": self.train, "val": self.valid, "valid": self.valid, "test": self.test}
        if subset not in names:
            raise ValueError(f"unknown subset {subset!r}; choose one of {', '.join(SUBSETS)}")
        return names[subset]

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        if self.test_from is None:
            del values["test_from"]  # VOC's split.json as before (VOC's test is always val's half)
        return values

    @classmethod
    def from_dict(cls, values: Any) -> Split:
        """Inverse of `to_dict`; anything else (a list, `"test": "a"`, an id that is a path out of
        the data folder) is a `DatasetError` saying what: split.json can be edited by hand."""
        if not isinstance(values, dict):
            kind = type(values).__name__
            raise DatasetError(f"expected a mapping of train, valid and test ids, got {kind}")
        lists = {}
        for name in ("train", "valid", "test"):
            ids = values.get(name)
            if not isinstance(ids, list) or not all(isinstance(item, str) for item in ids):
                raise DatasetError(f"{name!r} must be a list of image ids, got {quoted(str(ids), 40)}")
            escaping = [item for item in ids if not _plain_id(item)]
            if escaping:
                raise DatasetError(f"{name!r} id {escaping[0]!r} is not a name inside the data folder")
            repeated = next((item for item, count in Counter(ids).items() if count > 1), None)
            if repeated is not None:  # report would score it twice, training would weigh it double
                raise DatasetError(f"{name!r} lists {repeated!r} twice: each image belongs once")
            lists[name] = ids
        seed, test_from = values.get("seed", 42), values.get("test_from")
        if type(seed) is not int:
            raise DatasetError(f"'seed' must be a whole number, got {seed!r}")
        if test_from not in (None, "val"):
            raise DatasetError(f"'test_from' must be \"val\" or absent, got {test_from!r}")
        return cls(lists["train"], lists["valid"], lists["test"], seed, test_from)


def _plain_id(image_id: str) -> bool:
    """An id names a file under the data folder: not empty, not absolute, no `..`, no NUL."""
    parts = image_id.replace("\\", "/").split("/")
    return (
        bool(image_id)
        and "\0" not in image_id
        and not image_id.startswith("/")
        and ".." not in parts
        and ":" not in parts[0]
    )


def halve(ids: list[str], seed: int = 42) -> tuple[list[str], list[str]]:
    """First part validation, rest test: `random_split(ids, [0.5, 0.5])` with the seed's generator."""
    import torch  # here: the CLI reads SUBSETS for `--help`, which must not wait for torch
    from torch.utils.data import random_split

    generator = torch.Generator().manual_seed(seed)
    with warnings.catch_warnings():  # 0 or 1 ids leave a half empty, which the caller says in a line:
        # torch's "Length of split at index 1 is 0" warning reached the user's terminal as well
        warnings.filterwarnings("ignore", "Length of split at index", UserWarning)
        valid, test = random_split(range(len(ids)), [0.5, 0.5], generator=generator)
    return [ids[i] for i in valid.indices], [ids[i] for i in test.indices]


def seed_split(train_ids: list[str], val_ids: list[str], seed: int = 42) -> Split:
    """Train as given; VOC val halved. Refuses a training list that shares ids with val."""
    leaked = sorted(set(train_ids) & set(val_ids))
    if leaked:
        raise DatasetError(
            f"{len(leaked)} training ids are also in val.txt (e.g. {leaked[0]}): validation/test would leak"
        )
    valid, test = halve(val_ids, seed)
    return Split(train=list(train_ids), valid=valid, test=test, seed=seed)
