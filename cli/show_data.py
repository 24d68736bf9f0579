"""`fastseg show-data`."""

from __future__ import annotations

from pathlib import Path

import click

from cli.errors import user_errors
from cli.options import DATA_HELP, from_recipe, recipe_option, train_default
from cli.output import say


@click.command(context_settings={"show_default": True})
@click.option("--data", required=True, type=click.Path(path_type=Path), help=DATA_HELP)
@click.option(
    "--out", required=True, type=click.Path(path_type=Path, file_okay=False), help="Folder for the PNGs."
)
@recipe_option("Show the inputs this training recipe makes (crops and letterbox, or the squish).")
@from_recipe("--size", type=click.IntRange(min=32), help="Model input side.")
@click.option("--rows", type=click.IntRange(min=1, max=16), default=4)
@click.option("--seed", type=int, default=train_default("seed"))
@user_errors
def command(data: Path, out: Path, recipe_name: str, size: int | None, rows: int, seed: int) -> None:
    """Write train_ds_sample.png (augmented, from the train split) and val_ds_sample.png, image |
    mask in the data set's colours, as the recipe's training would see them."""
    from fastseg.outputs import guard
    from fastseg.runs.folder import TRAIN_SAMPLE, VAL_SAMPLE

    for name in (TRAIN_SAMPLE, VAL_SAMPLE):  # a user's file of that name is never replaced
        guard(out / name, "data sample", option=None)

    from fastai.torch_core import set_seed

    from fastseg.data.factory import open_dataset
    from fastseg.errors import DatasetError
    from fastseg.paths import create_folder
    from fastseg.training.data import build_dataloaders
    from fastseg.training.recipes import recipe
    from fastseg.training.samples import save_dataset_samples

    folder = open_dataset(data)
    split = folder.split("train", seed=42)
    folder.require_files([*split.train, *split.valid])
    shown = min(rows, len(split.train), len(split.valid))  # fastai's training loader drops a short batch
    if shown < 1:
        raise DatasetError(f"{data}: show-data needs a training and a validation image")
    if shown < rows:
        say(f"note: {shown} row(s): the data set has {len(split.train)} training and "
                   f"{len(split.valid)} validation image(s)")  # fmt: skip
    rows = shown
    # a smaller --size shrinks the crop; the recipe checks --seed as train does (torch's seed is 64-bit)
    config = recipe(recipe_name, seed=seed, **({"size": size} if size else {}))
    set_seed(seed)
    create_folder(out, "output folder")  # one line, not a traceback at the first figure
    dls = build_dataloaders(
        folder, split.train, split.valid, size=config.size, batch_size=rows, augment=config.augment,
        num_workers=0, seed=seed, crop_size=config.train_size,
    )  # fmt: skip
    for path in save_dataset_samples(dls, out, rows=rows, classes=folder.classes):
        say(f"wrote {path}")
