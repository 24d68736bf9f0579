"""`fastseg export`."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from cli.errors import user_errors
from cli.options import RequiredInHelp, positional_alias, renamed_flag, verbose_option
from cli.output import say
from cli.progress import counted
from fastseg.export import CALIBRATION_IMAGES, FORMATS
from fastseg.number_style import score, score_change

MODEL_PATH = click.Path(path_type=Path, exists=True)
# Options that only --int8 reads: given without it they would be ignored silently, so they are a
# usage error (whatever the value: the user asked for something export would not do). The batch
# size and decoding workers are INT8's calibration and validation passes'; fp32 decodes no image.
INT8_ONLY = ("accept_int8_loss", "calibration_images", "data", "batch_size", "num_workers")


@click.command(context_settings={"show_default": True})
@click.option(
    "--model", cls=RequiredInHelp, type=MODEL_PATH,
    help="A run folder or its model.pth (--int8 needs the run folder: its images calibrate and check).",
)  # fmt: skip
@click.option("--format", "format", type=click.Choice(FORMATS), default=FORMATS[0])
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    show_default="model.onnx (model.int8.onnx with --int8) beside model.pth",
)
@click.option(
    "--int8",
    is_flag=True,
    help="Quantise to INT8 (calibrated on the run's training images); refused if the validation "
    "mIoU drops by more than 0.01 (see --accept-int8-loss).",
)
@click.option(
    "--calibration-images", type=click.IntRange(min=1), default=CALIBRATION_IMAGES,
    help="Training images that calibrate INT8's activation ranges.",
)  # fmt: skip
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="The run's data set, for --int8: a dataset.yaml, a folder holding one, or a VOC root"
    "  [default: the run's --data]",
)
@click.option(
    "--accept-int8-loss", is_flag=True,
    help="Write the INT8 file even if its validation mIoU is more than 0.01 below fp32's (the file "
    "records that it was accepted).",
)  # fmt: skip
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=8,
    help="Images per batch of INT8's calibration and validation passes (--int8).",
)
@click.option(
    "--num-workers",
    type=int,
    default=-1,
    help="Decoding workers of INT8's validation pass (--int8; -1: one per spare core).",
)
@click.option("--quiet", is_flag=True, help="No progress lines.")
@verbose_option
@positional_alias("model", MODEL_PATH, "model")  # `export MODEL`, the spelling before --model
@renamed_flag("--force", "--accept-int8-loss", "accept_int8_loss")
@user_errors
def command(model: Path, quiet: bool, accept_int8_loss: bool, **options) -> None:
    """Export the model (a run folder or its model.pth) to ONNX with dynamic batch, height and width,
    BatchNorm folded, and what predict needs in its metadata; `fastseg predict --model FILE.onnx`
    then runs it on onnxruntime.
    \f
    `--force` is accepted as the old spelling of `--accept-int8-loss`, with the same effect and a
    note naming the new flag: before issue #21 it was export's only meaning of --force, so a script
    written then meant "keep the INT8 file"; read as "replace fastseg's own earlier output" (what
    --force means elsewhere) it would change nothing, since export replaces its own earlier file
    anyway, and such a script would suddenly fail on a lossy INT8 file. `export MODEL` (positional)
    is the old spelling of `--model MODEL`. `--accept-int8-loss`, `--calibration-images`, `--data`,
    `--batch-size` and `--num-workers` given without `--int8` are a usage error (they were silently
    ignored); the old `--force` without `--int8` still passes, as it always did."""
    context = click.get_current_context()
    for name in INT8_ONLY:  # given on the command line: the old --force is another parameter, it passes
        if context.get_parameter_source(name) is ParameterSource.COMMANDLINE and not options["int8"]:
            flag = "--" + name.replace("_", "-")
            raise click.UsageError(f"{flag} applies to --int8 only: add --int8, or leave it out")

    from fastseg.export.exporter import export
    from fastseg.inference.segmented import no_progress

    progress = no_progress if quiet else counted("validation batches")
    result = export(model, progress=progress, force=accept_int8_loss, **options)
    if result.check is not None:
        check = result.check
        say(
            f"validation mIoU on {check.validation_images} images: fp32 {score(check.fp32_miou)}, "
            f"INT8 {score(check.int8_miou)} ({score_change(check.int8_miou - check.fp32_miou)}; "
            f"calibrated on {check.calibration_images} training images)"
        )
    size = result.path.stat().st_size / 2**20
    say(f"{result.precision} ONNX model: {result.path} ({size:.1f} MiB)")
