"""`fastseg report`: a run's split evaluated at each image's original resolution.

Steps: find the run's data and split, stream the images through the segmenter's strategy
(`fastseg.inference.segmenter.segment`) into a confusion matrix (the split's total, and one per
image for the best/worst ranking), write the tables, draw the figures (the few images shown are
predicted again, the same way), and write the HTML page. All numbers come from
:class:`~fastseg.metrics.ConfusionMatrix`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from fastseg.atomic import atomic_path, write_json
from fastseg.classes import Classes
from fastseg.data.check import check_ids
from fastseg.data.dataset import SegmentationData
from fastseg.data.factory import open_dataset
from fastseg.errors import DatasetError, FastsegError
from fastseg.imaging.masks import VOID_LABEL
from fastseg.inference.ranking import DEFAULT_RANKING, RANKING_WORDS, RANKINGS, choose_examples, rank
from fastseg.inference.report_folder import (
    building,
    check_not_written,
    check_place,
    check_writable,
    remove_stale,
)
from fastseg.inference.report_page import (
    config_note,
    config_rows,
    curve_page,
    read_config,
    read_history,
    summary_facts,
)
from fastseg.inference.segmented import Progress, Segmented, no_progress
from fastseg.inference.segmenter import Segmenter, segment
from fastseg.inference.tiling import make_tiling
from fastseg.launch.device import loader_workers, resolve_device
from fastseg.metrics import ConfusionMatrix, Scores, scores_from_matrix
from fastseg.number_style import score
from fastseg.outputs import guard
from fastseg.runs.folder import REPORT, SPLIT, RunFolder, model_record
from fastseg.visualization.charts import class_iou_chart, confusion_figure
from fastseg.visualization.figures import image_grid, save_figure
from fastseg.visualization.html import Example, ExampleSet, ReportPage, isolated, write_html

# figure file -> the example set it shows (`fastseg.inference.ranking.EXAMPLES`: at most 5, 10, 5)
FIGURES = {
    "predictions_best.png": "best",
    "predictions_worst.png": "worst",
    "predictions_random.png": "random",
}


@dataclass
class ReportResult:
    out: Path
    subset: str
    images: int
    scores: Scores
    replaced: bool = False  # an earlier fastseg report was in `out` and is replaced


def _mask_item(dataset: SegmentationData, ids: list[str], index: int) -> dict[str, Any]:
    """The ground truth riding with image `index` through the loader (a picklable function): class
    indices, void 255, whatever the data set's own void value."""
    return {"mask": dataset.read_mask(ids[index])}


def _checked_mask(result: Segmented, dataset: SegmentationData, image_id: str) -> torch.Tensor:
    """The item's mask on the model's device; a file error or a size mismatch is a `DatasetError`."""
    if result.error:
        raise FastsegError(f"{dataset.image_path(image_id)}: {result.error}")
    mask = result.item["mask"]
    height, width = result.size
    if mask.shape != (height, width):  # the letterbox crop comes from the image's size
        raise DatasetError(
            f"{dataset.mask_path(image_id)}: mask is {mask.shape[1]}x{mask.shape[0]}, "
            f"image is {width}x{height}"
        )
    return torch.from_numpy(mask).to(result.segmenter.device)


def score_image(
    result: Segmented, mask: torch.Tensor, weights: torch.Tensor | None
) -> tuple[torch.Tensor, float]:
    """Confusion counts `(C, C)` and the weighted cross-entropy of one image at full size,
    accumulated a band of rows at a time (never all class scores at full size)."""
    num_classes = result.num_classes
    counts = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=mask.device)
    loss_sum, weight_sum = 0.0, 0.0
    for rows, scores in result.bands():
        band = torch.as_tensor(scores)  # an ONNX graph's scores come as an array
        target = mask[rows].long()
        counts += ConfusionMatrix.counts(band.max(0).indices, target, num_classes)
        loss_sum += F.cross_entropy(band[None], target[None], weight=weights, ignore_index=VOID_LABEL,
                                    reduction="sum").item()  # fmt: skip
        labelled = target[target != VOID_LABEL]
        weight_sum += float(labelled.numel() if weights is None else weights[labelled].sum())
    return counts, (loss_sum / weight_sum if weight_sum else math.nan)


def evaluate(
    segmenter: Segmenter,
    dataset: SegmentationData,
    ids: list[str],
    weights: torch.Tensor | None,
    batch_size: int,
    num_workers: int,
    progress: Progress = no_progress,
) -> tuple[ConfusionMatrix, pd.DataFrame]:
    """Total confusion matrix and a per-image table (id, pixel_accuracy, miou, loss)."""
    total = ConfusionMatrix(len(segmenter.loaded.classes))
    images = segmenter.dataset([dataset.image_path(image_id) for image_id in ids],
                               extra=partial(_mask_item, dataset, ids))  # fmt: skip
    weights = None if weights is None else weights.to(segmenter.device)
    rows = []
    for result in segment(segmenter, images, batch_size, num_workers, progress):
        image_id = ids[result.index]
        counts, loss = score_image(result, _checked_mask(result, dataset, image_id), weights)
        total.add(counts)
        scores = scores_from_matrix(counts)
        rows.append({"id": image_id, "pixel_accuracy": scores.pixel_accuracy, "miou": scores.mean_iou,
                     "loss": loss})  # fmt: skip
    return total, pd.DataFrame(rows)


def per_class_table(scores: Scores, matrix: torch.Tensor, names: list[str]) -> pd.DataFrame:
    truth = matrix.sum(1).cpu().numpy()
    predicted = matrix.sum(0).cpu().numpy()
    return pd.DataFrame(
        {
            "class": list(names),
            "iou": scores.class_iou,
            "accuracy": scores.class_accuracy,
            "truth_pixels": truth,
            "predicted_pixels": predicted,
            "present": (truth + predicted) > 0,
        }
    )


def write_tables(
    out: Path, model: Path, subset: str, total: ConfusionMatrix, ranked: pd.DataFrame, names: list[str],
    model_file: dict[str, Any] | None = None,
) -> dict:  # fmt: skip
    """metrics.json, per_class.csv, per_image.csv, confusion_matrix.csv; returns the metrics.
    `model_file`: `runs.folder.model_record` of the file scored, by which `fastseg runs` tells
    whether RUN/report still scores RUN/model.pth."""
    scores = total.scores()
    metrics = {"model": str(model), "subset": subset, "images": len(ranked), **asdict(scores)}
    if model_file is not None:
        metrics["model_file"] = model_file
    metrics["class_iou"] = dict(zip(names, scores.class_iou, strict=True))
    metrics["class_accuracy"] = dict(zip(names, scores.class_accuracy, strict=True))
    metrics["absent_classes"] = [name for name, iou in zip(names, scores.class_iou, strict=True)
                                 if math.isnan(iou)]  # fmt: skip
    write_json(out / "metrics.json", metrics)  # NaN (an absent class) is written as null
    confusion = pd.DataFrame(total.matrix.cpu().numpy(), index=names, columns=names)
    for name, table, options in (
        ("per_class.csv", per_class_table(scores, total.matrix, names), {"index": False}),
        ("per_image.csv", ranked, {"index": False}),
        ("confusion_matrix.csv", confusion, {"index_label": "true \\ predicted"}),
    ):
        with atomic_path(out / name) as temporary:
            table.to_csv(temporary, **options)
    return metrics


def prediction_rows(
    segmenter: Segmenter, dataset: SegmentationData, ids: list[str]
) -> list[list[np.ndarray]]:
    """image | truth | prediction for a handful of ids, at original size."""
    images = segmenter.dataset([dataset.image_path(image_id) for image_id in ids], keep_original=True,
                               extra=partial(_mask_item, dataset, ids))  # fmt: skip
    return [[result.item["original"], result.item["mask"], result.labels()]
            for result in segment(segmenter, images, batch_size=1, num_workers=0)]  # fmt: skip


SCORE_NAMES = {"miou": "mIoU", "accuracy": "pixel accuracy", "loss": "loss"}


def _scores(row: pd.Series, rank_by: str) -> list[tuple[str, str]]:
    """An image's scores as (name, text), the ranking's first."""
    names = [rank_by, *(name for name in RANKINGS if name != rank_by)]
    return [(SCORE_NAMES[name], score(row[RANKINGS[name][0]])) for name in names]


def _caption(row: pd.Series, rank_by: str) -> str:
    return f"{row['id']}\n" + " · ".join(f"{name} {value}" for name, value in _scores(row, rank_by))


def example_sets(ranked: pd.DataFrame, rank_by: str, seed: int) -> dict[str, tuple[str, str, pd.DataFrame]]:
    """The images the report shows, no image twice: best and worst by `rank_by`, and a random draw
    from the others (`fastseg.inference.ranking.choose_examples`), each with its title and note."""
    scored = int(ranked[RANKINGS[rank_by][0]].notna().sum())  # NaN (no labelled pixel) ranks last
    chosen = choose_examples(scored, len(ranked), seed)
    words = RANKING_WORDS[rank_by]
    unscored = (
        f"; {len(ranked) - scored} image(s) without a labelled pixel have no score"
        if scored < len(ranked)
        else ""
    )
    others = len(chosen["random"])
    notes = {
        "best": f"Ranked by {words}{unscored}. Best first.",
        "worst": f"Ranked by {words}. Worst first; no image is both best and worst."
        if chosen["worst"] else "Every scored image is already shown as best (no image is both).",
        "random": f"Drawn at random (seed {seed}) from the images not shown as best or worst, in ranked "
        "order." if others else "Every image is already shown as best or worst.",
    }  # fmt: skip
    short = SCORE_NAMES[rank_by]
    titles = {"best": f"Best {len(chosen['best'])} by {short}",
              "worst": f"Worst {len(chosen['worst'])} by {short}",
              "random": f"{others} other image{'s' * (others != 1)} at random"}  # fmt: skip
    return {name: (titles[name], notes[name], ranked.iloc[positions]) for name, positions in chosen.items()}


def draw_figures(
    out: Path,
    segmenter: Segmenter,
    dataset: SegmentationData,
    total: ConfusionMatrix,
    ranked: pd.DataFrame,
    rank_by: str,
    seed: int,
) -> list[ExampleSet]:
    """Class IoU bars, the confusion matrix, and random / best / worst prediction grids as PNG files;
    returns the example sets for the page (each image predicted once more, for both)."""
    classes = segmenter.loaded.class_set
    names = list(classes.names)
    present = [index for index in range(len(names))
               if total.matrix[index].sum() + total.matrix[:, index].sum() > 0]  # fmt: skip
    save_figure(class_iou_chart(names, total.scores().class_iou, list(classes.colors)), out / "class_iou.png")
    save_figure(confusion_figure(total.matrix, names, present or None), out / "confusion_matrix.png")
    chosen = example_sets(ranked, rank_by, seed)
    shown = [image_id for _, _, rows in chosen.values() for image_id in rows["id"]]
    pictures = dict(zip(shown, prediction_rows(segmenter, dataset, shown), strict=True))
    sets = []
    for figure_name, name in FIGURES.items():
        title, note, rows = chosen[name]
        grid = [pictures[image_id] for image_id in rows["id"]]
        captions = [_caption(row, rank_by) for _, row in rows.iterrows()]
        if grid:  # none: no file (the report is built in a new folder: no earlier grid is left)
            figure = image_grid(
                grid, ["image", "ground truth", "prediction"], captions, title=title, classes=classes
            )
            save_figure(figure, out / figure_name)
        examples = [
            Example(str(row["id"]), _scores(row, rank_by), *pictures[row["id"]]) for _, row in rows.iterrows()
        ]
        sets.append(ExampleSet(name, title, note, examples))
    return sets


def require_same_classes(model_classes: Classes, dataset: SegmentationData) -> None:
    """A model scored on a data set of other classes would give numbers that mean nothing."""
    if list(model_classes.names) != list(dataset.classes.names):
        raise DatasetError(
            f"{dataset.root}: its {len(dataset.classes)} classes are not the model's {len(model_classes)} "
            f"({', '.join(model_classes.names[:4])}...): pass the --data the model was trained on"
        )


def default_report_folder(model: Path | str) -> Path:
    """RUN/report for a run's model.pth, where `fastseg runs` reads the test mIoU; RUN/report-STEM
    for an exported file (`model.int8.onnx` -> `report-model.int8`), whose score is not model.pth's."""
    model = Path(model)
    run = RunFolder.of_model(model)
    exported = not model.is_dir() and model.suffix == ".onnx"
    return run.file(f"{REPORT}-{model.stem}" if exported else REPORT)


def report(
    model: Path,
    out: Path | None,
    data: Path | None = None,
    subset: str = "test",
    rank_by: str = DEFAULT_RANKING,
    batch_size: int = 8,
    num_workers: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    seed: int = 0,
    progress: Progress = no_progress,
    tile: int = 0,
    overlap: float | None = None,
    force: bool = False,
) -> ReportResult:
    """Evaluate the run's `subset` of `split.json` and write every report file into `out`, which
    changes in one step once they are all written (`fastseg.inference.report_folder`): a failure
    or a kill midway leaves the earlier report as it was, never a mix of two.

    Every pair is checked first (train's check: readable, same size, mask values a class or void), so a
    bad file stops the report before `out` is touched, with all problems named at once.
    `tile`/`overlap`: score the sliding window's labels (`fastseg.inference.tiling`). `out` may
    replace an earlier report (said in the result), nothing else unless `force`."""
    tiling = make_tiling(tile, overlap)
    out = Path(out) if out is not None else default_report_folder(model)
    check_place(out)
    check_writable(out)
    remove_stale(out)  # a killed report's: its earlier report back in place, or its temporaries gone
    if out.is_file() or (out.is_dir() and any(out.iterdir())):
        guard(out, "report", force, option="--replace-foreign")  # cli/report.py
    check_not_written(out)  # a predict writing into it now: said before the evaluation's minutes
    # (after the guard: it walks the folder, which for a mistaken `--out ~` is the whole home)
    if rank_by not in RANKINGS:
        raise FastsegError(f"--rank-by {rank_by}: choose one of {', '.join(RANKINGS)}")
    run = RunFolder.of_model(model)
    dataset = open_dataset(data or run.data_folder())
    split = run.read_split()
    ids = split.ids(subset)
    if not ids:
        raise DatasetError(f"{run.file(SPLIT)}: the {subset} split lists no images; nothing to report")
    target = resolve_device(device)
    given = Path(model).expanduser()  # a run folder's model.pth, or the file named (an ONNX export)
    evaluated = run.model if given.is_dir() else given  # the INT8 file's score is not model.pth's
    model_file = model_record(evaluated) if evaluated.is_file() else None  # before it is opened
    segmenter = Segmenter.open(evaluated, target, precision, requested_device=device, tiling=tiling)
    require_same_classes(segmenter.loaded.class_set, dataset)  # another data set: say that first
    run.check_split_images(split, dataset, (subset,))  # a lost image: one line naming split.json
    check_ids(dataset, ids, action="report")  # mask values outside the classes would stop the loss midway
    weights = run.read_class_weights(len(segmenter.loaded.classes))
    total, per_image = evaluate(segmenter, dataset, ids, weights, batch_size,
                                loader_workers(num_workers), progress)  # fmt: skip
    ranked = rank(per_image, rank_by)
    names = segmenter.loaded.classes
    with building(out, force, option="--replace-foreign") as build:  # swapped in once whole
        folder = build.folder
        metrics = write_tables(folder, evaluated, subset, total, ranked, names, model_file)
        examples = draw_figures(folder, segmenter, dataset, total, ranked, rank_by, seed)
        config, config_reason = read_config(run)
        history, history_reason = read_history(run)
        curve, curve_note = curve_page(history, history_reason, config)
        facts = summary_facts(
            run, evaluated, Path(dataset.root), subset, len(ids), segmenter, config, history
        )
        page = ReportPage(
            title=f"fastseg report: {isolated(run.path.name)}, {subset} split", facts=facts, metrics=metrics,
            per_class=per_class_table(total.scores(), total.matrix, names), matrix=total.matrix.cpu().numpy(),
            classes=segmenter.loaded.class_set, example_sets=examples, curve=curve, curve_note=curve_note,
            config=config_rows(config), config_note=config_note(config, config_reason),
        )  # fmt: skip
        write_html(folder, page)
    return ReportResult(
        out=out, subset=subset, images=len(ids), scores=total.scores(), replaced=build.replaced
    )
