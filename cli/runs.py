"""`fastseg runs`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.errors import user_errors
from cli.output import say
from fastseg.errors import FastsegError, shown
from fastseg.number_style import score
from fastseg.runs.table import COLUMNS

HEADERS = {"data_set": "data set", "valid_miou": "val mIoU", "valid_pixel_accuracy": "val acc",
           "test_miou": "test mIoU"}  # fmt: skip


def _cell(name: str, row: dict) -> str:
    value = row[name]
    if name == "epochs":
        planned = row["planned_epochs"]  # None: a damaged run, or a config.json without epochs
        return f"{value}/{'-' if planned is None else planned}"
    if value is None:
        return "-"
    if name == "duration":
        minutes, seconds = divmod(round(value), 60)
        return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{seconds:02d}s"
    return score(value) if isinstance(value, float) else shown(value)


def format_table(rows: list[dict]) -> str:
    """Aligned columns; `epochs` shows run / planned."""
    names = [name for name in COLUMNS if name != "planned_epochs"]
    header = [HEADERS.get(name, name) for name in names]
    cells = [header, *([_cell(name, row) for name in names] for row in rows)]
    widths = [max(len(line[index]) for line in cells) for index in range(len(names))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
                     for line in cells)  # fmt: skip


@click.command(context_settings={"show_default": True})
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False), default=Path("outputs/runs"))
@click.option("--sort", type=click.Choice(COLUMNS), default="date", help="Column to sort by.")
@click.option("--reverse", is_flag=True, help="Largest (or latest) first.")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of rows, for scripts.")
@user_errors
def command(folder: Path, sort: str, reverse: bool, as_json: bool) -> None:
    """List the run folders under FOLDER: recipe, data set, epochs run / planned, validation
    mIoU and pixel accuracy of the kept weights (the best epoch's under --keep best, the last
    epoch's under --keep final), test mIoU (from RUN/report/metrics.json, `fastseg report`'s default
    output), time spent training, start date and status (finished / resumable / interrupted)."""
    from fastseg.paths import UNREADABLE_FOLDER
    from fastseg.runs.table import runs_table

    source = click.get_current_context().get_parameter_source("folder")
    if source is click.core.ParameterSource.DEFAULT and not folder.is_dir():
        raise FastsegError(f"{folder}: no such folder; `fastseg train` puts runs made without --out "
                           "there: name the folder that holds yours (fastseg runs FOLDER)")  # fmt: skip
    unreadable: list[Path] = []
    rows = runs_table(folder, sort=sort, reverse=reverse, unreadable=unreadable)
    for skipped in unreadable:  # on stderr: --json's output stays the rows alone
        say(f"{skipped}: {UNREADABLE_FOLDER}; runs in it are not listed", err=True)
    if as_json:  # a non-UTF-8 folder name as `bad\xff`, as every line of fastseg spells it: json.dumps
        # wrote the lone surrogate Python keeps (`\udcff`), which strict parsers (serde_json) refuse
        click.echo(json.dumps(_bytes_escaped(rows), indent=1))
    elif rows:
        click.echo(format_table(rows))
    else:
        say(f"no runs in {folder}")


def _bytes_escaped(value: object) -> object:
    """`value` with every string through `errors.bytes_escaped`, lists and mappings walked."""
    from fastseg.errors import bytes_escaped

    if isinstance(value, str):
        return bytes_escaped(value)
    if isinstance(value, list):
        return [_bytes_escaped(item) for item in value]
    if isinstance(value, dict):
        return {_bytes_escaped(key): _bytes_escaped(item) for key, item in value.items()}
    return value
