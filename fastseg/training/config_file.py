"""`fastseg train --config FILE`: training options from a YAML file or from any run's config.json.

A YAML file holds `TrainConfig` fields by name (`lr: 0.001`, `augment: {flip_p: 0.5}`, or an
augmentation field at the top level, as the CLI spells it); a run's config.json holds them under
`train`, with every value the run used, so `--config RUN/config.json` repeats that run. The values
are overrides for `fastseg.training.recipes.recipe`: the recipe fills what the file leaves out,
and the options given on the command line win over the file.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from fastseg.errors import FastsegError
from fastseg.structured_files import load_structured
from fastseg.training.config import AugmentConfig, TrainConfig, field_problem

_TRAIN_FIELDS = {field.name for field in fields(TrainConfig)}
_AUGMENT_FIELDS = {field.name for field in fields(AugmentConfig)}


def read_config_file(path: Path | str) -> dict[str, Any]:
    """The file's values as flat `recipe()` overrides (augmentation fields at the top level, lists
    as tuples). A run's config.json loses its `out`: a new run never writes into the old one.
    Unknown keys are refused in one line that names them all."""
    path = Path(path)
    values = load_structured(path, "config file")
    if not isinstance(values, dict):
        raise FastsegError(f"{path}: expected a mapping of option names to values")
    # a run's config.json: its options under `train`, beside fastseg's own keys (model, versions, ...);
    # a YAML file naming options at the top level is a user's, where `train` is an unknown key
    options_at_top = set(values) & (_TRAIN_FIELDS | _AUGMENT_FIELDS)
    run_config = isinstance(values.get("train"), dict) and not options_at_top
    if run_config:
        values = dict(values["train"])
        values.pop("out", None)
    augment = values.pop("augment", None) or {}
    if not isinstance(augment, dict):
        raise FastsegError(f"{path}: `augment` must be a mapping of augmentation fields")
    if run_config:  # written by fastseg: a field an earlier version had (e.g. beta1) is not a typo
        values = {key: value for key, value in values.items() if key in _TRAIN_FIELDS}
        augment = {key: value for key, value in augment.items() if key in _AUGMENT_FIELDS}
    unknown = sorted(set(values) - _TRAIN_FIELDS - _AUGMENT_FIELDS) + sorted(
        f"augment.{key}" for key in set(augment) - _AUGMENT_FIELDS
    )
    if unknown:
        raise FastsegError(f"{path}: unknown keys: {', '.join(map(str, unknown))}")
    twice = sorted(set(values) & set(augment) & _AUGMENT_FIELDS)  # two spellings of one option
    if twice:
        raise FastsegError(f"{path}: {', '.join(twice)} given twice, at the top and under `augment`: "
                           "keep one")  # fmt: skip
    merged = {**values, **augment}
    named = {f"augment.{key}" if key in _AUGMENT_FIELDS else key: value for key, value in merged.items()}
    problems = [problem for name, value in named.items() if (problem := field_problem(name, value))]
    if problems:  # every one at once, naming the file: the values were never seen by the CLI's checks
        raise FastsegError(f"{path}: {'; '.join(problems)}")
    return {key: tuple(value) if isinstance(value, list) else value for key, value in merged.items()}
