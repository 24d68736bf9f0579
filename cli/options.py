"""Option helpers shared by commands, so defaults come from the config dataclasses."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import click

from fastseg.inference.precision import PRECISIONS
from fastseg.inference.tiling import DEFAULT_OVERLAP, MIN_TILE
from fastseg.launch.device import DEVICES
from fastseg.training.config import TrainConfig
from fastseg.training.recipes import DEFAULT_RECIPE, RECIPES, recipe_default

_TRAIN_DEFAULTS = {f.name: f.default for f in fields(TrainConfig) if not callable(f.default_factory)}


def train_default(name: str):  # noqa: ANN201 - whatever type the field has
    """The `TrainConfig` default of `name`: the single source of the CLI's defaults."""
    return _TRAIN_DEFAULTS[name]


def recipe_option(help_text: str) -> Callable:
    """`--recipe fast|seed` (passed as `recipe_name`), default fast."""
    return click.option(
        "--recipe", "recipe_name", type=click.Choice(list(RECIPES)), default=DEFAULT_RECIPE, help=help_text
    )


def from_recipe(*declarations: str, **attributes) -> Callable:
    """An option whose value, when left out, is the recipe's: its default is None (so the recipe
    fills it) and `--help` shows each recipe's value. The config field is the option's name:
    `--random-scale-crop/--squish` -> `random_scale_crop`."""
    field = declarations[0].split("/")[0].lstrip("-").replace("-", "_")
    attributes.setdefault("show_default", recipe_default(field))
    return click.option(*declarations, default=None, **attributes)


def inference_options(command: Callable) -> Callable:
    """`--batch-size --num-workers --device --precision --tile --overlap --quiet --verbose`, shared
    by predict and report (`--verbose` is consumed by `cli.errors.user_errors`)."""
    options = [
        click.option("--batch-size", type=click.IntRange(min=1), default=8, help="Images (or tiles) a pass."),
        click.option(
            "--num-workers", type=int, default=-1, help="Decoding workers (-1: one per spare core)."
        ),
        click.option("--device", type=click.Choice(DEVICES), default="auto"),
        click.option(
            "--precision",
            type=click.Choice(PRECISIONS),
            default="auto",
            help="auto: bf16 on GPUs and on CPUs with native bf16, else fp32.",
        ),  # fmt: skip
        click.option(
            "--tile",
            type=int,
            default=0,
            help=f"Sliding window: run the model on TILE² windows of each image at its own resolution "
            f"and blend their logits (at least {MIN_TILE}; 0: fit the whole image into the model's input).",
        ),
        click.option(
            "--overlap",
            type=float,
            default=None,
            show_default=f"{DEFAULT_OVERLAP} with --tile",
            help="Fraction of a tile its neighbours overlap, at least 0 and below 1.",
        ),
        click.option("--quiet", is_flag=True, help="No progress lines."),
        click.option(
            "--verbose",
            is_flag=True,
            help="An error's full detail, e.g. every mismatched weight of a model file.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


AUTO_LR = "auto"


class LearningRate(click.ParamType):
    """`--lr`: a positive number, or `auto` (`fastseg lr-find`'s suggestion, found before training)."""

    name = "LR|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float | str:
        if value == AUTO_LR:
            return AUTO_LR
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither a positive number nor {AUTO_LR}", param, ctx)
        if not (math.isfinite(number) and number > 0):
            self.fail(f"{value!r} is not a positive number", param, ctx)
        return number
