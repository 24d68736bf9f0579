"""`fastseg demo`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cli.errors import user_errors
from cli.options import recipe_option, verbose_option
from cli.output import say
from fastseg.number_style import quantity


@click.command(context_settings={"show_default": True})
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("outputs/demo"))
@click.option("--epochs", type=click.IntRange(min=1), default=20)
@recipe_option("The training recipe, shrunk for CPU (see `fastseg train --help`).")
@click.option("--force", is_flag=True, help="Replace a previous demo run in --out.")
@click.option("--quiet", is_flag=True, help="Only errors and the summary.")
@verbose_option  # the same --verbose as every command that prints progress (issue #21)
@user_errors
def command(out: Path, epochs: int, recipe_name: str, force: bool, quiet: bool) -> None:
    """Offline, on CPU: generate a small VOC-format dataset, train on it (1½-2 min on 2 cores), segment its
    images and report on the test half."""
    from fastseg.demo import run_demo

    interactive = sys.stdout.isatty() and not quiet  # else no bars: a log file keeps their fragments
    result = run_demo(out, epochs=epochs, force=force, show_progress=interactive, recipe_name=recipe_name,
                      echo=None if quiet or interactive else say,
                      stage=None if quiet else say)  # fmt: skip
    training = result.training
    say(f"data: {result.data}")
    say(f"run: {training.run_dir} ({training.epochs_run} epochs)")
    if training.best_miou is not None:
        say(
            f"{training.kept} validation mIoU {training.best_miou:.3f}, pixel accuracy "
            f"{training.best_pixel_accuracy:.3f} (epoch {training.best_epoch})"
        )
    predictions = result.predictions
    say(
        f"predictions: {predictions.segmented} segmented, {predictions.failed} failed "
        f"-> {predictions.csv_path.parent}"
    )
    scores = result.report.scores
    say(
        f"test half ({quantity(result.report.images, 'image')}, original size): "
        f"pixel accuracy {scores.pixel_accuracy:.3f}, mIoU {scores.mean_iou:.3f} "
        f"-> {result.report.out / 'report.html'}"
    )
