"""What `report.html` says about the run behind the scores: the summary card's facts (run, data
set, model file and what ran it, dates, epochs and the best one, training time), the training
curve redrawn from `history.csv` for the page, and the config the run trained with.

Everything is read from the run's own files, as `fastseg runs` reads them. A run file that is
missing or damaged does not stop a report whose scores are already computed: its part of the page
says what is missing and why, in words. A value from outside (a path, a config value, an error's
reason) inside one of these sentences is `isolated`, so it cannot reorder the words around it.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fastseg.errors import FastsegError, first_line
from fastseg.inference.segmenter import Segmenter
from fastseg.number_style import quantity, score
from fastseg.runs.folder import CONFIG, HISTORY, RunFolder
from fastseg.structured_files import load_json
from fastseg.visualization.charts import best_epoch, training_curve_panels
from fastseg.visualization.html import isolated

FLOAT32_MAX = float(np.finfo(np.float32).max)  # a training's numbers are float32 tensors' values
# What reading a run file may raise when it was damaged or edited by hand (pandas' parser errors
# are ValueErrors); the page then names the file and the reason.
DAMAGE = (OSError, ValueError, TypeError, KeyError, AttributeError, IndexError, FastsegError)


def when(timestamp: float) -> str:
    """A file time as a reader's date: `2026-12-06 13:02 UTC` (the machine's own zone)."""
    return datetime.fromtimestamp(timestamp).astimezone().strftime("%Y-%m-%d %H:%M %Z")


def duration(seconds: float) -> str:
    """`57 s`, `12 min 05 s`, `3 h 07 min`."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def runtime_words(segmenter: Segmenter, tile: int = 0, overlap: float | None = None) -> str:
    """What computed the scores: `torch, bf16 autocast on cpu`, `onnxruntime, INT8 graph on cpu`."""
    device = str(segmenter.device)
    if segmenter.runtime.name == "onnxruntime":
        precision = str((segmenter.loaded.export or {}).get("precision", "fp32"))
        words = f"onnxruntime, {'INT8' if precision == 'int8' else precision} graph on {device}"
    else:
        dtype = getattr(segmenter.runtime, "dtype", None)
        kind = {None: "fp32"}.get(dtype, f"{str(dtype).removeprefix('torch.')} autocast")
        words = f"torch, {kind.replace('bfloat16', 'bf16').replace('float16', 'fp16')} on {device}"
    if segmenter.tiling is not None:
        words += f"; sliding {segmenter.tiling.tile} px windows, overlap {segmenter.tiling.overlap:g}"
    return words


def read_config(run: RunFolder) -> tuple[dict[str, Any] | None, str]:
    """`config.json` as a mapping with a `train` mapping, or None and why not."""
    path = run.file(CONFIG)
    if not path.is_file():
        return None, f"{path.name} not found in the run folder"
    try:
        values = load_json(path, "run config")
    except FastsegError as error:
        return None, isolated(error)
    if not isinstance(values, dict) or not isinstance(values.get("train"), dict):
        return None, f"{isolated(path)}: not a fastseg run config (no 'train' mapping)"
    return values, ""


def read_history(run: RunFolder) -> tuple[pd.DataFrame | None, str]:
    path = run.file(HISTORY)
    if not path.exists():  # a FIFO or a device is no history either, but one that is there: said so
        return None, f"{path.name} not found in the run folder"
    try:
        history = run.read_history()
        if problem := history_problem(history):
            raise ValueError(problem)
        return history, ""
    except DAMAGE as error:
        reason = first_line(error)
        return None, f"{isolated(path)} could not be read ({isolated(reason)})"


def history_problem(history: pd.DataFrame) -> str:
    """Why `history` is not a record a training wrote, or "": an epoch that is no whole number of
    at least 0 (the best epoch, `int(1.5)`, was looked up and not found: an IndexError), a score
    outside 0-1, or a number past float32's range, which no training's tensor holds (matplotlib's
    axis overflowed on 1e308: a traceback instead of the report). A loss may be infinite (a run
    that diverged): the curve leaves it out, as it leaves out NaN."""
    if "epoch" not in history:
        return "no whole epoch numbers"
    epochs = history["epoch"].to_numpy(dtype=float)
    if np.isnan(epochs).any():
        return "no whole epoch numbers"
    counted = np.isfinite(epochs) & (epochs >= 0)
    odd = ~counted | (np.mod(np.where(counted, epochs, 0), 1) != 0)
    if odd.any():
        return f"epoch {epochs[odd][0]:g} is not a whole number of at least 0"
    for column in history.columns:
        values = history[column].to_numpy(dtype=float)
        if column.endswith(("miou", "accuracy")):
            wrong = ~np.isnan(values) & ((values < 0) | (values > 1))
            if wrong.any():
                return f"{column} {values[wrong][0]:g} is not a score between 0 and 1"
        wrong = np.isfinite(values) & (np.abs(values) > FLOAT32_MAX)
        if wrong.any():
            return f"{column} {values[wrong][0]:g} is past float32's range"
    return ""


def training_facts(
    run: RunFolder, history: pd.DataFrame | None, train: dict[str, Any]
) -> list[tuple[str, str]]:
    """Epochs (run, planned, the best) and training time, from history.csv and config.json."""
    if history is None or not len(history):
        return [("Training", "no epoch recorded in history.csv")]
    planned = train.get("epochs")
    last = int(history["epoch"].max())
    epochs = f"{len(history)} epochs (0-{last})" + (
        f" of {planned} planned" if isinstance(planned, int) else ""
    )
    best = best_epoch(history)
    if best is not None:
        value = history.loc[history["epoch"] == best, "valid_miou"].iloc[0]
        epochs += f"; best validation mIoU {score(float(value))} at epoch {best}"
    keep = train.get("keep")
    if keep in ("best", "final"):
        epochs += f"; model.pth holds the {keep} epoch's weights"
    facts = [("Training", epochs)]
    try:
        seconds = sum(run.read_epoch_seconds())
        facts.append(("Training time", f"{duration(seconds)} over {len(history)} epochs"))
    except DAMAGE:
        facts.append(("Training time", "unknown (history.csv has no readable time column)"))
    return facts


def recipe_words(train: dict[str, Any], model: dict[str, Any]) -> str:
    encoder = model.get("encoder") or train.get("encoder")
    parts = [f"{isolated(train['recipe'])} recipe" if train.get("recipe") else None,
             f"{isolated(encoder)} encoder" if encoder else None,
             f"{isolated(train['size'])} px input" if train.get("size") else None,
             f"batch {isolated(train['batch_size'])}" if train.get("batch_size") else None,
             f"lr {isolated(train['lr'])}" if train.get("lr") is not None else None,
             f"{isolated(train['loss'])} loss" if train.get("loss") else None]  # fmt: skip
    return " · ".join(str(part) for part in parts if part)


def summary_facts(
    run: RunFolder, model: Path, data: Path, subset: str, images: int, segmenter: Segmenter,
    config: dict[str, Any] | None, history: pd.DataFrame | None,
) -> list[tuple[str, str]]:  # fmt: skip
    """The summary card's rows, in reading order."""
    size = (
        f" ({model.stat().st_size / 1e6:.1f} MB, written {when(model.stat().st_mtime)})"
        if model.is_file()
        else ""
    )
    facts = [
        ("Run", str(run.path)),
        (
            "Data set",
            f"{isolated(data)}: the {subset} split, {quantity(images, 'image')}, each scored at its "
            "original resolution",
        ),
        ("Model file", f"{isolated(model)}{size}"),
        ("Runs on", runtime_words(segmenter)),
    ]
    if config is None:
        facts.append(("Training", "unknown: config.json is missing or unreadable"))
    else:
        train, model_config = (
            config["train"],
            config.get("model") if isinstance(config.get("model"), dict) else {},
        )
        facts.append(("Started", when(run.file(CONFIG).stat().st_mtime)))
        facts.extend(training_facts(run, history, train))
        if recipe := recipe_words(train, model_config):
            facts.append(("Recipe", recipe))
    facts.append(("Report written", when(datetime.now().timestamp())))
    return facts


def config_rows(config: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Every `train` field as (name, value), the augmentation's as `augment.name`."""
    if config is None:
        return []
    train = dict(config["train"])
    augment = train.pop("augment", {})
    rows = [(str(name), str(value)) for name, value in train.items()]
    if isinstance(augment, dict):
        rows += [(f"augment.{name}", str(value)) for name, value in augment.items()]
    else:
        rows.append(("augment", str(augment)))
    return rows


def config_note(config: dict[str, Any] | None, reason: str) -> str:
    if config is None:
        return f"No training configuration: {isolated(reason)}."
    versions = config.get("versions")
    shown = ""
    if isinstance(versions, dict):
        listed = ", ".join(f"{isolated(name)} {isolated(version)}" for name, version in versions.items())
        shown = f" Packages: {listed}."
    commit = config.get("git_commit")
    commit_words = f" fastseg commit {isolated(commit)}." if isinstance(commit, str) and commit else ""
    return f"As the run trained (config.json; `fastseg train --config` repeats it).{shown}{commit_words}"


def curve_page(history: pd.DataFrame | None, reason: str, config: dict[str, Any] | None) -> tuple[list, str]:
    """The training curve's panels and the note under the section's title."""
    if history is None or not len(history):
        return [], f"No training curve: {isolated(reason) if reason else 'history.csv holds no epoch'}."
    planned = config["train"].get("epochs") if config else None
    planned = planned if isinstance(planned, int) and not isinstance(planned, bool) else None
    best = best_epoch(history)
    marked = f" The dashed line marks the best validation mIoU (epoch {best})." if best is not None else ""
    scores = [value for value in history.get("valid_miou", pd.Series(dtype=float)) if not math.isnan(value)]
    seen = f" Validation mIoU went from {score(scores[0])} to {score(scores[-1])}." if len(scores) > 1 else ""
    note = f"Training and validation loss, pixel accuracy and mIoU by epoch (history.csv).{marked}{seen}"
    return training_curve_panels(history, planned), note
