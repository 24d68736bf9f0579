"""`fastseg import FORMAT SOURCE --out DATASET`."""

from __future__ import annotations

from pathlib import Path

import click

from cli.check_data import show_survey
from cli.errors import user_errors
from cli.options import force_option, verbose_option
from cli.output import say
from cli.progress import counted_with_total
from fastseg.importing import FORMATS


@click.command(context_settings={"show_default": True})
@click.argument("format_name", metavar="FORMAT", type=click.Choice(list(FORMATS)))
@click.argument("source", type=click.Path(path_type=Path, exists=True))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="The data set folder to create (dataset.yaml, images/, masks/).",
)
@click.option(
    "--images",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    default=None,
    show_default="beside the export",
    help="Where the export's images are (COCO, CVAT, Label Studio, YOLO lists).",
)
@click.option(
    "--val", type=float, default=0.2, help="Share of the images for validation (exports without splits)."
)
@click.option("--test", type=float, default=0.1, help="Share of the images for testing; 0: none.")
@click.option("--seed", type=click.IntRange(min=0), default=42, help="Seed of the random split.")
@click.option(
    "--classes",
    default=None,
    help="Object classes in index order from 1, comma-separated (background is 0); "
    "a label not listed is a problem. Default: every label, sorted.",
)
@click.option(
    "--order",
    default=None,
    help="Overlaps: comma-separated classes, the first named wins shared pixels. "
    "Default: later annotations on top, as the tools draw them.",
)
@click.option(
    "--link/--copy",
    "link",
    default=True,
    help="Hard-link the images (copied where links are impossible), or always copy.",
)
@click.option(
    "--crowd-as-class", is_flag=True, help="COCO: iscrowd regions keep their class (default: void)."
)
@click.option(
    "--line-width",
    type=click.IntRange(min=1, max=1000),
    default=10,
    help="LabelMe: width of lines and linestrips in pixels (labelme's own default).",
)
@force_option("import in --out (the files its .fastseg-import.json lists)")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    show_default="up to 4",
    help="Images drawn and written at once.",
)
@click.option("--quiet", is_flag=True, help="No progress line.")
@verbose_option
@user_errors
def command(
    format_name: str,
    source: Path,
    out: Path,
    images: Path | None,
    val: float,
    test: float,
    seed: int,
    classes: str | None,
    order: str | None,
    link: bool,
    crowd_as_class: bool,
    line_width: int,
    force: bool,
    threads: int | None,
    quiet: bool,
) -> None:
    """Import a labelling tool's export (or Cityscapes / ADE20K) as a data set `train` reads.

    FORMAT: coco (a COCO JSON), labelme (a folder of LabelMe JSON), yolo (an ultralytics data.yaml
    or its folder), cvat (a "Segmentation mask 1.1" folder or a "CVAT for images 1.1" XML),
    labelstudio (a Label Studio JSON export), cityscapes (the folder holding gtFine/ and
    leftImg8bit/), ade20k (ADEChallengeData2016). Every problem of the export is listed at once
    and nothing is created; otherwise DATASET is written whole and check-data's table printed."""
    from fastseg.data.factory import open_dataset
    from fastseg.data.survey import survey_dataset
    from fastseg.importing.importer import import_dataset
    from fastseg.importing.source import ReadOptions
    from fastseg.importing.writer import DATASET_FILE, ImportOptions

    options = ImportOptions(
        val=val,
        test=test,
        seed=seed,
        classes=_names(classes),
        order=_names(order),
        copy=not link,
        force=force,
        threads=threads,
    )
    read_options = ReadOptions(images=images, crowd_as_class=crowd_as_class, line_width=line_width)
    progress = None if quiet else counted_with_total("images imported")
    result = import_dataset(format_name, source, out, options, read_options, progress)
    for note in result.notes:
        say(f"note: {note}")
    splits = ", ".join(f"{split} {count}" for split, count in result.counts.items())
    say(
        f"{result.out}: {sum(result.counts.values())} images ({splits}), {len(result.names)} classes; "
        f"images linked {result.linked}, copied {result.copied}; "
        f"{result.contested} pixel(s) contested between classes"
    )
    show_survey(survey_dataset(open_dataset(result.out / DATASET_FILE), threads),
                "problem(s) in the imported data set")  # fmt: skip


def _names(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(name.strip() for name in text.split(","))
