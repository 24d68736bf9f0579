"""`fastseg report`."""

from __future__ import annotations

from pathlib import Path

import click

from cli.errors import user_errors
from cli.options import REPLACE_FOREIGN_HELP, inference_options, renamed_flag
from cli.progress import counted
from fastseg.data.split import SUBSETS
from fastseg.inference.ranking import DEFAULT_RANKING, RANKINGS
from fastseg.number_style import score


@click.command(context_settings={"show_default": True})
@click.option(
    "--model",
    required=True,
    type=click.Path(path_type=Path, exists=True),
    help="A run folder `fastseg train` wrote, or a model file inside one: its model.pth or an .onnx "
    "from `fastseg export` (the run's split.json decides the images).",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="A dataset.yaml, a folder holding one, or a VOC root  [default: the run's --data]",
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
    default=DEFAULT_RANKING,
    help="Per-image score that picks the best and worst images shown (the seed ranked by weighted loss).",
)
@click.option(
    "--replace-foreign", "force", is_flag=True,
    help=REPLACE_FOREIGN_HELP.format(what="a non-empty --out folder that is not a fastseg report"),
)  # fmt: skip
@inference_options
@renamed_flag("--force", "--replace-foreign", "force")  # report's --force before issue #21
@user_errors
def command(quiet: bool, **options) -> None:
    """Evaluate a run on its test (or val/train) split at each image's original resolution:
    metrics.json, per-class and per-image CSVs, confusion matrix, best/worst figures, report.html.
    An earlier report in --out is replaced (and the summary says so).
    \f
    `--force` still works as the old spelling of `--replace-foreign` (see cli/predict.py)."""
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
        click.echo(f"  {name:<24}{score(value)}")
    replaced = " (replaced the earlier report there)" if result.replaced else ""
    click.echo(f"report: {result.out / 'report.html'}{replaced}")
