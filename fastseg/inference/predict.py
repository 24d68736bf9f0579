"""`fastseg predict`: segment files and folders, writing one palette PNG per image.

Steps: find the images and their output paths (`jobs`), load the model once, check that the
output folder takes files, stream every image through the segmenter's strategy
(`fastseg.inference.segmenter.segment`), write each mask (and overlay) as it comes
(`output_writer`, `image_outputs`), and log every image in `predictions.csv` (`prediction_log`).
Every output is written atomically, inputs are never overwritten, and a bad file is reported and
passed over without stopping the run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fastseg.atomic import atomic_path, remove_stale_temporaries
from fastseg.errors import FastsegError
from fastseg.inference.files import check_input_side
from fastseg.inference.jobs import collect_jobs
from fastseg.inference.output_writer import OUTPUT_THREADS, write_outputs
from fastseg.inference.prediction_log import (
    PredictionLog,
    csv_fields,
    log_time,
    merge_rank_csvs,
    previous_rows,
    skipped_rows,
)
from fastseg.inference.runtime import ONNX_SUFFIX
from fastseg.inference.runtime_choice import RuntimeChoice, check_opened, choose_runtime, runtime_label
from fastseg.inference.segmented import Progress, no_progress
from fastseg.inference.segmenter import Segmenter, segment
from fastseg.inference.tiling import make_tiling
from fastseg.launch.device import loader_workers
from fastseg.launch.processes import barrier, launched, sum_across_processes
from fastseg.outputs import guard
from fastseg.paths import create_folder

if TYPE_CHECKING:
    from fastseg.inference.tiling import Tiling
    from fastseg.launch.processes import Launch


@dataclass
class PredictSummary:
    segmented: int
    failed: int
    skipped: int
    csv_path: Path
    failures: list[tuple[Path, str]]
    runtime: str = ""  # what ran the model: `torch bf16`, `onnxruntime int8`, ...


def prepare_out(out: Path, force: bool = False, folders: Iterable[Path] = (), clean: bool = True,
                outputs: Iterable[Path] | None = None) -> None:  # fmt: skip
    """Create `out` and check that files can be written into it, before any image is decoded: a
    folder that cannot take the outputs would otherwise fail at the first mask. A `predictions.csv`
    there that fastseg did not write is refused unless `force` (`fastseg.outputs`), as a mask's is.
    With `clean`, the temporaries of a killed predict are removed from `out` and from the
    `folders` this run writes into (its subfolders: `out/sub/.a.png.PID.tmp` was left forever):
    given the `outputs` this run writes (masks, overlays), only theirs and its logs' (`--out` may
    be a folder of the user's: every hidden `.NAME.NUMBER.tmp` of it was removed); without them,
    every dead process's temporary there.

    `os.access` asks the kernel with the user's own rights (root passes every permission check).
    """
    create_folder(out, "output folder")
    if not os.access(out, os.W_OK | os.X_OK):
        raise FastsegError(f"{out}: cannot write into the output folder (permission denied)")
    log = out / "predictions.csv"
    if log.exists() and not log.is_file():  # found after every image was segmented, when renamed into place
        kind = "a folder" if log.is_dir() else "not a regular file"
        raise FastsegError(f"{log}: {kind}, where predict writes its log; remove it or choose another --out")
    guard(log, "predictions log", force, option="--replace-foreign")
    if not clean:
        return
    if outputs is None:
        for folder in {out, *folders}:  # e.g. a predict killed with -9: .predictions.csv.PID.tmp
            remove_stale_temporaries(folder)
        return
    names: dict[Path, set[str]] = {out: {log.name}}
    for path in outputs:
        names.setdefault(path.parent, set()).add(path.name)
    for folder, written in names.items():
        remove_stale_temporaries(folder, written)


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
    progress: Progress = no_progress,
    tile: int = 0,
    overlap: float | None = None,
    force: bool = False,
    runtime: str = "auto",
    announce: Callable[[str], None] | None = None,
) -> PredictSummary:
    """Segment every image of `inputs` into `out`; returns counts and the failures (path, reason).

    `runtime` (`--runtime`, `fastseg.inference.runtime_choice`): for a run folder, `auto` runs its
    `model.int8.onnx` when that file's accuracy check passed, else `model.pth`; `announce` is
    given the one line saying what was chosen and why before the first image.

    Under `torchrun` / `accelerate launch` each process takes every `world`-th image from its
    rank, so each image is done exactly once; the summary's counts are totals over all
    processes, its failures this process's own. `tile`/`overlap`: a sliding window at each image's
    own resolution instead of fitting it whole (`fastseg.inference.tiling`). `force`: replace
    files at output paths that fastseg did not write (never an input).
    """
    if size is not None:
        check_input_side(size)  # before the model is loaded or --out is made
    tiling = make_tiling(tile, overlap, size)
    out = Path(out)
    given = Path(model)
    folder = given.is_dir()
    # an ONNX graph (a file, or a run folder's named by --runtime) runs on the CPU whatever
    # --device auto would find (open_model refuses a GPU asked for by name), and `auto` on a run
    # folder may run its INT8 file: none of them needs torch to start. A torch model asks torch.
    onnx_file = given.suffix.lower() == ONNX_SUFFIX and not folder
    onnx_model = onnx_file or (folder and runtime in ("onnx", "int8"))
    launch_device = "cpu" if onnx_model and device == "auto" else device
    with launched(launch_device, torch_free=onnx_model or (folder and runtime == "auto")) as launch:
        jobs, failures = collect_jobs(inputs, out, overlay, force, skip_existing)
        choice = choose_runtime(model, runtime, launch.device_name, precision, device)
        segmenter = open_chosen(choice, runtime, launch, precision, tta, size, device, tiling)
        label = runtime_label(segmenter.runtime, segmenter.loaded)
        if announce is not None:
            announce(choice.line(label))
        # the main process alone clears a killed run's temporaries, before any process writes: a
        # rank on another machine (its own process ids) took the others' fresh ones for stale
        # its files' names (an earlier run's overlay too): the only temporaries it may clear
        logs = [out / f"predictions.rank{rank}.csv" for rank in range(launch.world) if launch.world > 1]
        outputs = [*(path for job in jobs for path in (job.mask, job.overlay)), *logs]
        prepare_out(out, force, clean=launch.main, outputs=outputs)
        barrier()
        jobs, failures = jobs[launch.rank :: launch.world], failures[launch.rank :: launch.world]
        fields = csv_fields(segmenter.loaded.classes)
        logged_ns = log_time(out / "predictions.csv") if skip_existing else None  # before it is read
        previous = previous_rows(out / "predictions.csv", fields) if skip_existing else {}
        classes = len(segmenter.loaded.classes)
        skipped = skipped_rows(jobs, overlay, previous, classes, logged_ns) if skip_existing else {}
        todo = [job for job in jobs if job not in skipped]
        results = segment(segmenter, segmenter.dataset([job.source for job in todo], keep_original=overlay),
                          batch_size, loader_workers(num_workers), progress)  # fmt: skip
        csv_name = "predictions.csv" if launch.world == 1 else f"predictions.rank{launch.rank}.csv"
        with (
            atomic_path(out / csv_name) as temporary,
            temporary.open("w", newline="", encoding="utf-8") as file,
        ):
            log = PredictionLog(file, fields, label)
            for source, reason in failures:
                log.row(source, "failed", reason)
            for row in skipped.values():
                log.write(row)
            threads = 0 if segmenter.strategy.runs_model_when_read else OUTPUT_THREADS
            segmented = write_outputs(results, todo, overlay, log, failures, threads, max(batch_size, 2))
        csv_path = merge_rank_csvs(out, launch, fields)
        segmented, failed, skipped_count = sum_across_processes([segmented, len(failures), len(skipped)])
    return PredictSummary(segmented, failed, skipped_count, csv_path, failures, label)


def open_chosen(choice: RuntimeChoice, runtime: str, launch: Launch, precision: str, tta: bool,
                size: int | None, requested_device: str, tiling: Tiling | None) -> Segmenter:  # fmt: skip
    """The `Segmenter` of `choice` (reusing the file `choose_runtime` opened, if it did); an .onnx
    file asked for as `--runtime onnx` or `int8` must hold that precision (`check_opened`). The
    launch's device is asked for only by a torch model: an ONNX run never imports torch."""
    if choice.opened is not None:
        loaded, chosen = choice.opened.loaded, choice.opened.runtime
        return Segmenter(loaded, chosen, tta, size, tiling)
    device = launch.device if choice.path.suffix.lower() != ONNX_SUFFIX else launch.device_name
    segmenter = Segmenter.open(choice.path, device, precision, tta, size, requested_device, tiling)
    check_opened(choice, segmenter.loaded, runtime)
    return segmenter
