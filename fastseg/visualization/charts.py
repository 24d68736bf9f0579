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
    from matplotlib.axes import Axes


CURVE_PANELS = (("loss", "loss"), ("pixel_accuracy", "pixel accuracy"), ("miou", "mIoU"))


def best_epoch(history: pd.DataFrame) -> int | None:
    """The epoch of the highest validation mIoU (the one `--keep best` keeps); None before any."""
    if "valid_miou" in history and history["valid_miou"].notna().any():
        return int(history.loc[history["valid_miou"].idxmax(), "epoch"])
    return None


def _curve_panel(axis: Axes, history: pd.DataFrame, column: str, label: str,
                 planned_epochs: int | None, legend_size: float) -> None:  # fmt: skip
    """One metric's training and validation curves by epoch, with the best epoch and an early
    stop marked."""
    best = best_epoch(history)
    for prefix, legend in (("train", "training"), ("valid", "validation")):
        if f"{prefix}_{column}" in history:
            axis.plot(history["epoch"], history[f"{prefix}_{column}"], label=legend)
    if best is not None:
        axis.axvline(best, color="grey", linestyle="--", linewidth=1, label=f"best epoch ({best})")
    last_epoch = int(history["epoch"].max()) if len(history) else None
    if planned_epochs is not None and last_epoch is not None and last_epoch + 1 < planned_epochs:
        axis.axvline(last_epoch, color="red", linestyle=":", linewidth=1,
                     label=f"early stop ({last_epoch + 1} of {planned_epochs} epochs)")  # fmt: skip
    axis.set_xlabel("epoch")
    axis.set_title(label)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=legend_size)


@literal_text
def save_training_curve(history: pd.DataFrame, path: Path, planned_epochs: int | None = None) -> Path:
    """Loss, pixel accuracy and mIoU by epoch, training and validation; the best epoch is marked,
    and so is early stopping when the run ended before `planned_epochs`."""
    figure = Figure(figsize=(15, 4.2))
    for axis, (column, label) in zip(figure.subplots(1, 3), CURVE_PANELS, strict=True):
        _curve_panel(axis, history, column, label, planned_epochs, legend_size=8)
    return save_figure(figure, path)


@literal_text
def training_curve_panels(history: pd.DataFrame, planned_epochs: int | None = None) -> list[Figure]:
    """The training curve as three small figures (loss, pixel accuracy, mIoU), for the report page:
    side by side on a wide screen, one under another on a phone, and no text below 10 points, so
    at the width the page shows them (about 350 px of their 420) none reads smaller than 10 px."""
    figures = []
    for column, label in CURVE_PANELS:
        figure = Figure(figsize=(4.2, 3.2), layout="constrained")
        _curve_panel(figure.subplots(), history, column, label, planned_epochs, legend_size=10)
        figures.append(figure)
    return figures


@literal_text
def class_iou_chart(
    class_names: list[str], class_iou: list[float], colours: list[tuple[int, int, int]] | None = None
) -> Figure:
    """Horizontal bars of per-class IoU, worst at the bottom, in the classes' own colours (VOC's
    when `colours` is None); absent classes are labelled so."""
    colours = colours or voc_colormap(len(class_names))
    order = sorted(range(len(class_names)), key=lambda i: -1 if math.isnan(class_iou[i]) else class_iou[i])
    figure = Figure(figsize=(8, 0.32 * len(class_names) + 1.2))
    axis = figure.subplots()
    values = [0.0 if math.isnan(class_iou[i]) else class_iou[i] for i in order]
    axis.barh(range(len(order)), values, color=[np.array(colours[i]) / 255 for i in order], edgecolor="black",
              linewidth=0.5)  # fmt: skip
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


MAX_WRITTEN_CELLS = 30  # classes beyond which a cell is too small for its share to be written in it
# A class's row and column in inches: room for its share written in the cell (8 points), or past
# MAX_WRITTEN_CELLS for its tick label alone (8 points is 0.11 in). 0.42 in for 255 classes drew
# a 10880x9999 PNG, past Pillow's decompression-bomb warning; 0.2 in draws about 5500².
CELL_INCHES, LABEL_INCHES = 0.42, 0.2
LABEL_CHAR_INCHES = 0.075  # the width of a character at 8 points, at most (DejaVu Sans)


def row_shares(matrix: np.ndarray) -> np.ndarray:
    """Each true class's row as shares of its pixels (rows sum to 1; a row without pixels is 0)."""
    counts = np.asarray(matrix, dtype=np.float64)
    rows = counts.sum(1, keepdims=True)
    return np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)


@literal_text
def confusion_figure(matrix: torch.Tensor, class_names: list[str], shown: list[int] | None = None) -> Figure:
    """Row-normalised confusion matrix (each true class sums to 1), class names on both axes.

    `shown`: the class indices drawn (the report passes the classes present in the truth or the
    prediction: an absent class's row and column are all zero, so leaving it out loses nothing).
    The figure grows with the classes so that its text stays 8 points or more at 100 dpi; past
    `MAX_WRITTEN_CELLS` classes the shares are colour only (their numbers are in the CSV), and a
    class takes only its tick label's height (`LABEL_INCHES`)."""
    shown = list(range(len(class_names))) if shown is None else list(shown)
    normalised = row_shares(matrix.cpu().numpy())[np.ix_(shown, shown)]
    names = [class_names[index] for index in shown]
    if len(shown) <= MAX_WRITTEN_CELLS:
        side = max(5.0, CELL_INCHES * len(shown) + 2.5)
    else:  # the axes keep LABEL_INCHES a class beside labels as long as the longest name
        longest = max(len(name) for name in names)
        side = LABEL_INCHES * len(shown) + 1.5 + LABEL_CHAR_INCHES * min(longest, 80)
    figure = Figure(figsize=(side + 1.2, side), layout="constrained")
    axis = figure.subplots()
    image = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(shown))
    axis.set_xticks(ticks, names, rotation=90)
    axis.set_yticks(ticks, names)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    if len(shown) <= MAX_WRITTEN_CELLS:
        for true in ticks:
            for guess in ticks:
                if normalised[true, guess] >= 0.005:
                    colour = "white" if normalised[true, guess] > 0.5 else "black"
                    axis.text(guess, true, f"{normalised[true, guess]:.2f}", ha="center", va="center",
                              fontsize=8, color=colour)  # fmt: skip
    figure.colorbar(image, fraction=0.046, pad=0.04, label="share of the true class's pixels")
    axis.set_title("confusion matrix (rows: true class, normalised; void excluded)")
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
