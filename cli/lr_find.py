"""`fastseg lr-find`: fastai's learning-rate finder on a recipe's model and data."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click

from cli.errors import user_errors
from cli.options import force_option
from cli.output import say
from cli.train import command as train_command
from cli.train import new_config

# train's options that shape the model, the data and the optimiser; the ones about a run's
# length, its folder or its logging mean nothing to the finder.
NOT_FOR_THE_FINDER = ("out", "lr", "epochs", "patience", "keep", "resume", "force", "trackers", "quiet")
SHARED_OPTIONS = [option for option in train_command.params if option.name not in NOT_FOR_THE_FINDER]


def default_out() -> Path:
    return Path("outputs") / "lr-find" / datetime.now().strftime("%Y%m%d-%H%M%S")


@click.command(params=list(SHARED_OPTIONS), context_settings={"show_default": True})
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for lr_find.png and lr_find.csv (nothing else is written)  "
    "[default: outputs/lr-find/<timestamp>]",
)
@click.option(
    "--iterations",
    type=click.IntRange(min=20, max=10_000),  # lr_find.MIN_ITERATIONS, lr_find.MAX_ITERATIONS
    default=100,
    help="Training batches the sweep may take.",
)
@click.option("--quiet", is_flag=True, help="Print only the suggestion and the plot's path.")
@force_option("lr_find.png and lr_find.csv in --out")
@user_errors
def command(out: Path | None, iterations: int, quiet: bool, force: bool, config_file: Path | None,
            **options) -> None:  # fmt: skip
    """Sweep the learning rate from 1e-7 to 10 over training batches of the recipe's model and
    data (fastai's lr_find; the model and data options are train's), save the loss curve as
    OUT/lr_find.png and print fastai's valley suggestion for `fastseg train --lr`."""
    from fastseg.folder_lock import holding
    from fastseg.training.lr_find import check_outputs, find_learning_rate, save_lr_find

    out = out or default_out()
    check_outputs(out, force)  # before minutes of sweeping
    config, _, _ = new_config(options, out, config_file)
    # a second lr-find into `out` is refused at once, not after its sweep
    with holding(out, "lr-find", "wait for it to end or choose another --out"):
        found = find_learning_rate(config, iterations, show_progress=sys.stdout.isatty() and not quiet,
                                   echo=None if quiet else say)  # fmt: skip
        plot = save_lr_find(found, out, force)
    say(f"suggested --lr {found.suggestion:.3g} (fastai lr_find valley, {len(found.lrs)} batches)")
    say(f"plot: {plot}")
