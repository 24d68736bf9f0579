"""Pictures a person reads: grids of images and coloured masks with a class legend, saved as PNG.

Matplotlib is driven through `Figure` objects, never `pyplot`, so nothing depends on a display
and nothing leaks between calls.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.text import Text

from fastseg.atomic import atomic_path
from fastseg.classes import Classes
from fastseg.data.voc import VOC
from fastseg.imaging.masks import VOID_LABEL
from fastseg.imaging.normalise import IMAGENET_MEAN, IMAGENET_STD
from fastseg.imaging.palette import colorize, colour_table
from fastseg.paths import make_folders

Drawn = TypeVar("Drawn", bound=Callable)


def literal_text(draw: Drawn) -> Drawn:
    """Every text `draw` makes is drawn as written. Matplotlib parses `$...$` in any label as
    mathematics, so a class or file named `$\\frac$` raised a ValueError and `a $5 $6 b` lost its
    dollars. Text objects read the setting when they are made (tick labels at drawing time), so
    every function that makes a figure, and `save_figure`, which draws it, runs under it; the
    global rcParams of a program that imports fastseg are left alone."""

    @functools.wraps(draw)
    def drawn(*args, **kwargs):  # noqa: ANN202
        with rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)

    return drawn  # type: ignore[return-value]


def denormalize(images: np.ndarray) -> np.ndarray:
    """Normalised `(N, 3, H, W)` float batch -> displayable `(N, H, W, 3)` uint8."""
    mean = np.array(IMAGENET_MEAN).reshape(1, 3, 1, 1)
    std = np.array(IMAGENET_STD).reshape(1, 3, 1, 1)
    pixels = np.clip((images * std + mean) * 255, 0, 255).round().astype(np.uint8)
    return pixels.transpose(0, 2, 3, 1)


def class_legend(masks: Sequence[np.ndarray], classes: Classes = VOC) -> list[Patch]:
    """Legend patches for every class (and void) present in any of `masks`, in `classes`' colours."""
    present = sorted(set(np.unique(np.concatenate([m.ravel() for m in masks])).tolist()))
    colours = colour_table(classes.colors)
    return [
        Patch(
            facecolor=colours[label] / 255,
            edgecolor="black",
            label="void" if label == VOID_LABEL else classes.names[label],
        )
        for label in present
        if label == VOID_LABEL or label < len(classes)
    ]


@literal_text
def save_figure(figure: Figure, path: Path, text: dict[str, str] | None = None) -> Path:
    """Render `figure` to the PNG `path`, atomically; `text`: PNG text chunks to carry, such as
    the role `fastseg.outputs` recognises its own outputs by."""
    make_folders(path.parent)
    FigureCanvasAgg(figure)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100, bbox_inches="tight", metadata=text)
    return path


@literal_text
def figure_png(figure: Figure, dpi: int = 100) -> bytes:
    """`figure` as PNG bytes (tight bounding box), for a page that embeds it without a file."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


@literal_text
def smallest_font_px(figure: Figure, dpi: int = 100, draw: bool = True) -> float:
    """The smallest text `figure` draws, in pixels of its PNG at `dpi` (points * dpi / 72): how
    large it reads on a page follows from the width the page shows the PNG at. Only visible,
    non-empty texts count (tick labels exist only once the figure is drawn: `draw=False` where
    it was just saved); inf without text."""
    if draw:
        FigureCanvasAgg(figure).draw()
    sizes = [text.get_fontsize() for text in figure.findobj(Text) if text.get_visible() and text.get_text()]
    return min(sizes, default=math.inf) * dpi / 72


@literal_text
def image_grid(
    rows: Sequence[Sequence[np.ndarray]],
    column_titles: Sequence[str],
    row_captions: Sequence[str] | None = None,
    title: str | None = None,
    cell_inches: float = 2.6,
    classes: Classes = VOC,
) -> Figure:
    """Rows of pictures (RGB `(H, W, 3)` or class-index `(H, W)` masks, coloured) with a class legend.

    A row's caption is written level, under its first picture: rotated beside the row, a
    two-line caption ran into the rows above and below it and was cut at the page's edge.
    Constrained layout keeps titles, captions and the legend clear of the pictures."""
    n_rows, n_cols = len(rows), len(column_titles)
    caption_inches = 0.45 if row_captions else 0.0
    figure = Figure(figsize=(cell_inches * n_cols + 2.2, (cell_inches + caption_inches) * n_rows + 0.6),
                    layout="constrained")  # fmt: skip
    axes = figure.subplots(n_rows, n_cols, squeeze=False)
    masks = []
    for row_index, row in enumerate(rows):
        for col_index, picture in enumerate(row):
            axis = axes[row_index][col_index]
            if picture.ndim == 2:
                masks.append(picture)
                picture = colorize(picture, classes.colors)
            axis.imshow(picture, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if row_index == 0:
                axis.set_title(column_titles[col_index], fontsize=11)
        if row_captions:
            axes[row_index][0].set_xlabel(row_captions[row_index], fontsize=8, loc="left")
    if masks:
        figure.legend(
            handles=class_legend(masks, classes), loc="outside right upper", fontsize=9, frameon=False
        )
    if title:
        figure.suptitle(title, fontsize=12)
    return figure


def save_batch_sample(images: np.ndarray, masks: np.ndarray, path: Path, title: str, rows: int = 4,
                      classes: Classes = VOC) -> Path:  # fmt: skip
    """`image | mask` grid of the first `rows` items of a normalised batch, as the seed's README shows."""
    pictures = denormalize(images[:rows])
    grid = [[picture, mask] for picture, mask in zip(pictures, masks[:rows], strict=True)]
    from fastseg.outputs import SAMPLE_TEXT  # the mark by which show-data knows its own sample

    return save_figure(image_grid(grid, ["image", "mask"], title=title, classes=classes), path,
                       text=dict([SAMPLE_TEXT]))  # fmt: skip
