"""`fastseg lr-find` and `train --lr auto`: fastai's learning-rate finder on the recipe's model
and data, leaving no run folder behind.

The data is checked and split as `fastseg train` does (`trainer.prepare_run`, writing nothing),
the Learner is `trainer.make_learner`'s, and the encoder starts from the weights training would
load. fastai's `lr_find` keeps its temporary weights under the Learner's path, a scratch folder
removed afterwards. With a smaller encoder rate (`--encoder-lr-ratio`) the encoder's rate sweeps
at that ratio to the decoder's, and the suggestion is the decoder's peak rate: what `--lr` means.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastai.callback.schedule import valley

from fastseg.atomic import remove_stale_temporaries, write_text
from fastseg.errors import FastsegError
from fastseg.inference.memory import out_of_memory
from fastseg.launch.processes import launched
from fastseg.model.pretrained import load_encoder_weights
from fastseg.outputs import SWEEP_HEADER, OutputRefused, guard
from fastseg.runs.folder import RunFolder
from fastseg.training.config import TrainConfig, check_out_folder
from fastseg.training.learner import uncompiled
from fastseg.training.trainer import make_learner, out_of_memory_message, prepare_run

START_LR, END_LR = 1e-7, 10.0  # fastai's sweep
ITERATIONS = 100  # fastai's default number of batches
MIN_ITERATIONS = 20  # fastai's suggestion drops the first tenth and the last five points
# 10**26 swept the rate so slowly it never diverged: an lr-find that ran until killed
MAX_ITERATIONS = 10_000


@dataclass
class LrFound:
    """The sweep (decoder learning rate and smoothed training loss per batch) and fastai's
    `valley` suggestion."""

    lrs: list[float]
    losses: list[float]
    suggestion: float


def find_learning_rate(
    config: TrainConfig,
    iterations: int = ITERATIONS,
    show_progress: bool = False,
    echo: Callable[[str], None] | None = None,
) -> LrFound:
    """Sweep the learning rate from 1e-7 to 10 over `iterations` training batches (stopping
    early when the loss diverges) and return fastai's valley suggestion; writes no file."""
    if iterations < MIN_ITERATIONS:
        raise FastsegError(f"--iterations {iterations}: the finder needs at least {MIN_ITERATIONS} batches")
    if iterations > MAX_ITERATIONS:
        raise FastsegError(f"--iterations {iterations}: the finder takes at most {MAX_ITERATIONS} batches")
    config.check()
    with launched(config.device) as launch, tempfile.TemporaryDirectory(prefix="fastseg-lr-find-") as scratch:
        if launch.world > 1:
            raise FastsegError("the learning-rate finder runs in one process: run `fastseg lr-find` "
                               "without a launcher and pass its suggestion as --lr")  # fmt: skip
        run = RunFolder(scratch)
        prepared = prepare_run(config, run, False, launch, show_progress, echo, write=False)
        config = prepared.config  # its batch size fitted to the training set
        learn = make_learner(config, run, prepared, launch, show_progress, resume=False, samples=False)
        load_encoder_weights(uncompiled(learn.model), config.pretrained, config.encoder_weights)
        ratio = config.encoder_lr_ratio
        # arrays, one rate per parameter group (encoder, decoder), swept together: fastai's own list
        # form builds one schedule per group, which its ParamScheduler (2.8) cannot call
        sweep = {"start_lr": START_LR * np.array([ratio, 1.0]), "end_lr": END_LR * np.array([ratio, 1.0])}
        try:
            suggested = learn.lr_find(**sweep, num_it=iterations, show_plot=False, suggest_funcs=(valley,))
        except (ValueError, IndexError, RuntimeError, MemoryError) as error:  # too few finite losses to
            # find a valley; or a batch too big for the memory, which a larger batch would not mend
            if out_of_memory(error):
                raise FastsegError(out_of_memory_message(config, launch.device, error)) from None
            recorded = [float(loss) for loss in learn.recorder.losses]
            if not recorded:  # it failed before any batch ended: not a sweep's fault, e.g. a bug
                raise
            if not any(math.isfinite(loss) for loss in recorded):
                raise FastsegError(
                    "the learning-rate finder found no suggestion: the loss was not a number "
                    "(NaN or infinite) from the first batch; check the data and --loss"
                ) from None
            if recorded[0] == 0:  # fastai stops once the loss passes 4 times its lowest: here, 0
                raise FastsegError(
                    f"the learning-rate finder found no suggestion: it stopped after {len(recorded)} of "
                    f"{iterations} batches, as its first batch held no labelled pixel (every mask pixel "
                    "void: a loss of 0, so any later loss read as divergence); use a larger --batch-size, "
                    "or leave images whose masks are all void out of the training set"
                ) from None
            raise FastsegError(f"the learning-rate finder found no suggestion ({error}); try more "
                               "--iterations or a larger --batch-size") from None  # fmt: skip
        lrs = [float(lr) for lr in learn.recorder.lrs]
        losses = [float(loss) for loss in learn.recorder.losses]
    suggestion = float(suggested.valley)
    if not (math.isfinite(suggestion) and suggestion > 0):
        raise FastsegError(f"the learning-rate finder suggested {suggestion}: the loss never fell")
    return LrFound(lrs, losses, suggestion)


PLOT_FILENAME = "lr_find.png"
SWEEP_FILENAME = "lr_find.csv"
OUTPUTS = {PLOT_FILENAME: "lr-find plot", SWEEP_FILENAME: "lr-find sweep"}  # name -> output role


def check_outputs(out: Path, force: bool = False) -> None:
    """Before the sweep (minutes) and again before writing: `out/lr_find.png` and `lr_find.csv`
    replace nothing fastseg did not write for that role (`fastseg.outputs`), whatever the flags;
    an earlier lr-find's own files only with `force` (`--force` means that on every command).
    One of the pair alone is what an lr-find stopped between its two files left (a full disk):
    no earlier result, so the same command replaces it. A refusal is one line naming the file,
    which is left as it was."""
    out = Path(out)
    check_out_folder(out)
    if out.exists() and not out.is_dir():
        raise FastsegError(f"{out}: is a file; --out names the folder for {' and '.join(OUTPUTS)}")
    for name, role in OUTPUTS.items():
        guard(out / name, role, option=None)  # a user's file: no flag replaces it
    earlier = all((out / name).exists() for name in OUTPUTS)
    for name, role in OUTPUTS.items():
        path = out / name
        if earlier and not force:
            raise OutputRefused(f"{path}: an earlier lr-find's {role.removeprefix('lr-find ')}; use --force "
                                "to replace it, or choose another --out")  # fmt: skip


def save_lr_find(found: LrFound, out: Path, force: bool = False) -> Path:
    """`out/lr_find.png` (the curve) and `out/lr_find.csv` (its points), each written whole;
    nothing else goes into `out`, and nothing fastseg did not write is replaced (`check_outputs`).
    Returns the plot's path."""
    from fastseg.visualization.charts import save_lr_find_curve

    check_outputs(out, force)
    remove_stale_temporaries(out, OUTPUTS)  # an lr-find killed while writing left: its own files' alone
    plot = save_lr_find_curve(found.lrs, found.losses, found.suggestion, Path(out) / PLOT_FILENAME)
    rows = "".join(f"{lr!r},{loss!r}\n" for lr, loss in zip(found.lrs, found.losses, strict=True))
    write_text(Path(out) / SWEEP_FILENAME, f"{SWEEP_HEADER}\n{rows}")
    return plot
