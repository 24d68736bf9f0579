"""Option helpers shared by commands, so defaults come from the config dataclasses."""

from __future__ import annotations

from dataclasses import fields

from fastseg.config import TrainConfig

_TRAIN_DEFAULTS = {f.name: f.default for f in fields(TrainConfig) if not callable(f.default_factory)}


def train_default(name: str):  # noqa: ANN201 - whatever type the field has
    """The `TrainConfig` default of `name`: the single source of the CLI's defaults."""
    return _TRAIN_DEFAULTS[name]
