"""`fastseg train`."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click
from click.core import ParameterSource

from cli.errors import user_errors
from cli.options import (
    AUTO_LR,
    DATA_HELP,
    LearningRate,
    RecipeOption,
    force_option,
    options_table,
    recipe_option,
    train_default,
    verbose_option,
)
from cli.output import say
from fastseg.data.class_weights import METHODS
from fastseg.launch.device import DEVICES
from fastseg.number_style import score
from fastseg.training.config import KEEP_RULES, LOSSES, TRACKERS, TRAIN_SETS, TrainConfig
from fastseg.training.recipes import fast_recipe, recipe

# In --help's order: what the run trains and how, each left out to the recipe (`from_recipe`),
# and --encoder-weights, which no recipe sets, where it reads best (after --pretrained).
TRAINING_OPTIONS = (
    RecipeOption("--epochs", click.IntRange(min=1)),
    RecipeOption(
        "--patience", click.IntRange(min=1), "Early stopping: epochs without a better validation mIoU."
    ),
    RecipeOption(
        "--keep",
        click.Choice(KEEP_RULES),
        "Which weights model.pth holds: the best validation epoch (with early stopping) or the final one.",
    ),
    RecipeOption(
        "--lr",
        LearningRate(),
        "Peak learning rate of the one-cycle schedule (decoder and head); auto: run the "
        "learning-rate finder first (`fastseg lr-find`) and train at its suggestion.",
    ),
    RecipeOption(
        "--encoder-lr-ratio",
        click.FloatRange(min=0, min_open=True),
        "The pretrained encoder's learning rate = LR x this.",
    ),
    RecipeOption("--batch-size", click.IntRange(min=1), "Per process."),
    RecipeOption(
        "--size",
        click.IntRange(min=32),
        "Model input side: squished to SIZE² (seed) or letterboxed into it (random-scale crops).",
    ),
    RecipeOption(
        "--crop-size",
        click.IntRange(min=32),
        "Training crop side with random-scale crops.",
        # the preset unchecked: importing the command reads no launcher variable (WORLD_SIZE=abc)
        show_default=f"fast: {fast_recipe().crop_size}, seed: squishes, no crop",
    ),
    RecipeOption("--l1", click.FloatRange(min=0), "L1 regularisation coefficient (0 disables)."),
    RecipeOption(
        "--weight-decay",
        click.FloatRange(min=0),
        "Weight decay: L2 as torch Adam (seed) or decoupled as AdamW (fast).",
    ),
    RecipeOption(
        "--eps", click.FloatRange(min=0, min_open=True), "Adam epsilon (torch's default; fastai's is 1e-5)."
    ),
    # beta2 = 1 never updates the squared-gradient average and divides by a zero bias correction
    RecipeOption(
        "--beta2", click.FloatRange(0, 1, max_open=True), "Adam beta2 (torch's default; fastai's is 0.99)."
    ),
    RecipeOption(
        "--train-set",
        click.Choice(TRAIN_SETS),
        "VOC only (a dataset.yaml trains on its own train split): train, or trainaug: SBD + VOC "
        "train (10,582 ids, VOC val excluded), built by `download --sbd`.",
    ),
    RecipeOption(
        "--class-weights", click.Choice(METHODS), "Loss weighting from the training masks' pixel counts."
    ),
    RecipeOption(
        "--encoder",
        None,
        "vgg16_bn (fastseg's own), or any timm model name (resnet34, convnext_tiny, efficientnet_b0, ...) "
        "behind the same U-Net decoder.",
    ),
    RecipeOption(
        "--loss",
        click.Choice(LOSSES),
        "ce: weighted cross-entropy; dice, focal, lovasz: smp's; ce+dice: the sum. All but lovasz "
        "weight classes (lovasz needs --class-weights none). dice only where every class shows up in "
        "most batches: a class absent from a batch gets no loss, so one the data never shows can "
        "take over.",
    ),
    RecipeOption(
        "--pretrained/--no-pretrained",
        None,
        "Start the encoder from ImageNet weights: torchvision's vgg16_bn, or timm's (downloaded).",
    ),
    click.option(
        "--encoder-weights",
        type=click.Path(path_type=Path, exists=True, dir_okay=False),
        help="Local state dict for the encoder (works offline): vgg16_bn's, or the timm model's "
        "(.pth or .safetensors).",
    ),
    RecipeOption(
        "--freeze-epochs",
        click.IntRange(min=0),
        "Epochs training the decoder only before the main schedule (checkpointed and resumable like it).",
    ),
    RecipeOption(
        "--random-scale-crop/--squish",
        None,
        "Train on random-scale crops (longer side SIZE x 0.5-2, CROP_SIZE² crop) and letterbox at "
        "evaluation, or squish every image to SIZE².",
    ),
    RecipeOption(
        "--compile/--no-compile",
        None,
        "torch.compile the model (CUDA; epoch 1 compiles it).",
        name="compile_model",
    ),
)


def default_run_dir() -> Path:
    return Path("outputs") / "runs" / datetime.now().strftime("%Y%m%d-%H%M%S")


@click.command(context_settings={"show_default": True})
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="YAML file of options, or a run's config.json to repeat that run; options given here win.",
)
@click.option("--data", type=click.Path(path_type=Path), help=f"{DATA_HELP}  [required, here or in --config]")
@click.option(
    "--out", type=click.Path(path_type=Path), help="Run folder  [default: outputs/runs/<timestamp>]"
)
@recipe_option(
    "Preset the options without a value start from: fast (random-scale crops, AdamW; on VOC, SBD "
    "trainaug: `download --sbd`) or seed (the seed's exact recipe).",
)
@options_table(TRAINING_OPTIONS)
@click.option("--device", type=click.Choice(DEVICES), default=train_default("device"))
@click.option("--seed", type=int, default=train_default("seed"))
@click.option(
    "--num-workers",
    type=int,
    default=train_default("num_workers"),
    help="DataLoader workers (-1: one per spare core; at most 4 a core).",
)
@click.option(
    "--resume",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="Continue an interrupted run folder from its last checkpoint, with the options in its "
    "config.json (only --device, --num-workers, --quiet, --verbose may be given; a finished run: say "
    "where its model is, change nothing).",
)
@force_option("run in --out (its run files: config, weights, history, logs, exports)")
@click.option(
    "--log",
    "trackers",
    type=click.Choice(list(TRACKERS)),
    multiple=True,
    show_default="none",
    help="Also log to this experiment tracker (repeatable); needs its extra: "
    "`pip install -e '.[NAME]'` in the checkout.",
)
@click.option(
    "--quiet", is_flag=True, help="Print only errors and the summary (RUN/train.log still gets every epoch)."
)
@verbose_option
@user_errors
def command(resume: Path | None, force: bool, quiet: bool, out: Path | None, config_file: Path | None,
            **options) -> None:  # fmt: skip
    """Train an encoder (VGG16-BN, or --encoder NAME from timm) + U-Net decoder on a data set (a
    dataset.yaml, or VOC 2012), validating on its validation images (VOC: the seed's half of val);
    RUN/model.pth holds the weights --keep chooses. Options left out take the --config file's
    value, else the recipe's (`--recipe`); the run's config.json records every value used. On a
    terminal, fastai's progress bars; otherwise one plain line per epoch."""
    from fastseg.launch.processes import rank_and_world
    from fastseg.runs.folder import RunFolder
    from fastseg.training.resume import finished_model
    from fastseg.training.trainer import train

    if resume is not None:
        _nothing_given_beside_resume(resume)
    if resume is not None and (model := finished_model(RunFolder(resume))) is not None:
        if rank_and_world()[0] == 0:  # a retry after the run ended: nothing to do, nothing touched
            say(f"{resume}: this run already finished; its model is {model}")
        return
    if resume is not None:  # a folder without a checkpoint, said before its config.json is missed
        RunFolder(resume).check_can_start(resume=True, force=False)
        config, run_dir, find_lr = RunFolder(resume).read_train_config(), resume, False
        config = _on_this_machine(config, options)
    else:
        config, run_dir, find_lr = new_config(options, out, config_file)
    main_process = rank_and_world()[0] == 0
    interactive = sys.stdout.isatty() and not quiet  # else no bars: a log file keeps their fragments
    if main_process and not quiet:
        say(f"run folder: {run_dir}")
    if find_lr:
        config = _with_found_lr(config, run_dir, force, interactive, quiet)
    result = train(config, run_dir, resume=resume is not None, force=force, show_progress=interactive,
                   echo=None if quiet or interactive else say)  # fmt: skip
    if not main_process:
        return
    kept = "n/a" if result.best_miou is None else f"{score(result.best_miou)} (epoch {result.best_epoch})"
    say(f"done: {result.epochs_run} epochs, {result.kept} validation mIoU {kept}")
    say(f"model: {result.run_dir / 'model.pth'}")


# what --resume leaves to the user: how much is printed, and the machine's own settings (where the
# resumed process runs, never what it trains: training.resume.RESUME_MAY_CHANGE)
MACHINE_OPTIONS = ("device", "num_workers")
RESUME_ALLOWS = ("resume", "quiet", "verbose", *MACHINE_OPTIONS)


def _on_this_machine(config: TrainConfig, options: dict) -> TrainConfig:
    """The run's config with the `--device` / `--num-workers` given here: a run recorded on a
    machine with another device goes on on this one."""
    import dataclasses

    context = click.get_current_context()
    given = {name: options[name] for name in MACHINE_OPTIONS
             if context.get_parameter_source(name) is not ParameterSource.DEFAULT}  # fmt: skip
    if not given:
        return config
    changed = dataclasses.replace(config, **given)
    changed.check_fields()
    return changed


def _nothing_given_beside_resume(resume: Path) -> None:
    """A resumed run trains what its config.json says, so an option given with `--resume`
    (`--epochs 80` to extend it, `--lr`, `--data`, `--force`, ...) would be ignored without a word:
    refused instead, in one line naming them all, before the run is touched."""
    context = click.get_current_context()
    given = [
        _spelling(parameter, context.params.get(parameter.name))
        for parameter in context.command.params
        if parameter.name not in RESUME_ALLOWS and isinstance(parameter, click.Option)
        and context.get_parameter_source(parameter.name) not in (ParameterSource.DEFAULT, None)
    ]  # fmt: skip
    if given:
        raise click.UsageError(
            f"--resume continues {resume} with the options in its config.json, which {', '.join(given)} "
            f"cannot change: leave {'it' if len(given) == 1 else 'them'} out (to train otherwise, start a "
            f"new run: --config {Path(resume) / 'config.json'} --out NEW)"
        )


def _spelling(option: click.Option, value: object) -> str:
    """The flag as given: `--no-pretrained` for a flag pair's off side."""
    if option.secondary_opts and value is False:
        return option.secondary_opts[0]
    return option.opts[0]


def _own_data_trains_on_its_train_split(values: dict) -> None:
    """`--train-set` picks one of VOC's list files; a dataset.yaml names its own train split.

    Such a run still records `train_set: train` (the fast recipe's `trainaug` would be refused, and
    config.json keeps one schema, so old runs resume); `fastseg runs` shows the data set alone
    (`fastseg.runs.table.data_set_label`), never `mydata/train` (issue #21)."""
    from fastseg.data.factory import is_dataset_file

    if not is_dataset_file(values["data"]):
        return
    if "train_set" in values:
        raise click.UsageError(
            f"--train-set is VOC-only (train or trainaug lists); {values['data']} is a dataset.yaml "
            "data set, which trains on its own train split: leave --train-set out"
        )
    values["train_set"] = "train"


def _with_found_lr(
    config: TrainConfig, run_dir: Path, force: bool, interactive: bool, quiet: bool
) -> TrainConfig:
    """`--lr auto`: the learning-rate finder's suggestion (`fastseg lr-find` without its files),
    which config.json then records as the run's --lr. An existing run folder is refused first,
    not after the finder's minutes."""
    import dataclasses

    from fastseg.runs.folder import RunFolder
    from fastseg.training.config import check_out_folder
    from fastseg.training.lr_find import find_learning_rate

    check_out_folder(run_dir)
    RunFolder(run_dir).check_can_start(resume=False, force=force)
    found = find_learning_rate(config, show_progress=interactive)
    if not quiet:
        say(f"--lr auto: {found.suggestion:.3g} (fastai lr_find valley, {len(found.lrs)} batches)")
    return dataclasses.replace(config, lr=found.suggestion)


def new_config(options: dict, out: Path | None, config_file: Path | None):  # noqa: ANN201 - (TrainConfig, Path, bool)
    """The recipe, then the --config file's values, then the options given on the command line
    (those left at their defaults do not override the file); and whether `--lr auto` asks for the
    learning-rate finder (the recipe's lr stands in until it has run)."""
    from fastseg.training.config_file import read_config_file

    context = click.get_current_context()
    options["compile"] = options.pop("compile_model")
    for path_option in ("data", "encoder_weights"):
        if options[path_option] is not None:
            options[path_option] = str(options[path_option])
    parameter = {"compile": "compile_model"}
    given = {
        key: value
        for key, value in options.items()
        if context.get_parameter_source(parameter.get(key, key)) is not ParameterSource.DEFAULT
    }
    explicit_recipe = given.pop("recipe_name", None)
    from_file = read_config_file(config_file) if config_file else {}
    values = {**from_file, **given}
    if not values.get("data"):
        raise click.UsageError("--data is required (a dataset.yaml, a folder holding one, or a VOC root)")
    _own_data_trains_on_its_train_split(values)
    recipe_name = explicit_recipe or values.pop("recipe", None) or options["recipe_name"]
    values.pop("recipe", None)
    find_lr = values.get("lr") == AUTO_LR
    if find_lr:
        values.pop("lr")
    run_dir = out or (Path(values["out"]) if values.get("out") else default_run_dir())
    values["out"] = str(run_dir)
    config = recipe(recipe_name, **values)
    _say_unread_patience(config, recipe_name, given, from_file, config_file)
    return config, run_dir, find_lr


def _say_unread_patience(
    config: TrainConfig, recipe_name: str, given: dict, from_file: dict, config_file: Path | None
) -> None:
    """A note where patience was asked for but early stopping, which alone reads it, is off
    (the run keeps its final epoch): a note, not an error, as scripts pass `--patience EPOCHS` to
    mean "no early stop" (benchmarks/size_accuracy.py). From a --config file it counts only where
    it differs from the recipe's: a run's config.json records every field."""
    from fastseg.training.recipes import RECIPES

    if config.keep == "best":
        return
    if "patience" in given:
        asked = "--patience"
    elif "patience" in from_file and from_file["patience"] != RECIPES[recipe_name]().patience:
        asked = f"patience: {from_file['patience']} in {config_file}"
    else:
        return
    say(f"note: {asked} is early stopping's, which runs with --keep best; this run keeps the "
        f"{config.keep} epoch ({recipe_name} recipe), so it trains all {config.epochs} epochs "
        "(add --keep best to stop early)", err=True)  # fmt: skip
