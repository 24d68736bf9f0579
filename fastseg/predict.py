"""`fastseg predict`: segment files and folders, writing one palette PNG per image.

Results stream to disk batch by batch (memory does not grow with the number of images; fastai's
`get_preds` would hold them all). Every output is written atomically, inputs are never
overwritten, and a bad file is reported and passed over without stopping the run.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fastseg.checkpoint import load_model
from fastseg.classes import NUM_CLASSES, VOC_CLASSES, colorize
from fastseg.device import default_num_workers, resolve_device
from fastseg.distributed import barrier, local_rank, rank_and_world, sum_across_processes
from fastseg.errors import FastsegError
from fastseg.images import IMAGE_SUFFIXES
from fastseg.inference import Segmenter, loader
from fastseg.voc import write_mask

CSV_FIELDS = ["path", "width", "height", "status", "error", "seconds", *VOC_CLASSES]


@dataclass(frozen=True)
class Job:
    """One input image and where its outputs go."""

    source: Path
    mask: Path

    @property
    def overlay(self) -> Path:
        return self.mask.with_suffix(".overlay.jpg")


@dataclass
class PredictSummary:
    segmented: int
    failed: int
    skipped: int
    csv_path: Path
    failures: list[tuple[Path, str]]


def collect_jobs(inputs: Sequence[Path], out: Path) -> tuple[list[Job], list[tuple[Path, str]]]:
    """Image files among `inputs` (folders walked recursively) and their mirrored output paths.

    A file input lands in `out/<name>.png`; a folder's images keep their path inside the folder.
    Returns (jobs, problems): an output that would overwrite an input, or that two inputs would
    share, is a problem for that file only.
    """
    pairs: list[tuple[Path, Path]] = []
    for given in inputs:
        given = Path(given)
        if given.is_dir():
            files = sorted(p for p in given.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            pairs += [(file, file.relative_to(given)) for file in files]
        elif given.is_file():
            if given.suffix.lower() in IMAGE_SUFFIXES:
                pairs.append((given, Path(given.name)))
        else:
            raise FastsegError(f"{given}: no such file or folder")
    sources = {source.resolve() for source, _ in pairs}
    jobs, problems, claimed = [], [], {}
    for source, relative in pairs:
        mask = out / relative.with_suffix(".png")
        key = mask.resolve()
        if key in sources:
            problems.append((source, f"output {mask} would overwrite an input; choose another --out"))
        elif key in claimed:
            problems.append((source, f"output {mask} is already taken by {claimed[key]}"))
        else:
            claimed[key] = source
            jobs.append(Job(source, mask))
    return jobs, problems


def class_fractions(labels: np.ndarray) -> list[float]:
    counts = np.bincount(labels.ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
    return (counts / max(labels.size, 1)).round(6).tolist()


def save_overlay(image: np.ndarray, labels: np.ndarray, path: Path, alpha: float = 0.5) -> None:
    """RGB image `(H, W, 3)` blended with its VOC-coloured labels, as JPEG, written atomically."""
    image = image.astype(np.float32)
    blended = (1 - alpha) * image + alpha * colorize(labels).astype(np.float32)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        Image.fromarray(blended.round().astype(np.uint8)).save(temporary, format="JPEG", quality=90)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def predict(
    model: Path,
    inputs: Sequence[Path],
    out: Path,
    size: int | None = None,
    batch_size: int = 8,
    num_workers: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    tta: bool = False,
    overlay: bool = False,
    skip_existing: bool = False,
    progress: Callable[[Iterable], Iterable] = lambda batches: batches,
    shard: tuple[int, int] | None = None,
) -> PredictSummary:
    """Segment every image of `inputs` into `out`; returns counts and the failures (path, reason).

    `shard=(rank, world)` keeps every `world`-th job starting at `rank`; by default it comes from
    the launcher (`torchrun`, `accelerate launch`), so each image is done by exactly one process.
    Counts in the summary are totals over all processes; failures are this process's own.
    """
    out = Path(out)
    jobs, failures = collect_jobs(inputs, out)
    rank, world = shard or rank_and_world()
    jobs, failures = jobs[rank::world], failures[rank::world]
    skipped = [job for job in jobs if skip_existing and job.mask.is_file()]
    todo = [job for job in jobs if not (skip_existing and job.mask.is_file())]
    target = resolve_device(device)
    if target.type == "cuda" and world > 1:
        target = torch.device("cuda", local_rank())
    loaded = load_model(model, target)
    segmenter = Segmenter(loaded, target, precision=precision, tta=tta)
    dataset = segmenter.dataset([job.source for job in todo], size, keep_original=overlay)
    workers = default_num_workers() if num_workers is None or num_workers < 0 else num_workers
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / ("predictions.csv" if world == 1 else f"predictions.rank{rank}.csv")
    temporary_csv = csv_path.with_name(f".{csv_path.name}.tmp")
    segmented = 0
    try:
        with temporary_csv.open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(CSV_FIELDS)
            for source, reason in failures:
                writer.writerow([source, "", "", "failed", reason, "", *[""] * NUM_CLASSES])
            for job in skipped:
                writer.writerow([job.source, "", "", "skipped", "", "", *[""] * NUM_CLASSES])
            for batch in progress(loader(dataset, batch_size, workers)):
                started = time.perf_counter()
                logits = segmenter.logits(batch["image"])
                per_image = (time.perf_counter() - started) / len(batch["index"])
                for row, index in enumerate(batch["index"]):
                    job, error = todo[index], batch["error"][row]
                    if error:
                        failures.append((job.source, error))
                        writer.writerow([job.source, "", "", "failed", error, "", *[""] * NUM_CLASSES])
                        continue
                    began = time.perf_counter()
                    height, width = batch["height"][row], batch["width"][row]
                    labels = segmenter.labels(segmenter.full_size(logits[row], height, width)).cpu().numpy()
                    job.mask.parent.mkdir(parents=True, exist_ok=True)
                    write_mask(job.mask, labels)
                    if overlay:
                        save_overlay(batch["original"][row], labels, job.overlay)
                    seconds = per_image + time.perf_counter() - began
                    writer.writerow(
                        [job.source, width, height, "ok", "", f"{seconds:.4f}", *class_fractions(labels)]
                    )
                    segmented += 1
                file.flush()
        os.replace(temporary_csv, csv_path)
    finally:
        temporary_csv.unlink(missing_ok=True)  # only left if the run was interrupted
    if world > 1:
        barrier()
        if rank == 0:
            csv_path = merge_rank_csvs(out, world)
        barrier()
        csv_path = out / "predictions.csv"
    segmented, failed, skipped_count = sum_across_processes([segmented, len(failures), len(skipped)])
    return PredictSummary(segmented, failed, skipped_count, csv_path, failures)


def merge_rank_csvs(out: Path, world: int) -> Path:
    """One `predictions.csv`, rows sorted by path, from the per-process files (then removed)."""
    parts = [out / f"predictions.rank{rank}.csv" for rank in range(world)]
    rows = []
    for part in parts:
        with part.open(newline="") as file:
            rows += list(csv.reader(file))[1:]
    merged = out / "predictions.csv"
    temporary = merged.with_name(".predictions.csv.tmp")
    with temporary.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_FIELDS)
        writer.writerows(sorted(rows, key=lambda row: row[0]))
    os.replace(temporary, merged)
    for part in parts:
        part.unlink()
    return merged
