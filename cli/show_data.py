"""`fastseg show-data`."""

from __future__ import annotations

from pathlib import Path

import click

from cli.errors import user_errors
from cli.options import train_default


@click.command(context_settings={"show_default": True})
@click.option(
    "--data", required=True, type=click.Path(path_type=Path), help="Folder holding VOCdevkit/VOC2012."
)
@click.option(
    "--out", required=True, type=click.Path(path_type=Path, file_okay=False), help="Folder for the PNGs."
)
@click.option("--size", type=click.IntRange(min=32), default=train_default("size"))
@click.option("--rows", type=click.IntRange(min=1, max=16), default=4)
@click.option("--seed", type=int, default=train_default("seed"))
@user_errors
def command(data: Path, out: Path, size: int, rows: int, seed: int) -> None:
    """Write train_ds_sample.png (augmented) and val_ds_sample.png: image | mask in VOC colours."""
    from fastai.torch_core import set_seed

    from fastseg.data import build_dataloaders
    from fastseg.samples import save_dataset_samples
    from fastseg.split import seed_split
    from fastseg.voc import find_voc

    folder = find_voc(data)
    split = seed_split(folder.ids("train"), folder.ids("val"))
    folder.require_files([*split.train, *split.valid])
    set_seed(seed)
    dls = build_dataloaders(
        folder, split.train, split.valid, size=size, batch_size=rows, num_workers=0, seed=seed
    )
    for path in save_dataset_samples(dls, out, rows=rows):
        click.echo(f"wrote {path}")
