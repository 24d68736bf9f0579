"""Experiment trackers for `fastseg train --log`: TensorBoard, MLflow, Weights & Biases.

Each tracker gets the same things: per-epoch losses, metrics and learning rates while fitting
(fastai's own `TensorBoardCallback`; `EpochMetrics` below for MLflow, which has no fastai
callback, and for W&B, whose fastai `WandbCallback` fails in `before_fit` with fastai 2.8.12 and
fastcore 2.2.41: it gathers the Learner's arguments with `fastcore.init_args`, which calls `vars()`
on the Learner's `path`, a `Path` without `__dict__`), then the run's config as hyper-parameters,
the best validation scores, the sample figures and the training curve as images, and `model.pth`
as an artefact where the tracker keeps files (MLflow, W&B). Which trackers exist and whether
each is installed is `config.TRACKERS`' (torch-free, for the CLI's `--help`).

Where each writes: TensorBoard to `RUN/tensorboard/`; MLflow to
`MLFLOW_TRACKING_URI` (MLflow's default: `sqlite:///mlflow.db` in the working folder), experiment
`MLFLOW_EXPERIMENT_NAME` or "fastseg"; W&B to project `WANDB_PROJECT` or "fastseg" (files under
`RUN/wandb/`; `WANDB_MODE=offline` keeps everything on disk). Each tracker is imported only when
asked for (`pip install -e '.[NAME]'` in the checkout). A resumed training run continues the MLflow and W&B
runs it logged to (ids in `RUN/trackers.json`), so one training run is one tracker run.

A tracker is a witness, not a part of the training: one that cannot start stops the run in one
line before any epoch is spent (`--log` asked for it), but one that fails while the run trains
(a tracking server gone, a full disk under its files) is dropped, said once in `train.log`, and
the run goes on: `history.csv` and `train.log` keep every epoch whatever the trackers do
(`Fenced`). A run folder's name reaches the trackers through `errors.shown` (a name that is not
UTF-8 was their UnicodeEncodeError).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastai.callback.core import (
    Callback,
    CancelBackwardException,
    CancelBatchException,
    CancelEpochException,
    CancelFitException,
    CancelStepException,
    CancelTrainException,
    CancelValidException,
)
from fastai.learner import Recorder

from fastseg.errors import FastsegError, shown
from fastseg.runs.folder import TENSORBOARD, TRAIN_SAMPLE, TRAINING_CURVE, VAL_SAMPLE, RunFolder
from fastseg.training.config import TrainConfig

FIGURES = (TRAIN_SAMPLE, VAL_SAMPLE, TRAINING_CURVE)


def flat_config(config: TrainConfig) -> dict[str, Any]:
    """`{"lr": 0.001, "augment.flip_p": 0.5, ...}`: trackers take flat scalar hyper-parameters;
    tuples and None become text, and text is `errors.shown`'s (a path that is not UTF-8)."""
    flat = {}
    for key, value in config.to_dict().items():
        nested = value if isinstance(value, dict) else {None: value}
        for name, item in nested.items():
            name = key if name is None else f"{key}.{name}"
            flat[name] = item if isinstance(item, (bool, int, float)) else shown(item)
    return flat


def readable_config(config: TrainConfig) -> dict[str, Any]:
    """`config.to_dict()` with its text as `errors.shown` writes it: a path that is not UTF-8
    (the data or run folder's) cannot be encoded by a tracker."""
    return {key: ({name: shown(item) if isinstance(item, str) else item for name, item in value.items()}
                  if isinstance(value, dict) else shown(value) if isinstance(value, str) else value)
            for key, value in config.to_dict().items()}  # fmt: skip


class Tracker:
    """One tracker for one run: opened before fitting, a fastai callback while fitting, given the
    figures, best scores and model after export, and closed however training ends."""

    def open(self, run: RunFolder, config: TrainConfig, run_id: str | None) -> str | None:
        """Start the tracker's run, or continue run `run_id` (a resumed training run's); returns
        the id to continue next time (None: the tracker has no runs to continue)."""
        return None

    def callback(self) -> Callback | None:
        return None

    def finish(self, run: RunFolder, config: TrainConfig, best: dict[str, float]) -> None:
        """Hyper-parameters, best scores, figures, model: what exists only once training is over."""

    def close(self, status: str) -> None:
        """`status`: "FINISHED", "FAILED" or "KILLED" (Ctrl-C)."""


class TensorBoardTracker(Tracker):
    def open(self, run: RunFolder, config: TrainConfig, run_id: str | None) -> None:
        self.log_dir = str(run.file(TENSORBOARD))  # a resumed run adds event files to the same folder

    def callback(self) -> Callback:
        from fastai.callback.tensorboard import TensorBoardCallback

        # trace_model fails under mixed precision; log_preds draws fastai's show_results, which
        # our plain-tensor batches do not support.
        return TensorBoardCallback(log_dir=self.log_dir, trace_model=False, log_preds=False)

    def finish(self, run: RunFolder, config: TrainConfig, best: dict[str, float]) -> None:
        import numpy as np
        from PIL import Image
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        writer = SummaryWriter(log_dir=self.log_dir)
        try:
            metrics = {f"best/{name}": value for name, value in best.items()}
            for summary in hparams(flat_config(config), metrics):  # the HParams tab, in this folder
                writer.file_writer.add_summary(summary)
            for name, value in metrics.items():
                writer.add_scalar(name, value)
            for name in FIGURES:
                if run.file(name).is_file():
                    picture = np.asarray(Image.open(run.file(name)).convert("RGB"))
                    writer.add_image(Path(name).stem, picture, dataformats="HWC")
        finally:
            writer.close()


class TrackerRunMissing(Exception):
    """The tracker run a resumed training run had logged to cannot be continued."""


class EpochMetrics(Callback):
    """Every epoch's losses, metrics and (decoder) learning rate, given to `log(values, epoch)`."""

    run_after = Recorder
    order = Recorder.order + 1  # after the Recorder has this epoch's values, as fastai's own trackers

    def __init__(self, log: Callable[[dict[str, float], int], None]):
        self.log = log

    def after_epoch(self) -> None:
        recorder = self.learn.recorder
        values = {name: float(value) for name, value in zip(recorder.metric_names, recorder.log, strict=True)
                  if name not in ("epoch", "time")}  # fmt: skip
        values["lr"] = float(self.learn.opt.hypers[-1]["lr"])
        self.log(values, self.learn.epoch)


def _experiment_named(name: str) -> str:
    """The id of MLflow's experiment `name` in the current tracking store, made if missing."""
    import mlflow

    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)


class MLflowTracker(Tracker):
    def open(self, run: RunFolder, config: TrainConfig, run_id: str | None) -> str:
        import mlflow
        from mlflow.exceptions import MlflowException

        # The experiment is resolved here and passed to start_run, as MLflow's own variables say or
        # "fastseg", never through set_experiment: that keeps the id in MLflow's module and writes
        # it into this process's environment, so a second run in the process (a library user's
        # second `train`, against another tracking store) asked that store for an experiment it
        # never had ("No Experiment with id=1 exists"). MLflow's INFO lines (creating its tables)
        # are kept out of fastseg's output.
        logging.getLogger("mlflow").setLevel(max(logging.WARNING, logging.getLogger("mlflow").level))
        experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID") or _experiment_named(
            os.environ.get("MLFLOW_EXPERIMENT_NAME") or "fastseg"
        )
        tags = {"fastseg.run_folder": shown(run.path.resolve())}
        try:
            active = mlflow.start_run(run_id=run_id) if run_id else None
        except MlflowException:  # not in this tracking store (another machine or URI)
            raise TrackerRunMissing(f"mlflow: run {run_id} is not in {mlflow.get_tracking_uri()}") from None
        if active is None:  # a resumed run logged its options when it started: MLflow refuses a
            # value logged again changed, and `--resume --device cpu` changes the device
            active = mlflow.start_run(run_name=shown(run.path.name), tags=tags, experiment_id=experiment_id)
            mlflow.log_params(flat_config(config))
        return active.info.run_id

    def callback(self) -> Callback:
        import mlflow

        return EpochMetrics(lambda values, epoch: mlflow.log_metrics(values, step=epoch))

    def finish(self, run: RunFolder, config: TrainConfig, best: dict[str, float]) -> None:
        import mlflow

        mlflow.log_metrics({f"best_{name}": value for name, value in best.items()})
        for name in FIGURES:
            if run.file(name).is_file():
                mlflow.log_artifact(str(run.file(name)), "figures")
        mlflow.log_artifact(str(run.model), "model")

    def close(self, status: str) -> None:
        import mlflow

        mlflow.end_run(status)


class WandbTracker(Tracker):
    def open(self, run: RunFolder, config: TrainConfig, run_id: str | None) -> str:
        try:
            str(run.path.resolve()).encode("utf-8")
        except UnicodeEncodeError:  # W&B writes its path into its logs and records: a traceback there
            raise FastsegError(f"--log wandb: W&B cannot keep its files under {shown(run.path.resolve())}, "
                               "a name that is not UTF-8; choose another --out") from None  # fmt: skip
        import wandb

        # resume="allow": the run `run_id` continues, or is created under that id if this W&B
        # server never saw it (an offline run not yet synced).
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "fastseg"), name=shown(run.path.name),
                              dir=str(run.path), config=readable_config(config), id=run_id,
                              resume="allow" if run_id else None)  # fmt: skip
        return self.run.id

    def callback(self) -> Callback:
        return EpochMetrics(lambda values, epoch: self.run.log({**values, "epoch": epoch}))

    def finish(self, run: RunFolder, config: TrainConfig, best: dict[str, float]) -> None:
        import wandb

        self.run.summary.update({f"best_{name}": value for name, value in best.items()})
        self.run.log({Path(name).stem: wandb.Image(str(run.file(name))) for name in FIGURES
                      if run.file(name).is_file()})  # fmt: skip
        artifact = wandb.Artifact(f"model-{self.run.id}", type="model", metadata=best)
        artifact.add_file(str(run.model))
        self.run.log_artifact(artifact)

    def close(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "FINISHED" else 1)


TRACKER_CLASSES: dict[str, type[Tracker]] = {
    "tensorboard": TensorBoardTracker,
    "mlflow": MLflowTracker,
    "wandb": WandbTracker,
}


# fastai's control flow (an early stop, a skipped batch): raised by callbacks on purpose
FASTAI_CANCELS = (CancelBackwardException, CancelBatchException, CancelEpochException, CancelFitException,
                  CancelStepException, CancelTrainException, CancelValidException)  # fmt: skip


def failure(error: BaseException) -> str:
    """`ConnectionError: server gone`: the error's type and the first line of what it says."""
    first = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


class Fenced(Tracker):
    """One of `TRACKER_CLASSES` with its failures kept from the training: an error in `open` is
    one line (`FastsegError`, before any epoch), any later error drops the tracker for the rest
    of the run with one line to `say` (`RunReporter.say`: train.log and the epoch lines), and
    the run goes on. A tracker run that broke is closed as FAILED."""

    def __init__(self, name: str, say: Callable[[str], None]):
        self.name, self.say = name, say
        self.tracker = TRACKER_CLASSES[name]()
        self.failed = False

    def open(self, run: RunFolder, config: TrainConfig, run_id: str | None) -> str | None:
        try:
            return self.tracker.open(run, config, run_id)
        except (TrackerRunMissing, FastsegError):
            raise
        except Exception as error:  # noqa: BLE001 - any library's error: the run has not started
            raise FastsegError(f"--log {self.name}: could not start logging ({failure(error)})") from None

    def callback(self) -> Callback | None:
        inner = self.tracker.callback()
        return None if inner is None else FencedCallback(inner, self)

    def drop(self, error: BaseException, when: str) -> None:
        if not self.failed:
            self.failed = True
            self.say(f"{self.name}: failed {when} ({failure(error)}); training goes on without it "
                     "(train.log and history.csv have every epoch)")  # fmt: skip

    def finish(self, run: RunFolder, config: TrainConfig, best: dict[str, float]) -> None:
        if self.failed:
            return
        try:
            self.tracker.finish(run, config, best)
        except Exception as error:  # noqa: BLE001 - the model is saved: nothing the run needs
            self.drop(error, "while logging the results")

    def close(self, status: str) -> None:
        try:
            self.tracker.close("FAILED" if self.failed and status == "FINISHED" else status)
        except Exception as error:  # noqa: BLE001
            self.drop(error, "while closing")


class FencedCallback(Callback):
    """A tracker's fastai callback whose errors drop the tracker (`Fenced.drop`) instead of
    ending the fit; fastai's own cancel exceptions pass, as they must."""

    def __init__(self, inner: Callback, tracker: Fenced):
        self.inner, self.tracker = inner, tracker
        self.order = inner.order  # its place: fastai 2.8 sorts callbacks by `order` alone

    @property
    def name(self) -> str:
        return self.inner.name

    def __call__(self, event_name: str) -> None:
        if self.tracker.failed:
            return None
        self.inner.learn = self.learn
        try:
            return self.inner(event_name)
        except FASTAI_CANCELS:
            raise
        except Exception as error:  # noqa: BLE001 - a logger's failure is not the training's
            if str(error).startswith("Exception occured in `"):  # fastai's wrapping of the message
                error.args = (str(error).split("\n\t", 1)[-1], *error.args[1:])
            self.tracker.drop(error, f"at epoch {getattr(self.learn, 'epoch', 0)}")
            return None
