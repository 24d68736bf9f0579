"""`fastseg report`."""

from __future__ import annotations

import math
from pathlib import Path

import click

from cli.errors import user_errors
from cli.options import inference_options
from cli.progress import counted
from fastseg.data.split import SUBSETS
from fastseg.inference.ranking import RANKINGS


@click.command(context_settings={"show_default": True})
@click.option(
    "--model",
    required=True,
    type=click.Path(path_type=Path, exists=True),
    help="The run folder `fastseg train` wrote (its split.json decides the images).",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="The data set: a dataset.yaml, a folder holding one, or a VOC root  [default: the run's --data]",
)
@click.option("--split", "subset", type=click.Choice(SUBSETS), default=SUBSETS[0])
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    show_default="MODEL/report, where `fastseg runs` finds the test mIoU",
)
@click.option(
    "--rank-by",
    type=click.Choice(list(RANKINGS)),
    default="loss",
    help="Per-image score for best/worst (the seed ranked by weighted loss).",
)
@click.option("--force", is_flag=True, help="Replace a non-empty --out folder that is not a fastseg report.")
@inference_options
@user_errors
def command(quiet: bool, **options) -> None:
    """Evaluate a run on its test (or val/train) split at each image's original resolution:
    metrics.json, per-class and per-image CSVs, confusion matrix, best/worst figures, report.html."""
    from fastseg.inference.loop import no_progress
    from fastseg.inference.report import report

    result = report(progress=no_progress if quiet else counted("report batches"), **options)
    scores = result.scores
    click.echo(f"{result.subset} split, {result.images} images, original resolution, void excluded")
    for name, value in (
        ("pixel accuracy", scores.pixel_accuracy),
        ("mean class accuracy", scores.mean_class_accuracy),
        ("mean IoU", scores.mean_iou),
        ("frequency-weighted IoU", scores.frequency_weighted_iou),
    ):
        click.echo(f"  {name:<24}{'n/a' if math.isnan(value) else f'{100 * value:6.2f} %'}")
    replaced = " (replaced the earlier report there)" if result.replaced else ""
    click.echo(f"report: {result.out / 'report.html'}{replaced}")
