"""`fastseg train`: a recipe (fast, or the seed's) on fastai, leaving a self-describing run folder.

Steps, top to bottom: check the data and start (or reopen) the run folder, build the
DataLoaders and the Learner, load the checkpoint or the encoder weights, fit one cycle with early
stopping on validation mIoU, save the kept epoch's model as a plain state dict, draw the curves.
Resuming (what is saved, put back and shifted) is `fastseg.training.resume`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback
from fastai.callback.tracker import EarlyStoppingCallback
from fastai.learner import Learner
from fastai.torch_core import set_seed
from fastprogress.fastprogress import progress_bar

from fastseg.data.check import Share, all_void_problem, check_dataset
from fastseg.data.class_weights import class_weights
from fastseg.data.dataset import SegmentationData
from fastseg.data.factory import open_dataset
from fastseg.data.split import Split
from fastseg.data.voc import VOCFolder
from fastseg.errors import FastsegError, first_line
from fastseg.inference.memory import out_of_memory
from fastseg.launch.processes import Launch, barrier, gather_objects, launched
from fastseg.model.checkpoint import save_model
from fastseg.model.config import ModelConfig
from fastseg.model.pretrained import load_encoder_weights
from fastseg.runs.folder import TRAINING_CURVE, RunFolder
from fastseg.training.checkpointing import AtomicSaveModel
from fastseg.training.config import TrainConfig, batch_norm_problem, check_out_folder
from fastseg.training.data import build_dataloaders
from fastseg.training.ddp import attach_ddp
from fastseg.training.epoch_records import HistoryLogger
from fastseg.training.learner import build_learner, learning_rates, uncompiled
from fastseg.training.losses import absent_class_note
from fastseg.training.reporting import RunReporter
from fastseg.training.result import TrainResult
from fastseg.training.resume import (
    KeptGlobalBatch,
    ResumableCheckpoint,
    finished_model,
    resume_from_checkpoint,
    run_processes,
    saved_on_interrupt,
)
from fastseg.training.samples import save_dataset_samples
from fastseg.training.schedule import fit_one_cycle
from fastseg.visualization.charts import save_training_curve

MONITOR = "valid_miou"  # validation loss rises while accuracy still improves: loss is the wrong monitor


@dataclass
class Prepared:
    """What the data checks produce for the rest of training: `config` is the one to train with
    (its batch size fitted to each process's share of the training set); `recorded` is the one
    config.json holds, which `last.pth` records and a resume compares. They differ when a run
    whose batch was fitted resumes under another number of processes: its batch is fitted again
    (said in one line), and config.json, which the user did not change, is not called changed."""

    config: TrainConfig
    recorded: TrainConfig
    data: SegmentationData
    split: Split
    weights: np.ndarray
    model_config: ModelConfig
    processes: int | None = None  # the run's (`resume.PROCESSES`); None: a checkpoint that did not say
    accumulate: int = 1  # batches a process adds up per optimiser step (`kept_global_batch`)


def prepare_run(
    config: TrainConfig,
    run: RunFolder,
    resume: bool,
    launch: Launch,
    show_progress: bool,
    echo: Callable[[str], None] | None = None,
    write: bool = True,
) -> Prepared:
    """Check every image and mask, then (new runs, rank 0) create the folder and write the config,
    split and class weights. Nothing is created when the data has a problem, nor ever without
    `write` (`fastseg lr-find`: the same checks and split, no run folder)."""
    data = open_dataset(config.data)
    if not isinstance(data, VOCFolder) and config.train_set != "train":
        raise FastsegError(f"train_set {config.train_set!r} names a VOC list; {config.data} trains on "
                           "its dataset.yaml's train split (leave --train-set out)")  # fmt: skip
    split = run.read_split(data) if resume else data.split(config.train_set, config.split_seed)
    processes = run_processes(run) if resume else launch.world  # a hand-edited last.json: before the check
    if launch.main and not resume and split.test_from and echo:
        echo(f"{config.data}: no test split, so val is halved (seed {split.seed}): {len(split.valid)} "
             f"validation and {len(split.test)} test images"
             f"{', recorded in split.json' if write else ''}")  # fmt: skip
    bar = (lambda results, total: progress_bar(results, total=total, leave=False)) if show_progress else None
    share = Share(launch.rank, launch.world, gather_objects)
    try:
        counts = check_dataset(data, split, progress=bar if launch.main else None, share=share)
    except Exception as error:  # a mask too large for this machine; --batch-size and --size play no part
        if not out_of_memory(error):
            raise
        first = first_line(error)
        raise FastsegError(f"{config.data}: memory ran short while checking the images and masks "
                           f"({first}); an image or mask too large for this machine?") from None  # fmt: skip
    if not counts.sum():  # else every epoch trains at loss 0, and lr-find suggests from a flat line
        raise FastsegError(f"{config.data}: {all_void_problem(len(split.train))}")
    asked = config
    config = fitted_batch_size(config, len(split.train), launch.world, echo if launch.main else None)
    config, accumulate, note = kept_global_batch(config, asked, processes, launch.world)
    if note and launch.main and write:
        run.append_log(note)
        if echo:
            echo(note)
    model_config = ModelConfig(num_classes=len(data.classes), encoder=config.encoder)
    weights = class_weights(counts, config.class_weights)
    if launch.main and not resume and echo:  # a resumed run was warned when it started
        dice_warning = absent_class_note(config.loss, counts, data.classes.names)
        if dice_warning:
            echo(dice_warning)
    if launch.main and not resume and write:
        run.create()
        run.write_config(config, model_config)
        run.write_split(split)
        run.write_class_weights(weights, counts, config.class_weights, data.classes.names)
    if launch.main and resume and write:  # the file must hold the weights the run trains with
        note = run.refresh_class_weights(weights, counts, config.class_weights, data.classes.names)
        if note and echo:
            echo(note)
    recorded = asked if resume else config
    return Prepared(config, recorded, data, split, weights, model_config, processes, accumulate)


def fitted_batch_size(
    config: TrainConfig, train_images: int, world: int, echo: Callable[[str], None] | None
) -> TrainConfig:
    """fastai drops the last partial batch, so a batch larger than a process's share of the
    training set would leave no batch at all: a small set trains in batches of all its images
    instead, said in one line (the run's config.json records the batch size used)."""
    share = train_images // world
    if share >= config.batch_size:
        return config
    if share == 0:
        raise FastsegError(f"{train_images} training image(s) for {world} processes: every process needs "
                           "at least one (use fewer processes)")  # fmt: skip
    problem = batch_norm_problem(share, config.train_size)  # a batch fitted down to one image
    if problem:
        raise FastsegError(f"{train_images} training image(s) for {world} process(es): {problem}")
    if echo:
        per = f" per process ({train_images} over {world})" if world > 1 else ""  # the share, not the total
        echo(f"--batch-size {config.batch_size} is more than the {share} training images{per}: "
             f"training with batches of {share}")  # fmt: skip
    return replace(config, batch_size=share)


def kept_global_batch(
    config: TrainConfig, recorded: TrainConfig, processes: int | None, world: int
) -> tuple[TrainConfig, int, str | None]:
    """A run resumed under another number of processes keeps its global batch (config.json's
    per-process batch_size x the run's `processes`): each optimiser step still averages as many
    images, so an epoch takes the run's number of steps at the run's learning rates. Under fewer
    processes each adds up the gradients of several of its batches before a step (memory as
    before; a batch grown to the global one would not fit where the run was sized to the
    device, and --resume takes no --batch-size); under more, each takes a smaller batch. Where
    the numbers do not divide, the global batch changes, and the note says so.

    Returns the config to train with, the batches a process adds up per step, and the one line
    to print and log (None when nothing changed). `config` is `recorded` with its batch fitted
    to this launch's share of the training set (`fitted_batch_size`, which said so itself)."""
    if processes is None or processes == world:
        return config, 1, None
    run_batch, batch = recorded.batch_size * processes, config.batch_size
    before = f"resumed under {world} process{'es' if world > 1 else ''}, the run started under {processes}"
    if batch * world == run_batch:  # the fitted batch already keeps it
        return config, 1, None
    if batch * world < run_batch and run_batch % (batch * world) == 0:
        steps = run_batch // (batch * world)
        return config, steps, (f"{before}: each process adds up {steps} batches of {batch} per optimiser "
                               f"step, keeping the run's global batch of {run_batch} (BatchNorm's statistics "
                               "still come from one batch at a time)")  # fmt: skip
    smaller = run_batch // world
    if run_batch % world == 0 and smaller < batch and not batch_norm_problem(smaller, config.train_size):
        kept = f"{before}: batches of {smaller} per process keep the run's global batch of {run_batch}"
        return replace(config, batch_size=smaller), 1, kept
    return config, 1, (f"{before}: the global batch is {batch * world} where it was {run_batch} (no whole "
                       "number of batches per process keeps it), so an epoch takes another number of "
                       "optimiser steps at the same learning rates")  # fmt: skip


def out_of_memory_message(config: TrainConfig, device: object, error: BaseException) -> str:
    """A batch too big for the device's memory (the first thing tried on a new machine) is the
    user's to fix, not a traceback: what ran out, and the two options that set the batch's size."""
    first = first_line(error)
    return (f"out of memory on {device} with --batch-size {config.batch_size} at a {config.train_size} px "
            f"training input ({first}): use a smaller --batch-size or --size")  # fmt: skip


def _printed(show_progress: bool) -> Callable[[str], None] | None:
    """Where a note goes when the caller gave no `echo`: the terminal beside fastai's bars."""
    return print if show_progress else None


def _silent(*args: object) -> None:
    """Recorder logger for --quiet: history.csv still gets every epoch."""


def make_learner(config: TrainConfig, run: RunFolder, prepared: Prepared, launch: Launch,
                 show_progress: bool, resume: bool, samples: bool = True) -> Learner:  # fmt: skip
    """DataLoaders (and, for a new run unless not `samples`, their sample figures) and the Learner
    around them, whose files go under `run.path`."""
    set_seed(config.seed)
    dls = build_dataloaders(
        prepared.data, prepared.split.train, prepared.split.valid, size=config.size,
        batch_size=config.batch_size, augment=config.augment, num_workers=config.num_workers,
        device=launch.device, seed=config.seed, crop_size=config.train_size,
    )  # fmt: skip
    if launch.main and not resume and samples:
        save_dataset_samples(dls, run.path, classes=prepared.data.classes)
    barrier()
    learn = build_learner(config, dls, prepared.weights, str(run.path), launch.device, prepared.model_config)
    if not show_progress:
        learn.remove_cb(ProgressCallback)
        learn.logger = _silent
    if launch.world > 1:
        attach_ddp(learn, launch.device)
    return learn


def start_weights(learn: Learner, config: TrainConfig, run: RunFolder, resuming: bool,
                  launch: Launch, prepared: Prepared) -> dict[str, Any]:  # fmt: skip
    """A resumed run's checkpoint, or the encoder's ImageNet (or given) weights; then what is left
    of the optional decoder-only warm-up. Returns the progress the main schedule starts from
    (empty when it starts from its first epoch)."""
    if resuming:
        progress, warmed_up = resume_from_checkpoint(learn, run, config.freeze_epochs, prepared.recorded)
    else:
        load_encoder_weights(uncompiled(learn.model), config.pretrained, config.encoder_weights)
        progress, warmed_up = {}, 0
    if warmed_up < config.freeze_epochs:
        warm_up(learn, config, run, warmed_up, launch, prepared)
        return {}
    return progress


def warm_up(learn: Learner, config: TrainConfig, run: RunFolder, start_epoch: int, launch: Launch,
            prepared: Prepared) -> None:  # fmt: skip
    """`--freeze-epochs`: the decoder (and BatchNorm) trained alone on a one-cycle schedule of
    its own, checkpointed after every epoch and on Ctrl-C as the main schedule is, so an
    interrupted warm-up resumes where it stopped."""
    learn.freeze()
    checkpoint = ResumableCheckpoint(run, start_epoch, warm_up=True, writes=launch.main,
                                     config=prepared.recorded, processes=prepared.processes)  # fmt: skip
    with saved_on_interrupt(learn, checkpoint, "in the decoder-only warm-up (epoch {epoch})"):
        fit_one_cycle(learn, config.freeze_epochs, learning_rates(config), start_epoch,
                      wd=config.weight_decay, seed=config.seed, phase="warm-up",
                      cbs=[*accumulation(prepared), *([checkpoint] if launch.main else [])])  # fmt: skip
    learn.unfreeze()


def fit(learn: Learner, config: TrainConfig, run: RunFolder, progress: dict[str, Any], launch: Launch,
        prepared: Prepared, loggers: Sequence[Callback] = ()) -> None:  # fmt: skip
    """The one-cycle schedule from the epoch `progress` reached, keeping the best epoch by
    validation mIoU and stopping early; Ctrl-C saves a resumable checkpoint first (recording
    `Prepared.recorded` and the run's processes)."""
    # keep "best": the best validation epoch is saved, stopping early once it stops improving;
    # keep "final": the schedule runs to its annealed end, whose weights model.pth takes.
    keeps_best = config.keep == "best"
    early_stopping = (EarlyStoppingCallback(monitor=MONITOR, comp=np.greater, patience=config.patience)
                      if keeps_best else None)  # fmt: skip
    saver = AtomicSaveModel(run, MONITOR) if keeps_best else None
    trackers = [tracker for tracker in (saver, early_stopping) if tracker is not None]
    start_epoch = int(progress.get("completed_epochs", 0))
    # every process puts the saved progress back; only the main one writes checkpoints and logs
    checkpoint = ResumableCheckpoint(run, start_epoch, early_stopping, saver, resumed=progress or None,
                                     writes=launch.main, config=prepared.recorded,
                                     processes=prepared.processes)  # fmt: skip
    logging = [HistoryLogger(run, start_epoch), *loggers] if launch.main else []
    with saved_on_interrupt(learn, checkpoint, "in epoch {epoch}"):
        fit_one_cycle(learn, config.epochs, learning_rates(config), start_epoch, wd=config.weight_decay,
                      cbs=[*accumulation(prepared), *trackers, *logging, checkpoint],
                      seed=config.seed)  # fmt: skip


def accumulation(prepared: Prepared) -> list[Callback]:
    """`KeptGlobalBatch` where a resume under fewer processes adds up batches (`kept_global_batch`)."""
    if prepared.accumulate == 1:
        return []
    return [KeptGlobalBatch(prepared.config.batch_size, prepared.accumulate)]


def finish_run(learn: Learner, config: TrainConfig, run: RunFolder, prepared: Prepared) -> TrainResult:
    """`model.pth` from the kept epoch's weights (keep "best": SaveModelCallback loaded them at
    the end of fit; keep "final": the last epoch's are in the model), the training curve, and the
    run marked finished. `best_epoch` and the scores in the metadata are the kept epoch's."""
    history = run.read_history()
    scored = history[history[MONITOR].notna()]
    if config.keep == "best":
        kept = scored.loc[scored[MONITOR].idxmax()] if len(scored) else None
    else:
        kept = history.iloc[-1] if len(scored) and scored.index[-1] == history.index[-1] else None
    epochs_run = int(history["epoch"].max()) + 1 if len(history) else 0
    metadata = {
        "best_epoch": None if kept is None else int(kept["epoch"]),
        "valid_miou": None if kept is None else float(kept[MONITOR]),
        "valid_pixel_accuracy": None if kept is None else float(kept["valid_pixel_accuracy"]),
        "keep": config.keep,
        "train_config": config.to_dict(),
    }
    model, classes = uncompiled(learn.model), prepared.data.classes
    save_model(run.model, model, prepared.model_config, config.size, metadata, config.resize, classes=classes)
    save_training_curve(history, run.file(TRAINING_CURVE), planned_epochs=config.epochs)
    run.mark_finished(epochs_run)
    return TrainResult(
        run_dir=run.path,
        epochs_run=epochs_run,
        best_epoch=metadata["best_epoch"],
        best_miou=metadata["valid_miou"],
        best_pixel_accuracy=metadata["valid_pixel_accuracy"],
        stopped_early=epochs_run < config.epochs,
        kept=config.keep,
    )


def train(
    config: TrainConfig,
    run_dir: Path,
    resume: bool = False,
    force: bool = False,
    show_progress: bool = True,
    echo: Callable[[str], None] | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train and export `run_dir/model.pth`; raises `FastsegError` for anything the user can fix.
    Under torchrun / accelerate launch every process trains its shard and rank 0 writes the run.
    Without `show_progress`, fastai's bars and prints are off and `echo` (if given) gets one plain
    line per epoch; `RUN/train.log` always does (`fastseg.training.reporting`). `callbacks` join the
    main schedule's fit (benchmarks use them to watch the weights)."""
    run = RunFolder(run_dir)
    config.check()
    check_out_folder(run_dir)
    with launched(config.device) as launch, run.locked() if launch.main else nullcontext():
        run.check_can_start(resume, force)
        barrier()  # every process has checked before rank 0 creates anything
        if resume and (model := finished_model(run)) is not None:  # `fastseg train` says so itself
            raise FastsegError(f"{run.path}: this run already finished; its model is {model}")
        before = {entry.name for entry in run.path.iterdir()} if run.path.is_dir() else set()
        try:
            say = echo or _printed(show_progress)
            prepared = prepare_run(config, run, resume, launch, show_progress, say)
            config = prepared.config
            learn = make_learner(config, run, prepared, launch, show_progress, resume)
            best_so_far = run.read_resume_state().get("best") if resume else None
            # the trackers log config.json's options, as when the run started: MLflow refuses a
            # resumed run whose batch was fitted again ("Changing param values is not allowed")
            with RunReporter(run, prepared.recorded, MONITOR, best_so_far, echo, not show_progress,
                             launch.main) as reporter:  # fmt: skip
                progress = start_weights(learn, config, run, resume, launch, prepared)
                fit(learn, config, run, progress, launch, prepared, [*reporter.callbacks, *callbacks])
                result = finish_run(learn, config, run, prepared) if launch.main else None
                reporter.finish(result)
        except BaseException as error:
            if launch.main and not resume:  # failed before its first checkpoint: leave nothing
                run.discard_unstarted(before)
            if out_of_memory(error):
                raise FastsegError(out_of_memory_message(config, launch.device, error)) from None
            raise
        barrier()  # rank 0 has exported the model and figures
    return result or TrainResult(run.path, epochs_run=0, best_epoch=None, best_miou=None,
                                 best_pixel_accuracy=None, stopped_early=False)  # fmt: skip
