"""The seed's split of VOC 2012 `val` into validation and test halves (saved as the run's `split.json`).

The seed called `random_split(val, [0.5, 0.5], generator=torch.Generator().manual_seed(42))`.
We call the same function on the same list so the very same ids land in test.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from fastseg.errors import DatasetError

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
    def from_dict(cls, values: dict[str, Any]) -> Split:
        """Inverse of `to_dict`; raises KeyError or TypeError on anything else."""
        test_from = values.get("test_from")
        return cls(
            list(values["train"]),
            list(values["valid"]),
            list(values["test"]),
            int(values.get("seed", 42)),
            None if test_from is None else str(test_from),
        )


def halve(ids: list[str], seed: int = 42) -> tuple[list[str], list[str]]:
    """First part validation, rest test: `random_split(ids, [0.5, 0.5])` with the seed's generator."""
    import torch  # here: the CLI reads SUBSETS for `--help`, which must not wait for torch
    from torch.utils.data import random_split

    generator = torch.Generator().manual_seed(seed)
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
