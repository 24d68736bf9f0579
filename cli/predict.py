"""`fastseg predict`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cli.errors import user_errors
from cli.options import inference_options, replace_foreign_option
from cli.output import say
from cli.progress import counted
from fastseg.inference.runtime_choice import RUNTIME_HELP, RUNTIMES


@click.command(context_settings={"show_default": True})
@click.option(
    "--model",
    "model",
    required=True,
    type=click.Path(path_type=Path, exists=True),
    help="A run folder, its model.pth, or an .onnx file from `fastseg export` (runs on onnxruntime).",
)
@click.option("--runtime", type=click.Choice(RUNTIMES), default="auto", help=RUNTIME_HELP)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Output folder; mirrors the input tree.",
)
@click.option(
    "--size",
    type=click.IntRange(min=32),
    default=None,
    help="Side of the model's square input  [default: the model's own: 512 for the fast recipe, "
    "224 for the seed's]",
)
@click.option("--tta", is_flag=True, help="Average with the horizontally flipped prediction.")
@click.option("--overlay", is_flag=True, help="Also write <name>.overlay.jpg: image blended with labels.")
@click.option(
    "--skip-existing",
    is_flag=True,
    help="Leave images whose PNG (and overlay, with --overlay) exists: resume a run.",
)
@replace_foreign_option("a file where a mask or overlay goes; never an input")
@inference_options
@user_errors
def command(model: Path, inputs: tuple[Path, ...], out: Path, quiet: bool, **options) -> None:
    """Segment INPUTS (image files and folders, walked recursively) into palette PNGs whose pixel
    values are the model's class indices, at each image's original size, plus predictions.csv.
    \f
    `--force` still works as the old spelling of `--replace-foreign` (the same effect, and a note
    naming the new flag): `--force` now means "replace fastseg's own earlier output" on every
    command, and predict replaces its own earlier masks without being asked."""
    from fastseg.inference.predict import predict
    from fastseg.inference.segmented import no_progress
    from fastseg.launch.processes import rank_and_world

    rank, _ = rank_and_world()
    progress = no_progress if quiet or rank else counted("predict batches")
    announce = None if quiet or rank else say  # the runtime chosen, and why: one line
    summary = predict(model, list(inputs), out, progress=progress, announce=announce, **options)
    for path, reason in summary.failures:
        say(f"{path}: {reason}", err=True)
    if rank:
        sys.exit(1 if summary.failed else 0)
    skipped = f", {summary.skipped} skipped (already done)" if summary.skipped else ""
    say(
        f"{summary.segmented} segmented, {summary.failed} failed{skipped}; summary: {summary.csv_path}"
    )
    if summary.failed:
        sys.exit(1)
