"""`fastseg report`."""

from __future__ import annotations

from pathlib import Path

import click

from cli.errors import user_errors
from cli.options import inference_options, replace_foreign_option
from cli.output import say
from cli.progress import counted
from fastseg.data.split import SUBSETS
from fastseg.inference.ranking import DEFAULT_RANKING, RANKINGS
from fastseg.inference.runtime_choice import RUNTIME_HELP, RUNTIMES
from fastseg.number_style import quantity, score


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
@replace_foreign_option("a non-empty --out folder that is not a fastseg report")
@click.option(
    "--runtime",
    type=click.Choice(RUNTIMES),
    default=None,
    show_default="torch for a run folder, a model file as it is",
    help=RUNTIME_HELP + " RUN/report holds model.pth's scores, which `fastseg runs` shows; another "
    "file's report goes to RUN/report-STEM.",
)
@inference_options
@user_errors
def command(quiet: bool, **options) -> None:
    """Evaluate a run on its test (or val/train) split at each image's original resolution:
    metrics.json, per-class and per-image CSVs, confusion matrix, best/worst figures, report.html.
    An earlier report in --out is replaced (and the summary says so).
    \f
    `--force` still works as the old spelling of `--replace-foreign` (see cli/predict.py)."""
    from fastseg.inference.report import report
    from fastseg.inference.segmented import no_progress

    options["model"] = chosen_model(options["model"], options.pop("runtime"), options["device"],
                                    options["precision"], quiet)  # fmt: skip
    result = report(progress=no_progress if quiet else counted("report batches"), **options)
    scores = result.scores
    images = quantity(result.images, "image")
    say(f"{result.subset} split, {images}, original resolution, void excluded")
    for name, value in (
        ("pixel accuracy", scores.pixel_accuracy),
        ("mean class accuracy", scores.mean_class_accuracy),
        ("mean IoU", scores.mean_iou),
        ("frequency-weighted IoU", scores.frequency_weighted_iou),
    ):
        say(f"  {name:<24}{score(value)}")
    replaced = " (replaced the earlier report there)" if result.replaced else ""
    say(f"report: {result.out / 'report.html'}{replaced}")


def chosen_model(model: Path, runtime: str | None, device: str, precision: str, quiet: bool) -> Path:
    """The model file `--runtime` means for `--model` (`fastseg.inference.runtime_choice`, as
    predict), said in one line unless `quiet`; a run folder run on torch stays the folder. Left
    out, nothing is chosen: a run folder is its model.pth and a file is run as it is."""
    from fastseg.inference.runtime import open_onnx
    from fastseg.inference.runtime_choice import check_opened, choose_runtime, planned_label
    from fastseg.launch.device import resolve_device

    if runtime is None:  # as before --runtime: a run folder's model.pth (RUN/report), or the file given
        return model
    target = resolve_device(device)
    choice = choose_runtime(model, runtime, target, precision, device)
    if runtime in ("onnx", "int8") and not Path(model).is_dir():  # the file must hold the precision
        check_opened(choice, open_onnx(choice.path)[0], runtime)  # asked for (a run folder's was checked)
    if not quiet:
        say(choice.line(planned_label(choice, target, precision)))
    return model if Path(model).is_dir() and choice.kind == "torch" else choice.path
