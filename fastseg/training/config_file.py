"""`fastseg train --config FILE`: training options from a YAML file or from any run's config.json.

A YAML file holds `TrainConfig` fields by name (`lr: 0.001`, `augment: {flip_p: 0.5}`, or an
augmentation field at the top level, as the CLI spells it); a run's config.json holds them under
`train`, with every value the run used, so `--config RUN/config.json` repeats that run. The values
are overrides for `fastseg.training.recipes.recipe`: the recipe fills what the file leaves out,
and the options given on the command line win over the file.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from fastseg.errors import FastsegError
from fastseg.training.config import AugmentConfig, TrainConfig

_TRAIN_FIELDS = {field.name for field in fields(TrainConfig)}
_AUGMENT_FIELDS = {field.name for field in fields(AugmentConfig)}


def _load(path: Path) -> Any:
    import yaml  # comes with fastai

    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except OSError as error:
        raise FastsegError(f"{path}: cannot read the config file ({error.strerror})") from None
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        kind, problem = "JSON" if path.suffix == ".json" else "YAML", str(error).splitlines()[0]
        raise FastsegError(f"{path}: not valid {kind} ({problem})") from None


def read_config_file(path: Path | str) -> dict[str, Any]:
    """The file's values as flat `recipe()` overrides (augmentation fields at the top level, lists
    as tuples). A run's config.json loses its `out`: a new run never writes into the old one.
    Unknown keys are refused in one line that names them all."""
    path = Path(path)
    values = _load(path)
    if not isinstance(values, dict):
        raise FastsegError(f"{path}: expected a mapping of option names to values")
    run_config = isinstance(values.get("train"), dict)
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
    merged = {**values, **augment}
    return {key: tuple(value) if isinstance(value, list) else value for key, value in merged.items()}
