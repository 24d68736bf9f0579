"""The run folder `fastseg train` writes: the one module that knows its files' names, reads them
back and writes its JSON files, `train.log` and the checkpoints (always atomically, through
`fastseg.atomic`). `history.csv`'s format is `runs.history`'s, the lock `fastseg.folder_lock`'s; the
figures (`fastseg.visualization`), `model.pth` (`fastseg.model.checkpoint`), the exports and the
trackers' folders are written by their own modules at the paths named here.

```
RUN/config.json         the TrainConfig used, the ModelConfig, package versions, git commit
RUN/split.json          train / valid / test ids
RUN/class_weights.json  the loss weights and the training masks' pixel counts
RUN/history.csv         one row per epoch (runs/history.py), rewritten whole each epoch
RUN/last.pth, last.json resumable checkpoint (model + optimizer) and its epoch / tracker state
RUN/best.pth            the best epoch's weights while training
RUN/model.pth           the exported model (fastseg.model.checkpoint), once training ends
RUN/model.onnx          `fastseg export`'s ONNX file (fp32); model.int8.onnx with --int8
RUN/*.png               training curve and data samples
RUN/train.log           one line per epoch (and fastai's notes), appended to on resume
RUN/tensorboard/        TensorBoard event files (`--log tensorboard`)
RUN/trackers.json       the MLflow / W&B run ids (`--log`), so `--resume` continues those runs
RUN/report/             `fastseg report`'s default output: `fastseg runs` reads its metrics.json
```
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fastseg.atomic import TEMPORARY, atomic_path, remove_stale_temporaries, write_json, write_text
from fastseg.data.split import Split
from fastseg.errors import CheckpointError, DatasetError, FastsegError
from fastseg.folder_lock import LOCK, holding
from fastseg.model.config import MODEL_FILENAME  # the model package names its file
from fastseg.paths import expanded, make_folders
from fastseg.runs import history
from fastseg.runs.environment import git_commit, package_versions
from fastseg.structured_files import StructuredFileError, finite_number, load_json

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from fastseg.data.dataset import SegmentationData
    from fastseg.model.config import ModelConfig
    from fastseg.training.config import TrainConfig

ONNX_FILENAME, INT8_FILENAME = "model.onnx", "model.int8.onnx"  # `fastseg export` (fastseg.export)
CONFIG, SPLIT, CLASS_WEIGHTS, HISTORY = "config.json", "split.json", "class_weights.json", "history.csv"
TRAINING_CURVE, TRAIN_SAMPLE, VAL_SAMPLE = "training_curve.png", "train_ds_sample.png", "val_ds_sample.png"
BEST, LAST, LAST_STATE = "best", "last", "last.json"  # checkpoints are BEST.pth and LAST.pth
TRAIN_LOG, TENSORBOARD, REPORT = "train.log", "tensorboard", "report"
TRACKER_RUNS = "trackers.json"  # each `--log` tracker's run id, so `--resume` continues that run
# the largest loss weight a run file may hold: "balanced" gives pixels / (classes * count), about
# 4e7 for one pixel of a class among 1e10; 1e12 keeps the weighted loss finite in float32
MAX_CLASS_WEIGHT = 1e12
# fastseg's own files, which `train --force` removes (exports too: they would not match a new model.pth)
ARTEFACTS = (
    CONFIG, SPLIT, CLASS_WEIGHTS, HISTORY, TRAINING_CURVE, TRAIN_SAMPLE, VAL_SAMPLE, MODEL_FILENAME,
    f"{BEST}.pth", f"{LAST}.pth", LAST_STATE, TRAIN_LOG, ONNX_FILENAME, INT8_FILENAME, TRACKER_RUNS,
)  # fmt: skip
WANDB = "wandb"  # `--log wandb`'s own folder
# What a run holds before its first checkpoint is complete (last.json, written last, makes a run
# resumable): epoch 0's history row and best.pth, and a last.pth whose last.json never came, are
# written before it. A start that failed or was killed then leaves only these, nothing that
# --resume could continue, and the same command may start again without --force.
BEFORE_FIRST_EPOCH = (CONFIG, SPLIT, CLASS_WEIGHTS, TRAIN_SAMPLE, VAL_SAMPLE, TRAIN_LOG, TRACKER_RUNS,
                      TENSORBOARD, WANDB, LOCK, HISTORY, f"{BEST}.pth", f"{LAST}.pth")  # fmt: skip


class RunExists(FastsegError):
    """A run folder already holds a run: `train` says `--resume` or `--force`; `demo`, which has
    no `--resume`, says its own words."""


@dataclass(frozen=True)
class RunFolder:
    """One run's folder and everything in it."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def model(self) -> Path:
        return self.path / MODEL_FILENAME

    def checkpoint(self, name: str) -> Path:
        """`best.pth` or `last.pth`."""
        return self.path / f"{name}.pth"

    @classmethod
    def of_model(cls, model: Path | str) -> RunFolder:
        """The run folder of a model argument (the folder, or its `model.pth`), which must hold a
        split: evaluation needs to know the run's test images."""
        path = expanded(model)  # `~name` of no user: a missing folder, not a traceback
        run = cls(path if path.is_dir() else path.parent)
        if not run.file(SPLIT).is_file():
            raise FastsegError(
                f"{run.path}: not a run folder (no split.json); pass the folder `fastseg train` wrote"
            )
        return run

    # --- starting, resuming, finishing --------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's lock for the block (`fastseg.folder_lock`: a second train into it is
        one line), then clear what a killed process left half-written."""
        if self.path.exists() and not self.path.is_dir():
            raise FastsegError(f"{self.path}: is a file, not a run folder; choose another --out")
        with holding(self.path, "train", "wait for it to end or choose another --out"):
            self.remove_stale_temporaries()
            yield

    def remove_stale_temporaries(self) -> list[Path]:
        """Incomplete files a killed process left in the run folder (`fastseg.atomic`)."""
        return remove_stale_temporaries(self.path)

    def check_can_start(self, resume: bool, force: bool) -> None:
        """Never overwrite a run by accident: an existing run needs `--resume` or `--force`.
        Only checks: nothing but the lock is created until the data has passed its checks."""
        if self.path.exists() and not self.path.is_dir():
            raise FastsegError(f"{self.path}: is a file, not a run folder; choose another --out")
        if resume:
            if not self.file(LAST_STATE).is_file():
                raise FastsegError(f"{self.path}: no resumable checkpoint (last.json) in this folder")
            return
        has_run = self.path.is_dir() and any(entry.name != LOCK for entry in self.path.iterdir())
        if has_run and not force and not self.is_unstarted():
            raise RunExists(
                f"{self.path}: run folder exists; use --resume to continue it or --force to replace it"
            )
        if has_run and force:
            foreign = [name for name in ARTEFACTS if self.file(name).exists() and not _ours(self.file(name))]
            if foreign:  # a user's config.json or history.csv that only shares a name with ours
                raise FastsegError(
                    f"{self.file(foreign[0])}: not a file fastseg wrote, and --force replaces only "
                    f"fastseg's own run files; move it, or choose another --out"
                )

    def is_unstarted(self) -> bool:
        """A start that failed or was killed before its first epoch: fastseg's own config.json and
        nothing but what a run writes before its first checkpoint."""
        names = [entry.name for entry in self.path.iterdir() if not TEMPORARY.match(entry.name)]
        if CONFIG not in names or any(name not in BEFORE_FIRST_EPOCH for name in names):
            return False
        try:
            self.read_train_config()
        except (FastsegError, OSError):
            return False
        return True

    def discard_unstarted(self, before: set[str]) -> None:
        """Remove what a start that failed before its first checkpoint wrote (`before`: the
        folder's entries when it began), so the same command can start again. Files fastseg
        does not write before its first epoch, and anything that was there before, stay."""
        import shutil

        if self.file(LAST_STATE).exists():
            return
        for name in BEFORE_FIRST_EPOCH:
            path = self.file(name)
            if name == LOCK or name in before or not path.exists():
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def create(self) -> None:
        """Make the folder; with `--force`, remove our own files from it, never anything else."""
        make_folders(self.path)
        for name in ARTEFACTS:
            self.file(name).unlink(missing_ok=True)

    def read_resume_state(self) -> dict[str, Any]:
        """`last.json`: `completed_epochs`, the trackers' `best` and `wait` (and `warmup_epochs` while the
        `--freeze-epochs` warm-up runs), or `finished`."""
        path = self.file(LAST_STATE)
        try:
            state = load_json(path, "resume state")
        except StructuredFileError as error:
            reason = _reason(error, path)
            raise FastsegError(f"{path}: unreadable resume state ({reason}); start a new run") from None
        problem = _resume_state_problem(state)
        if problem:
            raise FastsegError(f"{path}: {problem}; start a new run (or restore the file)")
        return state

    def append_log(self, line: str) -> None:
        """One line more in `train.log`. The file is small (a line per epoch), so it is rewritten
        whole and atomically rather than appended to in place."""
        path = self.file(TRAIN_LOG)
        before = path.read_text(encoding="utf-8") if path.is_file() else ""
        write_text(path, f"{before}{line}\n")

    def read_tracker_runs(self) -> dict[str, str]:
        """`trackers.json`: {tracker name: its run id}; none yet (or unreadable: the ids only
        spare a second tracker run, so losing them costs nothing else) is {}."""
        try:
            runs = load_json(self.file(TRACKER_RUNS), "tracker runs")
        except FastsegError:
            return {}
        return {str(name): str(run_id) for name, run_id in runs.items()} if isinstance(runs, dict) else {}

    def write_tracker_runs(self, runs: dict[str, str]) -> None:
        write_json(self.file(TRACKER_RUNS), runs)

    def write_resume_state(self, state: dict[str, Any]) -> None:
        write_json(self.file(LAST_STATE), state, durable=True)

    def write_checkpoint(self, name: str, state: dict[str, Any]) -> None:
        """`best.pth` or `last.pth` (`training.checkpointing` says what they hold), durably: a
        power cut leaves the old file or the new one, never an empty one."""
        import torch

        with atomic_path(self.checkpoint(name), durable=True) as temporary:
            torch.save(state, temporary)

    def mark_finished(self, completed_epochs: int) -> None:
        """The run is over (`model.pth` is written): `last.json` says so, then the checkpoints go.
        A crash in between leaves a finished run with checkpoints, never a run without either."""
        self.write_resume_state({"finished": True, "completed_epochs": completed_epochs})
        for name in (BEST, LAST):
            self.checkpoint(name).unlink(missing_ok=True)

    # --- what the run was ----------------------------------------------------------------------

    def write_config(self, config: TrainConfig, model_config: ModelConfig) -> None:
        values = {
            "train": config.to_dict(),
            "model": model_config.to_dict(),
            "versions": package_versions(),
            "git_commit": git_commit(),
        }
        write_json(self.file(CONFIG), values)

    def read_train_config(self) -> TrainConfig:
        from fastseg.training.config import TrainConfig  # inference reads run folders without it

        path = self.file(CONFIG)
        values = load_json(path, "run config")
        if not isinstance(values, dict) or not isinstance(values.get("train"), dict):
            raise FastsegError(f"{path}: not a fastseg run config (no 'train' mapping)")
        values = values["train"]
        try:
            config = TrainConfig.from_dict(values)
            config.check_fields()
        except (TypeError, FastsegError) as error:
            raise FastsegError(f"{path}: {error}") from None
        if config.augment.random_scale_crop and "crop_size" not in values:
            raise FastsegError(
                f"{path}: made by an earlier fastseg whose random-scale crops scaled the shorter side "
                "and validated squished; this version letterboxes, so the run cannot be resumed: "
                "start a new one"
            )
        return config

    def data_folder(self) -> str:
        """The `--data` the run was trained with."""
        path = self.file(CONFIG)
        try:
            data = load_json(path, "run config")["train"]["data"]
        except FastsegError as error:  # unreadable: say why (not UTF-8, not JSON), not only "pass --data"
            reason = _reason(error, path)
            raise FastsegError(f"{path}: {reason}; pass --data to name the run's dataset") from None
        except (KeyError, TypeError):
            data = None
        if not data or not isinstance(data, str):
            raise FastsegError(f"{path}: does not name the run's dataset; pass --data")
        return data

    def write_split(self, split: Split) -> None:
        write_json(self.file(SPLIT), split.to_dict())

    def read_split(
        self, dataset: SegmentationData | None = None, subsets: tuple[str, ...] = ("train", "valid", "test")
    ) -> Split:
        """`split.json`; with `dataset`, every image and mask of `subsets` (the ones the caller
        reads) must still be in it, else one line naming split.json and the first missing file:
        the data set's own "file not found" did not say the id came from the run's split."""
        path = self.file(SPLIT)
        if not path.is_file():
            raise CheckpointError(f"{path}: split file not found")
        try:
            split = Split.from_dict(load_json(path, "split file"))
        except (DatasetError, StructuredFileError) as error:
            raise CheckpointError(f"{path}: not a fastseg split file ({_reason(error, path)})") from None
        if dataset is not None:
            self.check_split_images(split, dataset, subsets)
        return split

    def check_split_images(self, split: Split, dataset: SegmentationData, subsets: tuple[str, ...]) -> None:
        """`read_split`'s check on a split already read: every image and mask of `subsets` still
        in `dataset` (report reads the split for its ids before it knows the data set is the
        model's, and checks the files after: one parse, the class mismatch said first)."""
        _require_listed_images(self.file(SPLIT), dataset, [split.ids(subset) for subset in subsets])

    def write_class_weights(
        self, weights: np.ndarray, counts: np.ndarray, method: str, classes: tuple[str, ...]
    ) -> None:
        write_json(
            self.file(CLASS_WEIGHTS),
            {
                "method": method,
                "classes": list(classes[: len(weights)]),
                "weights": [round(float(weight), 6) for weight in weights],
                "pixel_counts": [int(count) for count in counts.sum(0)],
            },
        )

    def refresh_class_weights(
        self, weights: np.ndarray, counts: np.ndarray, method: str, classes: tuple[str, ...]
    ) -> str | None:
        """On resume: a resumed run trains with `weights`, computed again from the training masks,
        never with the file's; so a `class_weights.json` that is damaged, missing or holds other
        weights (edited by hand, masks changed) is rewritten, whole, with these, lest `report`
        refuse the finished run over it or it tell of weights the run did not use. Returns a note
        saying what was wrong, None when the file already held them."""
        path = self.file(CLASS_WEIGHTS)
        try:
            recorded = self.read_class_weights(len(weights))
        except CheckpointError as error:
            problem = _reason(error, path)
        else:
            if recorded is not None and np.allclose(recorded.numpy(), weights, rtol=1e-5, atol=1e-6):
                return None
            problem = "missing" if recorded is None else f"not the {method} weights of the training masks"
        self.write_class_weights(weights, counts, method, classes)
        return f"{path}: {problem}; rewritten with the weights this run trains with ({method})"

    def read_class_weights(self, num_classes: int | None = None) -> torch.Tensor | None:
        """The loss weights the run trained with (one finite, non-negative number per class, when
        `num_classes` is given); None for a run without the file."""
        import torch

        path = self.file(CLASS_WEIGHTS)
        if not path.is_file():
            return None
        try:
            values = load_json(path, "class-weights file")
        except StructuredFileError as error:
            reason = _reason(error, path)
            raise CheckpointError(f"{path}: not a fastseg class-weights file ({reason})") from None
        weights = values.get("weights") if isinstance(values, dict) else None
        # 1e300 is finite to Python and infinite in the float32 loss; all zeros divide 0 by 0
        usable = isinstance(weights, list) and all(
            finite_number(weight) and 0 <= weight <= MAX_CLASS_WEIGHT for weight in weights
        )
        if not usable or not any(w > 0 for w in weights):
            raise CheckpointError(f"{path}: not a fastseg class-weights file ('weights' must be a list of "
                                  f"numbers from 0 to {MAX_CLASS_WEIGHT:g}, not all 0)")  # fmt: skip
        if num_classes is not None and len(weights) != num_classes:
            count = len(weights)
            raise CheckpointError(f"{path}: {count} class weights for a model of {num_classes} classes")
        return torch.tensor([float(weight) for weight in weights])

    def read_epoch_seconds(self) -> list[float]:
        """Each epoch's duration in seconds, from `history.csv`."""
        return history.read_epoch_seconds(self.file(HISTORY))

    def read_report_metrics(self) -> dict[str, Any] | None:
        """`RUN/report/metrics.json`, where `fastseg report` writes by default; None without one."""
        path = self.path / REPORT / "metrics.json"
        if not path.exists():
            return None
        values = load_json(path, "report metrics")  # damaged: the caller shows the run as damaged
        if not isinstance(values, dict):
            kind = type(values).__name__
            raise FastsegError(f"{path}: not a report's metrics (expected a mapping, got {kind})")
        return values

    def scored_model_pth(self, metrics: dict[str, Any]) -> bool:
        """Whether a report's `metrics` (`RUN/report/metrics.json`) scored this run's model.pth as it
        is now, by the `model_file` record `model_record` made: a model.pth retrained after the
        report, or another run's report written here (`report --model B --out A/report`), gave
        `fastseg runs` a test mIoU of another model. Another size is another file; equal size and
        modification time, the same; else the bytes decide (a copied run has new times, the same bytes).
        A report from before the record has nothing to compare: taken as model.pth's, as it was."""
        recorded = metrics.get("model_file")
        if recorded is None:
            return True
        path = self.path / REPORT / "metrics.json"
        if not isinstance(recorded, dict) or not isinstance(recorded.get("sha256"), str):
            raise FastsegError(f"{path}: 'model_file' must be a mapping holding the model's sha256")
        if not self.model.is_file():
            return False
        status = self.model.stat()
        if isinstance(recorded.get("bytes"), int) and status.st_size != recorded["bytes"]:  # not read
            return False
        if status.st_mtime_ns == recorded.get("modified_ns"):
            return True
        return model_record(self.model)["sha256"] == recorded["sha256"]

    def status(self) -> str:
        """finished (model exported), resumable (a checkpoint to `--resume`), or interrupted
        (stopped before its first checkpoint)."""
        path = self.file(LAST_STATE)
        state = load_json(path, "resume state") if path.exists() else {}  # damaged: raised, a table says so
        if not isinstance(state, dict):
            raise FastsegError(f"{path}: not a resume state (expected a mapping, got {type(state).__name__})")
        if state.get("finished") is True:
            return "finished"
        resumable = self.file(f"{LAST}.pth").is_file() and "completed_epochs" in state
        return "resumable" if resumable else "interrupted"

    def read_history(self) -> pd.DataFrame:
        """`history.csv` as numbers, one row per epoch (`fastseg.runs.history`)."""
        return history.read_history(self.file(HISTORY))

    def history_rows_before(self, epoch: int) -> list[str]:
        """`history.csv`'s rows of the epochs before `epoch`, as written: what a resumed run keeps."""
        return history.rows_before(self.file(HISTORY), epoch)

    def write_history(self, header: str, rows: list[str]) -> None:
        history.write_history(self.file(HISTORY), header, rows)


def model_record(path: Path) -> dict[str, Any]:
    """What a report writes down of the model file it scores (metrics.json's `model_file`), so that
    `RunFolder.scored_model_pth` can tell later whether model.pth is still that file: its size and
    modification time (a cheap first look) and the SHA-256 of its bytes (70 ms for 75 MiB)."""
    from fastseg.model.exported import file_sha256  # hashlib only; kept out of `runs --help`

    status = path.stat()
    return {"bytes": status.st_size, "modified_ns": status.st_mtime_ns, "sha256": file_sha256(path)}


def _require_listed_images(path: Path, dataset: SegmentationData, id_lists: list[list[str]]) -> None:
    """A `CheckpointError` naming split.json (`path`), the first id whose image or mask is gone
    from `dataset` and that file, and how many more files are missing."""
    missing: list[tuple[str, Path]] = []
    for image_id in dict.fromkeys(image_id for ids in id_lists for image_id in ids):
        try:  # a dataset.yaml data set knows its ids: one it does not list says so itself
            files = (dataset.image_path(image_id), dataset.mask_path(image_id))
        except DatasetError as error:
            raise CheckpointError(f"{path}: {error}") from None
        missing += [(image_id, file) for file in files if not file.is_file()]
    if missing:
        (image_id, file), others = missing[0], len(missing) - 1
        more = f" (and {others} more missing file{'s' if others > 1 else ''})" if others else ""
        raise CheckpointError(f"{path}: lists {image_id!r}, but {file} is gone{more}: the data set "
                              "changed since the run began; restore the file")  # fmt: skip


def _resume_state_problem(state: Any) -> str | None:
    """What is wrong with `last.json`'s values, or None."""
    if not isinstance(state, dict):
        return f"expected a mapping, got {type(state).__name__}"
    completed, best, wait = state.get("completed_epochs", 0), state.get("best"), state.get("wait", 0)
    if type(completed) is not int or completed < 0:
        return f"completed_epochs must be a whole number >= 0, got {completed!r}"
    if best is not None and not (finite_number(best) and 0 <= best <= 1):
        return f"best must be a score from 0 to 1 or null, got {best!r}"
    if type(wait) is not int or wait < 0:
        return f"wait must be a whole number >= 0, got {wait!r}"
    return None


def _reason(error: Exception, path: Path) -> str:
    """An error's message without the file name it starts with (the caller names the file)."""
    return str(error).removeprefix(f"{path}: ")


def _ours(path: Path) -> bool:
    """Whether `path`, named like one of a run's files, is the file fastseg writes under that name:
    recognised by its content, so `--force` never takes a user's file for one of ours."""
    from fastseg.outputs import written_by_fastseg

    name = path.name
    try:
        if name.endswith(".pth"):
            import zipfile

            return zipfile.is_zipfile(path)  # torch.save's format; read weights-only when used
        if name in (ONNX_FILENAME, INT8_FILENAME):
            return written_by_fastseg(path, "export")
        if name.endswith(".png"):
            from PIL import Image

            with Image.open(path) as image:  # figures are drawn by matplotlib, which signs them
                return str(image.info.get("Software", "")).startswith("Matplotlib")
        if name == HISTORY:
            return history.looks_like_history(path)
        if name == TRAIN_LOG:
            first = path.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0]
            return first == "" or first.startswith(("epoch ", "Better model found"))
        values = load_json(path)
        if name == CONFIG:
            return isinstance(values, dict) and isinstance(values.get("train"), dict)
        if name == SPLIT:
            Split.from_dict(values)
        if name == CLASS_WEIGHTS:
            return isinstance(values, dict) and "weights" in values
        return isinstance(values, dict)
    except (OSError, ValueError, FastsegError, SyntaxError):
        return False
