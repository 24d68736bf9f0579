"""`fastseg check-data`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cli.errors import user_errors
from cli.options import DATA_HELP, RequiredInHelp, positional_alias, verbose_option
from cli.output import say
from cli.progress import counted_with_total

if TYPE_CHECKING:
    from fastseg.data.survey import DataSurvey

DATA_PATH = click.Path(path_type=Path)


@click.command(context_settings={"show_default": True})
@click.option("--data", cls=RequiredInHelp, type=DATA_PATH, help=DATA_HELP)
@click.option(
    "--threads", type=click.IntRange(min=1), default=None, show_default="one per core",
    help="Pairs opened at once (Pillow decodes outside the GIL).",
)  # fmt: skip
@click.option("--quiet", is_flag=True, help="No progress line.")
@verbose_option
@positional_alias("data", DATA_PATH, "data set")  # `check-data DATA`, the spelling before --data
@user_errors
def command(data: Path, threads: int | None, quiet: bool) -> None:
    """Check a data set without training: per split, the number of images and each class's share of
    the labelled pixels; then every problem, one line each (unreadable files, mask values that are
    neither a class nor the ignore value, size mismatches, images without masks and masks without
    images, empty splits). Exits 1 when there is a problem."""
    from fastseg.data.factory import open_dataset
    from fastseg.data.survey import survey_dataset

    folder = open_dataset(data)
    progress = None if quiet else counted_with_total("pairs checked")
    survey = survey_dataset(folder, threads, progress)
    show_survey(survey, "problem(s)")
    click.echo("no problems found")


def show_survey(survey: DataSurvey, problems_are: str) -> None:
    """check-data's table, notes and problems (one line each); exit 1 after the count when there
    is a problem. `fastseg import` shows the data set it wrote the same way."""
    from fastseg.data.survey import survey_table

    say(survey.description)
    for line in survey_table(survey):
        say(line)
    for note in survey.notes:
        say(f"note: {note}")
    for problem in survey.problems:
        say(problem)
    if survey.problems:
        say(f"{len(survey.problems)} {problems_are}", err=True)
        sys.exit(1)
