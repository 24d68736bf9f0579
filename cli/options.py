"""Option helpers shared by commands, so defaults come from the config dataclasses."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, NamedTuple

import click

from cli.output import say
from fastseg.inference.precision import PRECISIONS
from fastseg.inference.tiling import DEFAULT_OVERLAP, MAX_PASSES, MIN_TILE
from fastseg.launch.device import DEVICES, MAX_LOADER_WORKERS
from fastseg.paths import expanded
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


class RecipeOption(NamedTuple):
    """A row of a command's table of options that the recipe fills when left out (`from_recipe`):
    a table, not a decorator each, because all they differ in is these four values."""

    flag: str  # "--epochs", or a pair "--pretrained/--no-pretrained"; its config field's name
    type: click.ParamType | None = None  # None: click's own (a string, or a flag pair's bool)
    help: str | None = None
    show_default: str | None = None  # None: each recipe's value (`recipe_default`)
    name: str | None = None  # the command's parameter, where the field's name would shadow a builtin


def options_table(rows: Sequence[RecipeOption | Callable]) -> Callable:
    """A decorator adding `rows` in `--help`'s order: a `RecipeOption` through `from_recipe`, a
    click decorator (an option no recipe sets, kept in its place in the list) as it is."""
    decorators = [
        from_recipe(row.flag, *filter(None, [row.name]), type=row.type, help=row.help,
                    **({} if row.show_default is None else {"show_default": row.show_default}))
        if isinstance(row, RecipeOption)
        else row
        for row in rows
    ]  # fmt: skip
    return functools.partial(_with_options, decorators)


def _with_options(decorators: Sequence[Callable], command: Callable) -> Callable:
    for decorator in reversed(decorators):  # click lists the outermost (the first written) first
        command = decorator(command)
    return command


def inference_options(command: Callable) -> Callable:
    """`--batch-size --num-workers --device --precision --tile --overlap --quiet --verbose`, shared
    by predict and report (`--verbose` is consumed by `cli.errors.user_errors`)."""
    options = [
        click.option("--batch-size", type=click.IntRange(min=1), default=8, help="Images (or tiles) a pass."),
        click.option(
            "--num-workers",
            type=click.IntRange(min=-1, max=MAX_LOADER_WORKERS),
            default=-1,
            help="Decoding workers (-1: one per spare core; at most 4 a core).",
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
            help=f"Fraction of a tile its neighbours overlap: at least 0, and at most what runs each pixel "
            f"through the model {MAX_PASSES} times (0.875 for most tiles).",
        ),
        click.option("--quiet", is_flag=True, help="No progress lines."),
        verbose_option,
    ]
    return _with_options(options, command)


# One grammar for every command (issue #21): the data set is `--data`, the model `--model`, with
# the same help wherever they appear; `--force` only ever replaces fastseg's own earlier output;
# `--verbose` means the same on every command that prints progress. tests/test_cli_grammar.py
# checks each registered command's --help against this.
DATA_HELP = "A dataset.yaml, a folder holding one, or a VOC root (VOCdevkit/VOC2012 or VOC2012 inside)."
VERBOSE_HELP = "An error's full detail, e.g. every mismatched weight of a model file."
FORCE_HELP = "Replace fastseg's own earlier {what}; a file fastseg did not write is never replaced."
REPLACE_FOREIGN_HELP = (
    "Also replace what fastseg did not write at an output path: {what} (fastseg's own earlier "
    "output is replaced without it)."
)


def verbose_option(command: Callable) -> Callable:
    """`--verbose`, consumed by `cli.errors.user_errors`: the same flag on every command."""
    return click.option("--verbose", is_flag=True, help=VERBOSE_HELP)(command)


def force_option(what: str) -> Callable:
    """`--force`: replace `what` (e.g. "run in --out"), fastseg's own earlier output, and nothing else."""
    return click.option("--force", is_flag=True, help=FORCE_HELP.format(what=what))


def replace_foreign_option(what: str) -> Callable:
    """`--replace-foreign` (the parameter `force`): also replace `what`, which fastseg did not
    write; `--force`, its spelling before issue #21 (predict's and report's), still works with a
    note (`renamed_flag`). Put it above `user_errors`."""
    option = click.option(
        "--replace-foreign", "force", is_flag=True, help=REPLACE_FOREIGN_HELP.format(what=what)
    )
    old_spelling = renamed_flag("--force", "--replace-foreign", "force")
    return lambda command: option(old_spelling(command))


class RequiredInHelp(click.Option):
    """An option `--help` marks required although click does not enforce it: the command accepts
    its old positional spelling instead (`positional_alias`), and says so itself when both are missing."""

    def get_help_extra(self, ctx: click.Context) -> Any:  # noqa: ANN401 - click's OptionHelpExtra
        return {**super().get_help_extra(ctx), "required": "required"}


class UnlistedArgument(click.Argument):
    """A positional argument left out of the usage line: an old spelling that keeps scripts working."""

    def get_usage_pieces(self, ctx: click.Context) -> list[str]:
        return []


def positional_alias(parameter: str, path_type: click.Path, what: str) -> Callable:
    """Accept the option `--PARAMETER` also as a bare positional argument, its spelling before the
    grammar was unified (`check-data DATA`, `export MODEL`): no script breaks. The positional is
    left out of `--help`; given with a different `--PARAMETER`, it is a one-line usage error.

    Put it above `user_errors`; the command declares `--PARAMETER` with `cls=RequiredInHelp`."""
    positional_name = f"{parameter}_positional"
    flag = f"--{parameter}"

    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def merged(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - the command's own result
            positional, option = kwargs.pop(positional_name), kwargs.get(parameter)
            if positional is not None and option is not None and not _same_path(positional, option):
                raise click.UsageError(
                    f"{positional} and {flag} {option} name two different {what}s: give one, as {flag}"
                )
            kwargs[parameter] = option if option is not None else positional
            if kwargs[parameter] is None:
                raise click.UsageError(f"Missing option '{flag}' ({what}).")
            return function(*args, **kwargs)

        return click.argument(
            positional_name, cls=UnlistedArgument, required=False, type=path_type, metavar=parameter.upper()
        )(merged)

    return decorate


def renamed_flag(old: str, new: str, parameter: str) -> Callable:
    """Accept `old`, a flag's spelling before it got its own name, as `new` (the command's
    `parameter`): hidden from `--help`, the same effect, and one note on stderr naming `new`.
    Put it above `user_errors`."""
    hidden_name = f"{parameter}_old_spelling"

    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def merged(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - the command's own result
            if kwargs.pop(hidden_name):
                command_path = click.get_current_context().command_path
                note = f"note: `{command_path} {old}` is the old spelling of {new} (same effect)"
                say(note, err=True)
                kwargs[parameter] = True
            return function(*args, **kwargs)

        old_option = click.option(old, hidden_name, is_flag=True, hidden=True, help=f"Old spelling of {new}.")
        return old_option(merged)

    return decorate


def _same_path(first: Path, second: Path) -> bool:
    return expanded(first).resolve() == expanded(second).resolve()  # `~nosuchuser` as written


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
