"""Figures a person reads: dataset samples and (later) curves and prediction grids.

Matplotlib is driven through `Figure` objects, never `pyplot`, so nothing depends on a display
and nothing leaks between calls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from fastseg.classes import IMAGENET_MEAN, IMAGENET_STD, VOC_CLASSES, VOID_LABEL, colorize, voc_colormap


def denormalize(images: np.ndarray) -> np.ndarray:
    """Normalised `(N, 3, H, W)` float batch -> displayable `(N, H, W, 3)` uint8."""
    mean = np.array(IMAGENET_MEAN).reshape(1, 3, 1, 1)
    std = np.array(IMAGENET_STD).reshape(1, 3, 1, 1)
    pixels = np.clip((images * std + mean) * 255, 0, 255).round().astype(np.uint8)
    return pixels.transpose(0, 2, 3, 1)


def class_legend(masks: Sequence[np.ndarray]) -> list[Patch]:
    """Legend patches for every class (and void) present in any of `masks`."""
    present = sorted(set(np.unique(np.concatenate([m.ravel() for m in masks])).tolist()))
    colours = voc_colormap()
    return [
        Patch(
            facecolor=np.array(colours[label]) / 255,
            edgecolor="black",
            label="void" if label == VOID_LABEL else VOC_CLASSES[label],
        )
        for label in present
        if label == VOID_LABEL or label < len(VOC_CLASSES)
    ]


def save_figure(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path


def image_grid(
    rows: Sequence[Sequence[np.ndarray]],
    column_titles: Sequence[str],
    row_captions: Sequence[str] | None = None,
    title: str | None = None,
    cell_inches: float = 2.6,
) -> Figure:
    """Rows of pictures (RGB `(H, W, 3)` or class-index `(H, W)` masks, coloured) with a class legend."""
    n_rows, n_cols = len(rows), len(column_titles)
    figure = Figure(figsize=(cell_inches * n_cols + 2.2, cell_inches * n_rows + 0.6))
    axes = figure.subplots(n_rows, n_cols, squeeze=False)
    masks = []
    for row_index, row in enumerate(rows):
        for col_index, picture in enumerate(row):
            axis = axes[row_index][col_index]
            if picture.ndim == 2:
                masks.append(picture)
                picture = colorize(picture)
            axis.imshow(picture, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if row_index == 0:
                axis.set_title(column_titles[col_index], fontsize=11)
        if row_captions:
            axes[row_index][0].set_ylabel(row_captions[row_index], fontsize=9)
    if masks:
        figure.legend(handles=class_legend(masks), loc="center right", fontsize=9, frameon=False)
        figure.subplots_adjust(right=1 - 2.0 / (cell_inches * n_cols + 2.2))
    if title:
        figure.suptitle(title, fontsize=12)
    return figure


def save_batch_sample(images: np.ndarray, masks: np.ndarray, path: Path, title: str, rows: int = 4) -> Path:
    """`image | mask` grid of the first `rows` items of a normalised batch, as the seed's README shows."""
    pictures = denormalize(images[:rows])
    grid = [[picture, mask] for picture, mask in zip(pictures, masks[:rows], strict=True)]
    return save_figure(image_grid(grid, ["image", "mask"], title=title), path)


def save_training_curve(history, path: Path, planned_epochs: int | None = None) -> Path:  # noqa: ANN001
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
