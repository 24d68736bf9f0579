"""Charts of numbers: the training curve, per-class IoU bars and the confusion matrix."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from fastseg.imaging.palette import voc_colormap
from fastseg.visualization.figures import literal_text, save_figure

if TYPE_CHECKING:
    import pandas as pd
    import torch


@literal_text
def save_training_curve(history: pd.DataFrame, path: Path, planned_epochs: int | None = None) -> Path:
    """Loss, pixel accuracy and mIoU by epoch, training and validation; the best epoch is marked,
    and so is early stopping when the run ended before `planned_epochs`."""
    figure = Figure(figsize=(15, 4.2))
    axes = figure.subplots(1, 3)
    panels = (("loss", "loss"), ("pixel_accuracy", "pixel accuracy"), ("miou", "mIoU"))
    best_epoch = None
    if "valid_miou" in history and history["valid_miou"].notna().any():
        best_epoch = int(history.loc[history["valid_miou"].idxmax(), "epoch"])
    for axis, (column, label) in zip(axes, panels, strict=True):
        for prefix, legend in (("train", "training"), ("valid", "validation")):
            if f"{prefix}_{column}" in history:
                axis.plot(history["epoch"], history[f"{prefix}_{column}"], label=legend)
        if best_epoch is not None:
            axis.axvline(
                best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best epoch ({best_epoch})"
            )
        last_epoch = int(history["epoch"].max()) if len(history) else None
        if planned_epochs is not None and last_epoch is not None and last_epoch + 1 < planned_epochs:
            axis.axvline(last_epoch, color="red", linestyle=":", linewidth=1,
                         label=f"early stop ({last_epoch + 1} of {planned_epochs} epochs)")  # fmt: skip
        axis.set_xlabel("epoch")
        axis.set_title(label)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    return save_figure(figure, path)


@literal_text
def class_iou_chart(class_names: list[str], class_iou: list[float]) -> Figure:
    """Horizontal bars of per-class IoU, worst at the bottom; absent classes are labelled so."""
    order = sorted(range(len(class_names)), key=lambda i: -1 if math.isnan(class_iou[i]) else class_iou[i])
    figure = Figure(figsize=(8, 0.32 * len(class_names) + 1.2))
    axis = figure.subplots()
    values = [0.0 if math.isnan(class_iou[i]) else class_iou[i] for i in order]
    colours = [np.array(voc_colormap()[i]) / 255 for i in order]
    axis.barh(range(len(order)), values, color=colours, edgecolor="black", linewidth=0.5)
    axis.set_yticks(range(len(order)), [class_names[i] for i in order])
    for position, index in enumerate(order):
        text = "absent" if math.isnan(class_iou[index]) else f"{class_iou[index]:.3f}"
        inside = values[position] > 0.85  # no room to the right: write on the bar, in white
        x = values[position] - 0.01 if inside else values[position] + 0.01
        axis.text(x, position, text, va="center", ha="right" if inside else "left", fontsize=8,
                  color="white" if inside else "black")  # fmt: skip
    axis.set_xlim(0, 1)
    axis.set_xlabel("IoU")
    axis.set_title("per-class IoU")
    axis.grid(axis="x", alpha=0.3)
    return figure


@literal_text
def confusion_figure(matrix: torch.Tensor, class_names: list[str]) -> Figure:
    """Row-normalised confusion matrix (each true class sums to 1), class names on both axes."""
    counts = matrix.double().cpu().numpy()
    rows = counts.sum(1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    figure = Figure(figsize=(11, 10))
    axis = figure.subplots()
    shown = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=90)
    axis.set_yticks(ticks, class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for true in ticks:
        for guess in ticks:
            if normalised[true, guess] >= 0.01:
                colour = "white" if normalised[true, guess] > 0.5 else "black"
                axis.text(guess, true, f"{normalised[true, guess]:.2f}", ha="center", va="center",
                          fontsize=6, color=colour)  # fmt: skip
    figure.colorbar(shown, fraction=0.046, pad=0.04)
    figure.suptitle("confusion matrix (rows: true class, normalised; void excluded)")
    return figure


def save_lr_find_curve(lrs: list[float], losses: list[float], suggestion: float, path: Path) -> Path:
    """`fastseg lr-find`'s plot: smoothed training loss against the learning rate (log scale),
    the suggested rate marked. Tick labels are plain text ("1e-03"), not mathtext's 10 to the -3,
    so they read the same as the `--lr` value printed beside the plot."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    figure = Figure(figsize=(7, 4.2))
    axis = figure.subplots()
    axis.plot(lrs, losses, label="training loss (smoothed)")
    marker = f"suggested --lr {suggestion:.3g}"
    axis.axvline(suggestion, color="red", linestyle="--", linewidth=1, label=marker)
    axis.set_xscale("log")
    axis.xaxis.set_major_locator(LogLocator(base=10))
    axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.0e}"))
    axis.xaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
    axis.set_xlabel("learning rate (decoder; log scale)")
    axis.set_ylabel("loss")
    axis.set_title("learning-rate finder (fastai lr_find, valley suggestion)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    from fastseg.outputs import LR_FIND_TEXT  # the mark by which `lr-find` knows its own plot

    return save_figure(figure, path, text=dict([LR_FIND_TEXT]))
