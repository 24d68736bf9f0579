"""`fastseg export`."""

from __future__ import annotations

from pathlib import Path

import click

from cli.errors import user_errors
from cli.progress import counted
from fastseg.export import CALIBRATION_IMAGES, FORMATS


@click.command(context_settings={"show_default": True})
@click.argument("model", type=click.Path(path_type=Path, exists=True))
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
    "mIoU drops more than 1 point.",
)
@click.option(
    "--calibration-images", type=click.IntRange(min=1), default=CALIBRATION_IMAGES,
    help="Training images that calibrate INT8's activation ranges.",
)  # fmt: skip
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="The run's data set, for --int8: a dataset.yaml, its folder or a VOC root"
    "  [default: the run's --data]",
)
@click.option("--force", is_flag=True, help="Write the INT8 file even if it loses more than 1 mIoU point.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8)
@click.option("--num-workers", type=int, default=-1, help="Decoding workers (-1: one per spare core).")
@click.option("--quiet", is_flag=True, help="No progress lines.")
@user_errors
def command(model: Path, quiet: bool, **options) -> None:
    """Export MODEL (a run folder or its model.pth) to ONNX with dynamic batch, height and width,
    BatchNorm folded, and what predict needs in its metadata; `fastseg predict --model FILE.onnx`
    then runs it on onnxruntime."""
    from fastseg.export.exporter import export
    from fastseg.inference.loop import no_progress

    result = export(model, progress=no_progress if quiet else counted("validation batches"), **options)
    if result.check is not None:
        check = result.check
        click.echo(
            f"validation mIoU on {check.validation_images} images: fp32 {check.fp32_miou:.4f}, "
            f"INT8 {check.int8_miou:.4f} ({100 * (check.int8_miou - check.fp32_miou):+.2f} points; "
            f"calibrated on {check.calibration_images} training images)"
        )
    size = result.path.stat().st_size / 2**20
    click.echo(f"{result.precision} ONNX model: {result.path} ({size:.1f} MiB)")
