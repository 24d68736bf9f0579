"""`fastseg report`: a run's split evaluated at each image's original resolution.

All numbers come from :class:`~fastseg.metrics.ConfusionMatrix`: the split's total for the
headline and per-class metrics, one per image for the best/worst ranking. Predictions are not
kept; the few images drawn in the figures are predicted again at the end.
"""

from __future__ import annotations

import base64
import json
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from fastseg.checkpoint import load_model, resolve_model_path
from fastseg.classes import VOC_CLASSES, VOID_LABEL
from fastseg.device import default_num_workers, resolve_device
from fastseg.errors import DatasetError, FastsegError
from fastseg.figures import class_iou_chart, image_grid, save_figure
from fastseg.images import load_rgb
from fastseg.inference import Segmenter, loader
from fastseg.metrics import ConfusionMatrix, Scores, scores_from_matrix
from fastseg.split import Split
from fastseg.voc import VOCFolder, find_voc, read_mask

RANKINGS = {"accuracy": ("pixel_accuracy", False), "miou": ("miou", False), "loss": ("loss", True)}
FIGURES = (("predictions_random.png", 5), ("predictions_best.png", 10), ("predictions_worst.png", 5))


@dataclass
class ReportResult:
    out: Path
    subset: str
    images: int
    scores: Scores


def run_folder_of(model: Path) -> Path:
    path = resolve_model_path(model)
    if not (path.parent / "split.json").is_file():
        raise FastsegError(
            f"{path.parent}: not a run folder (no split.json); pass the folder `fastseg train` wrote"
        )
    return path.parent


def run_data_folder(run: Path) -> str:
    """The `--data` the run was trained with, from its config.json."""
    path = run / "config.json"
    try:
        data = json.loads(path.read_text())["train"]["data"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        data = None
    if not data:
        raise FastsegError(f"{path}: does not name the run's dataset; pass --data")
    return data


def load_class_weights(run: Path) -> torch.Tensor | None:
    path = run / "class_weights.json"
    return torch.tensor(json.loads(path.read_text())["weights"]) if path.is_file() else None


def image_scores(counts: torch.Tensor) -> tuple[float, float]:
    """(pixel accuracy, mIoU over the classes present in truth or prediction) of one image."""
    scores = scores_from_matrix(counts)
    return scores.pixel_accuracy, scores.mean_iou


def evaluate(
    segmenter: Segmenter,
    folder: VOCFolder,
    ids: list[str],
    weights: torch.Tensor | None,
    batch_size: int,
    num_workers: int,
    progress: Callable[[Iterable], Iterable],
) -> tuple[ConfusionMatrix, pd.DataFrame]:
    """Total confusion matrix and a per-image table (id, pixel_accuracy, miou, loss)."""
    total = ConfusionMatrix(len(VOC_CLASSES))
    paths = [folder.image_path(image_id) for image_id in ids]
    dataset = segmenter.dataset(paths, extra=lambda index: {"mask": read_mask(folder.mask_path(ids[index]))})
    weights = None if weights is None else weights.to(segmenter.device)
    rows = []
    for batch in progress(loader(dataset, batch_size, num_workers)):
        logits = segmenter.logits(batch["image"])
        for row, index in enumerate(batch["index"]):
            if batch["error"][row]:
                raise FastsegError(f"{paths[index]}: {batch['error'][row]}")
            mask = torch.from_numpy(batch["mask"][row]).to(segmenter.device)
            image_size = (batch["height"][row], batch["width"][row])
            if tuple(mask.shape) != image_size:  # the letterbox crop comes from the image's size
                raise DatasetError(
                    f"{folder.mask_path(ids[index])}: mask is {mask.shape[1]}x{mask.shape[0]}, "
                    f"image is {image_size[1]}x{image_size[0]}"
                )
            full = segmenter.full_size(logits[row], *image_size)
            counts = ConfusionMatrix.counts(segmenter.labels(full), mask)
            total.add(counts)
            loss = F.cross_entropy(full[None], mask[None].long(), weight=weights, ignore_index=VOID_LABEL)
            accuracy, miou = image_scores(counts)
            rows.append({"id": ids[index], "pixel_accuracy": accuracy, "miou": miou, "loss": loss.item()})
    return total, pd.DataFrame(rows)


def rank(per_image: pd.DataFrame, rank_by: str) -> pd.DataFrame:
    """Best first. NaN scores (no labelled pixel) go last."""
    column, ascending = RANKINGS[rank_by]
    return per_image.sort_values(column, ascending=ascending, na_position="last", kind="stable")


def per_class_table(scores: Scores, matrix: torch.Tensor) -> pd.DataFrame:
    truth = matrix.sum(1).cpu().numpy()
    predicted = matrix.sum(0).cpu().numpy()
    return pd.DataFrame(
        {
            "class": list(VOC_CLASSES),
            "iou": scores.class_iou,
            "accuracy": scores.class_accuracy,
            "truth_pixels": truth,
            "predicted_pixels": predicted,
            "present": (truth + predicted) > 0,
        }
    )


def confusion_figure(matrix: torch.Tensor) -> Figure:
    """Row-normalised confusion matrix (each true class sums to 1), class names on both axes."""
    counts = matrix.double().cpu().numpy()
    rows = counts.sum(1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    figure = Figure(figsize=(11, 10))
    axis = figure.subplots()
    shown = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(VOC_CLASSES))
    axis.set_xticks(ticks, VOC_CLASSES, rotation=90)
    axis.set_yticks(ticks, VOC_CLASSES)
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


def prediction_rows(segmenter: Segmenter, folder: VOCFolder, ids: list[str]) -> list[list[np.ndarray]]:
    """image | truth | prediction for a handful of ids, at original size."""
    rows = []
    for image_id in ids:
        image = load_rgb(folder.image_path(image_id))
        logits = segmenter.logits(segmenter.input_tensor(image)[None])[0]
        labels = segmenter.labels(segmenter.full_size(logits, image.height, image.width)).cpu().numpy()
        rows.append([np.asarray(image), read_mask(folder.mask_path(image_id)), labels])
    return rows


def _caption(row: pd.Series) -> str:
    return f"{row['id']}\nacc {row['pixel_accuracy']:.3f} · mIoU {row['miou']:.3f} · loss {row['loss']:.3f}"


def _embed(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{path.stem}" src="data:image/png;base64,{data}">'


def write_html(out: Path, metrics: dict, per_class: pd.DataFrame, figures: list[Path]) -> Path:
    """One self-contained page: headline metrics, per-class table, every figure embedded."""
    headline = pd.DataFrame(
        [
            (name, metrics[name])
            for name in ("pixel_accuracy", "mean_class_accuracy", "mean_iou", "frequency_weighted_iou")
        ],  # fmt: skip
        columns=["metric", "value"],
    )
    sections = "\n".join(f"<h2>{path.stem.replace('_', ' ')}</h2>\n{_embed(path)}" for path in figures)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>fastseg report: {metrics["subset"]}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto}}img{{max-width:100%}}
table{{border-collapse:collapse}}
td,th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}}</style>
</head><body>
<h1>fastseg report — {metrics["subset"]} split, {metrics["images"]} images</h1>
<p>model: {metrics["model"]}<br>evaluated at each image's original resolution; void pixels excluded.</p>
{headline.to_html(index=False, float_format=lambda v: f"{v:.4f}")}
<h2>per class</h2>
{per_class.to_html(index=False, float_format=lambda v: f"{v:.4f}", na_rep="absent")}
{sections}
</body></html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def report(
    model: Path,
    out: Path,
    data: Path | None = None,
    subset: str = "test",
    rank_by: str = "loss",
    batch_size: int = 8,
    num_workers: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    seed: int = 0,
    progress: Callable[[Iterable], Iterable] = lambda batches: batches,
) -> ReportResult:
    """Evaluate the run's `subset` of `split.json` and write every report file into `out`."""
    if rank_by not in RANKINGS:
        raise FastsegError(f"--rank-by {rank_by}: choose one of {', '.join(RANKINGS)}")
    run = run_folder_of(model)
    folder = find_voc(data or run_data_folder(run))
    split = Split.load(run / "split.json")
    ids = split.ids(subset)
    folder.require_files(ids)
    target = resolve_device(device)
    segmenter = Segmenter(load_model(run, target), target, precision=precision)
    workers = default_num_workers() if num_workers is None or num_workers < 0 else num_workers
    total, per_image = evaluate(
        segmenter, folder, ids, load_class_weights(run), batch_size, workers, progress
    )
    scores = total.scores()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    metrics = {
        "model": str(resolve_model_path(model)),
        "subset": subset,
        "images": len(ids),
        **asdict(scores),
    }
    metrics["class_iou"] = dict(zip(VOC_CLASSES, _json_floats(scores.class_iou), strict=True))
    metrics["class_accuracy"] = dict(zip(VOC_CLASSES, _json_floats(scores.class_accuracy), strict=True))
    metrics["absent_classes"] = [name for name, iou in zip(VOC_CLASSES, scores.class_iou, strict=True)
                                 if math.isnan(iou)]  # fmt: skip
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    per_class = per_class_table(scores, total.matrix)
    per_class.to_csv(out / "per_class.csv", index=False)
    ranked = rank(per_image, rank_by)
    ranked.to_csv(out / "per_image.csv", index=False)
    pd.DataFrame(total.matrix.cpu().numpy(), index=VOC_CLASSES, columns=VOC_CLASSES).to_csv(
        out / "confusion_matrix.csv", index_label="true \\ predicted"
    )
    figures = [
        save_figure(class_iou_chart(list(VOC_CLASSES), scores.class_iou), out / "class_iou.png"),
        save_figure(confusion_figure(total.matrix), out / "confusion_matrix.png"),
    ]
    random_rows = per_image.iloc[
        sorted(random.Random(seed).sample(range(len(per_image)), min(5, len(per_image))))
    ]
    choices = {"predictions_random.png": random_rows, "predictions_best.png": ranked.head(10),
               "predictions_worst.png": ranked.tail(5).iloc[::-1]}  # fmt: skip
    for name, chosen in choices.items():
        rows = prediction_rows(segmenter, folder, list(chosen["id"]))
        captions = [_caption(row) for _, row in chosen.iterrows()]
        title = f"{name.removesuffix('.png').replace('_', ' ')} (ranked by {rank_by})"
        grid = image_grid(rows, ["image", "ground truth", "prediction"], captions, title=title)
        figures.append(save_figure(grid, out / name))
    write_html(out, metrics, per_class, figures)
    return ReportResult(out=out, subset=subset, images=len(ids), scores=scores)


def _json_floats(values: list[float]) -> list[float | None]:
    """NaN is not JSON: an absent class is `null`."""
    return [None if math.isnan(value) else value for value in values]
