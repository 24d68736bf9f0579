"""`fastseg train`: a recipe (fast, or the seed's) on fastai, leaving a self-describing run folder.

Steps, top to bottom: check the data, write the split and config, weigh the classes, build the
DataLoaders and the Learner, fit one cycle with early stopping on validation mIoU, export the
best model as a plain state dict, draw the curves.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from fastai.callback.progress import CSVLogger, ProgressCallback
from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback
from fastai.learner import Learner
from fastai.optimizer import Adam
from fastai.torch_core import set_seed
from fastprogress.fastprogress import progress_bar

from fastseg.callbacks import (
    L1Regularization,
    RestoreTrackers,
    ResumableCheckpoint,
    save_resumable,
    write_json_atomic,
)
from fastseg.checkpoint import MODEL_FILENAME, save_model
from fastseg.class_weights import class_weights, mask_pixel_counts, save_class_weights
from fastseg.classes import NUM_CLASSES
from fastseg.config import TrainConfig
from fastseg.data import build_dataloaders
from fastseg.ddp import attach_ddp
from fastseg.device import cores_per_process, cuda_amp_dtype, resolve_device
from fastseg.distributed import barrier, local_rank, rank_and_world
from fastseg.environment import git_commit, package_versions
from fastseg.errors import DatasetError, FastsegError
from fastseg.fastai_metrics import segmentation_metrics
from fastseg.figures import save_training_curve
from fastseg.losses import WeightedCrossEntropy
from fastseg.model import ModelConfig, SegmentationModel, param_groups
from fastseg.pretrained import load_encoder_weights
from fastseg.samples import save_dataset_samples
from fastseg.schedule import fit_one_cycle
from fastseg.split import Split, seed_split
from fastseg.voc import VOCFolder, find_voc, inspect_pair

MONITOR = "valid_miou"  # validation loss rises while accuracy still improves: loss is the wrong monitor
RUN_ARTEFACTS = (
    "config.json", "split.json", "class_weights.json", "history.csv", "training_curve.png",
    "train_ds_sample.png", "val_ds_sample.png", MODEL_FILENAME, "best.pth", "last.pth", "last.json",
)  # fmt: skip


class TrainingInterrupted(FastsegError):
    """Ctrl-C during training; a resumable checkpoint was saved."""


@dataclass
class TrainResult:
    run_dir: Path
    epochs_run: int
    best_epoch: int | None
    best_miou: float | None
    best_pixel_accuracy: float | None
    stopped_early: bool


def prepare_run_dir(run_dir: Path, resume: bool, force: bool) -> None:
    """Never overwrite a run by accident: an existing run needs `--resume` or `--force`.

    Only checks: nothing is created until the data has passed its checks."""
    has_run = run_dir.is_dir() and any(run_dir.iterdir())
    if resume:
        if not (run_dir / "last.json").is_file():
            raise FastsegError(f"{run_dir}: no resumable checkpoint (last.json) in this folder")
        return
    if has_run and not force:
        raise FastsegError(
            f"{run_dir}: run folder exists; use --resume to continue it or --force to replace it"
        )


def create_run_dir(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in RUN_ARTEFACTS:  # --force: replace our own files, never anything else of the user's
        (run_dir / name).unlink(missing_ok=True)


def check_dataset(folder: VOCFolder, split: Split, show_progress: bool = True) -> np.ndarray:
    """Open every listed image and mask once before training: all problems in one error, one
    line each; else the training masks' pixel counts `(n_train, C)`, for the class weights.

    A thread per core of this process's share (every DDP process checks the whole set): Pillow
    decodes outside the GIL, and on trainaug's 12,031 pairs the check would take an estimated 37 s
    on one core (3 ms a pair measured on VOC-sized pairs) before the first step of a 20-minute schedule.
    """
    ids = [*split.train, *split.valid, *split.test]
    folder.require_files(ids)
    training = len(split.train)

    def inspect(row: int) -> tuple[str | None, np.ndarray | None]:
        problem, mask = inspect_pair(folder, ids[row])
        return problem, (mask_pixel_counts(mask) if mask is not None and row < training else None)

    with ThreadPoolExecutor(max_workers=cores_per_process()) as pool:
        results = pool.map(inspect, range(len(ids)))
        if show_progress:
            results = progress_bar(results, total=len(ids), leave=False)
        results = list(results)
    problems = [problem for problem, _ in results if problem]
    if problems:
        raise DatasetError(
            f"{len(problems)} problem(s) in {folder.root}, training not started:\n" + "\n".join(problems)
        )
    return np.stack([counts for _, counts in results[:training]])


def save_run_config(run_dir: Path, config: TrainConfig, model_config: ModelConfig) -> None:
    values = {
        "train": config.to_dict(),
        "model": model_config.to_dict(),
        "versions": package_versions(),
        "git_commit": git_commit(),
    }
    write_json_atomic(run_dir / "config.json", values)


def load_run_config(run_dir: Path) -> TrainConfig:
    path = run_dir / "config.json"
    try:
        values = json.loads(path.read_text())["train"]
        config = TrainConfig.from_dict(values)
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise FastsegError(f"{path}: cannot read the run's config ({error})") from None
    if config.augment.random_scale_crop and "crop_size" not in values:
        raise FastsegError(
            f"{path}: made by an earlier fastseg whose random-scale crops scaled the shorter side "
            "and validated squished; this version letterboxes, so the run cannot be resumed: start a new one"
        )
    return config


def build_learner(
    config: TrainConfig,
    dls,  # noqa: ANN001 - fastai DataLoaders
    weights: np.ndarray,
    run_dir: Path,
    device: torch.device,
    model_config: ModelConfig | None = None,
) -> Learner:
    """The fastai Learner: Adam hyper-parameters spelled out, encoder/decoder groups, our metrics."""
    model = SegmentationModel(model_config or ModelConfig(num_classes=NUM_CLASSES))
    # fastai's Adam defaults (wd 0.01 decoupled, eps 1e-5, sqr_mom 0.99) differ from torch's;
    # the seed used torch's, so they are spelled out. Non-decoupled wd is torch Adam's L2,
    # decoupled wd is AdamW's (the fast recipe).
    optimizer = partial(
        Adam,
        mom=config.beta1,
        sqr_mom=config.beta2,
        eps=config.eps,
        wd=config.weight_decay,
        decouple_wd=config.decouple_weight_decay,
    )
    learn = Learner(
        dls,
        model,
        loss_func=WeightedCrossEntropy(torch.tensor(weights, dtype=torch.float32)),
        opt_func=optimizer,
        splitter=param_groups,
        metrics=segmentation_metrics(NUM_CLASSES),
        path=run_dir,
        model_dir=".",
        wd=config.weight_decay,
        cbs=[L1Regularization(config.l1)],
    )
    learn.recorder.train_metrics = True
    if config.compile:
        learn.model = torch.compile(learn.model)
    if device.type == "cuda":
        from fastai.callback.channelslast import ChannelsLast
        from fastai.callback.fp16 import AMPMode, MixedPrecision

        mode = AMPMode.BF16 if cuda_amp_dtype() == torch.bfloat16 else AMPMode.FP16
        learn.add_cbs([ChannelsLast(), MixedPrecision(amp_mode=mode)])
    return learn


def learning_rates(config: TrainConfig) -> float | slice:
    """One rate, or fastai's `slice(encoder, decoder)` for the two parameter groups of `param_groups`."""
    if config.encoder_lr_ratio == 1:
        return config.lr
    return slice(config.lr * config.encoder_lr_ratio, config.lr)


def uncompiled(model: torch.nn.Module) -> torch.nn.Module:
    """The module under `torch.compile`'s wrapper, whose state_dict keys have no `_orig_mod.`."""
    return getattr(model, "_orig_mod", model)


def read_resume_state(run_dir: Path) -> dict:
    path = run_dir / "last.json"
    try:
        state = json.loads(path.read_text())
        int(state.get("completed_epochs", 0))
        return state
    except (OSError, json.JSONDecodeError, TypeError, ValueError, AttributeError) as error:
        raise FastsegError(f"{path}: unreadable resume state ({error}); start a new run") from None


def read_history(path: Path) -> pd.DataFrame:
    """`history.csv` as numbers; a resumed run's repeated header rows are dropped."""
    history = pd.read_csv(path)
    history = history[history["epoch"].astype(str) != "epoch"]
    numeric = history.drop(columns=["time"], errors="ignore").apply(pd.to_numeric, errors="coerce")
    return numeric.drop_duplicates("epoch", keep="last").reset_index(drop=True)


def _silent(*args: object) -> None:
    """Recorder logger for --quiet: history.csv still gets every epoch."""


def train(
    config: TrainConfig, run_dir: Path, resume: bool = False, force: bool = False, show_progress: bool = True
) -> TrainResult:
    """Train and export `run_dir/model.pth`; raises `FastsegError` for anything the user can fix."""
    run_dir = Path(run_dir)
    rank, world = rank_and_world()
    main = rank == 0  # under torchrun / accelerate launch only rank 0 writes the run folder
    config.check()
    prepare_run_dir(run_dir, resume, force)
    barrier()  # every process has checked before rank 0 creates anything
    state = read_resume_state(run_dir) if resume else {}
    if state.get("finished"):
        raise FastsegError(f"{run_dir}: this run already finished; start a new one with --out")
    folder = find_voc(config.data)
    if resume:
        split = Split.load(run_dir / "split.json")
    else:
        split = seed_split(folder.ids(config.train_set), folder.ids("val"), config.split_seed)
    counts = check_dataset(folder, split, show_progress and main)
    if len(split.train) < config.batch_size * world:  # fastai drops the last partial training batch
        raise FastsegError(
            f"--batch-size {config.batch_size} x {world} process(es) is more than the "
            f"{len(split.train)} training images: no training batch would remain"
        )
    if main and not resume:
        create_run_dir(run_dir)

    model_config = ModelConfig(num_classes=NUM_CLASSES)
    weights = class_weights(counts, config.class_weights)
    if main and not resume:
        save_run_config(run_dir, config, model_config)
        split.save(run_dir / "split.json")
        save_class_weights(run_dir / "class_weights.json", weights, counts, config.class_weights)

    device = resolve_device(config.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    set_seed(config.seed)
    dls = build_dataloaders(
        folder, split.train, split.valid, size=config.size, batch_size=config.batch_size,
        augment=config.augment, num_workers=config.num_workers, device=device, seed=config.seed,
        crop_size=config.train_size,
    )  # fmt: skip
    if main and not resume:
        save_dataset_samples(dls, run_dir)
    barrier()
    learn = build_learner(config, dls, weights, run_dir, device, model_config)
    if not show_progress:
        learn.remove_cb(ProgressCallback)
        learn.logger = _silent
    if world > 1:
        attach_ddp(learn, device)

    start_epoch, restore = 0, []
    if resume:
        learn.load("last", with_opt=True)
        start_epoch = int(state["completed_epochs"])
        restore = [RestoreTrackers(state.get("best"), int(state.get("wait", 0)))]
    else:
        load_encoder_weights(uncompiled(learn.model), config.pretrained, config.encoder_weights)
        if config.freeze_epochs:
            learn.freeze()
            try:
                fit_one_cycle(learn, config.freeze_epochs, learning_rates(config), wd=config.weight_decay)
            except KeyboardInterrupt:
                raise TrainingInterrupted(
                    "interrupted in the decoder-only warm-up; nothing to resume, "
                    f"run again with --force --out {run_dir}"
                ) from None
            learn.unfreeze()

    checkpoint = ResumableCheckpoint(run_dir)
    early_stopping = EarlyStoppingCallback(monitor=MONITOR, comp=np.greater, patience=config.patience)
    saver = SaveModelCallback(monitor=MONITOR, comp=np.greater, fname="best")
    callbacks = [
        saver,
        early_stopping,
        *([CSVLogger("history.csv", append=resume), checkpoint] if main else []),
        *restore,
    ]
    try:
        fit_one_cycle(
            learn, config.epochs, learning_rates(config), start_epoch, wd=config.weight_decay, cbs=callbacks
        )
    except KeyboardInterrupt:
        # Mid-epoch, `learn.epoch` is the unfinished epoch: resuming redoes it.
        if main:
            completed = max(learn.epoch, checkpoint.completed_epochs)
            save_resumable(learn, run_dir, completed, early_stopping, saver)
        raise TrainingInterrupted(
            f"interrupted in epoch {learn.epoch}; checkpoint saved, "
            f"continue with: fastseg train --resume {run_dir}"
        ) from None

    if not main:
        barrier()  # rank 0 exports the model and figures
        return TrainResult(run_dir, epochs_run=0, best_epoch=None, best_miou=None, best_pixel_accuracy=None,
                           stopped_early=False)  # fmt: skip
    history = read_history(run_dir / "history.csv")
    best = history.loc[history[MONITOR].idxmax()] if history[MONITOR].notna().any() else None
    epochs_run = int(history["epoch"].max()) + 1 if len(history) else 0
    metadata = {
        "best_epoch": None if best is None else int(best["epoch"]),
        "valid_miou": None if best is None else float(best[MONITOR]),
        "valid_pixel_accuracy": None if best is None else float(best["valid_pixel_accuracy"]),
        "train_config": config.to_dict(),
    }
    save_model(
        run_dir / MODEL_FILENAME, uncompiled(learn.model), model_config, config.size, metadata, config.resize
    )
    save_training_curve(history, run_dir / "training_curve.png", planned_epochs=config.epochs)
    (run_dir / "best.pth").unlink(missing_ok=True)
    (run_dir / "last.pth").unlink(missing_ok=True)
    write_json_atomic(run_dir / "last.json", {"finished": True, "completed_epochs": epochs_run})
    barrier()
    return TrainResult(
        run_dir=run_dir,
        epochs_run=epochs_run,
        best_epoch=metadata["best_epoch"],
        best_miou=metadata["valid_miou"],
        best_pixel_accuracy=metadata["valid_pixel_accuracy"],
        stopped_early=epochs_run < config.epochs,
    )
