"""`fastseg predict`: segment files and folders, writing one palette PNG per image.

Steps: find the images and their output paths, load the model once, check that the output folder
takes files, stream every image through the one inference loop (`fastseg.inference.loop`),
write each mask (and overlay) as it comes, and log every image in `predictions.csv`. Every output
is written atomically, inputs are never overwritten, and a bad file is reported and passed over
without stopping the run.
"""

from __future__ import annotations

import csv
import io
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

import numpy as np
from PIL import Image

from fastseg.atomic import atomic_path, remove_stale_temporaries
from fastseg.classes import Classes
from fastseg.errors import DatasetError, FastsegError
from fastseg.imaging.images import IMAGE_SUFFIXES
from fastseg.imaging.masks import read_mask, write_mask
from fastseg.imaging.palette import colorize
from fastseg.inference.loop import Progress, Segmented, no_progress, segment
from fastseg.inference.runtime_choice import RuntimeChoice, check_opened, choose_runtime, runtime_label
from fastseg.inference.segmenter import Segmenter
from fastseg.inference.tiling import make_tiling
from fastseg.launch.device import loader_workers
from fastseg.launch.processes import Launch, barrier, launched, sum_across_processes
from fastseg.outputs import OVERLAY_COMMENT, OutputRefused, guard, written_by_fastseg
from fastseg.structured_files import StructuredFileError, read_utf8

if TYPE_CHECKING:
    import torch

    from fastseg.inference.tiling import Tiling

# then one column per class
FIXED_FIELDS = ["path", "width", "height", "status", "error", "seconds", "runtime"]
# predictions.csv before the runtime column (issue #24): still read back by `--skip-existing`
OLD_FIXED_FIELDS = ["path", "width", "height", "status", "error", "seconds"]


def csv_fields(class_names: Sequence[str], fixed: Sequence[str] = FIXED_FIELDS) -> list[str]:
    """`predictions.csv`'s header: the fixed columns, then each class's share of the image. The
    `runtime` column says what ran the model for that row (`torch bf16`, `onnxruntime int8`, ...:
    `fastseg.inference.runtime_choice.runtime_label`), blank for a failed image."""
    return [*fixed, *class_names]


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
    runtime: str = ""  # what ran the model: `torch bf16`, `onnxruntime int8`, ...


def collect_jobs(inputs: Sequence[Path], out: Path, overlay: bool = False, force: bool = False,
                 skip_existing: bool = False) -> tuple[list[Job], list[tuple[Path, str]]]:  # fmt: skip
    """Image files among `inputs` (folders walked recursively) and their mirrored output paths.

    A file input lands in `out/<name>.png`; a folder's images keep their path inside the folder.
    A file given more than once (twice, via `dir/../dir`, a link, or inside a folder also given) is
    done once, under its first name. Returns (jobs, problems): an output that would overwrite an
    input, or that two different inputs would share, or that would replace a file fastseg did not
    write as that output (`fastseg.outputs`; `force` allows it, but never for an input), is a
    problem for that file only.
    """
    pairs: list[tuple[Path, Path]] = []
    for given in inputs:
        given = Path(given)
        if given.is_dir():
            pairs += [(file, file.relative_to(given)) for file in image_files(given, out)]
        elif given.is_file():
            if given.suffix.lower() in IMAGE_SUFFIXES:
                pairs.append((given, Path(given.name)))
        else:
            raise FastsegError(f"{given}: no such file or folder")
    firsts = {}  # resolved source -> its first (source, relative) pair
    for source, relative in pairs:
        firsts.setdefault(source.resolve(), (source, relative))
    sources = set(firsts)
    jobs, problems, claimed = [], [], {}
    for source, relative in firsts.values():
        mask = out / relative.with_suffix(".png")
        key = mask.resolve()
        job = Job(source, mask)
        outputs = [(mask, "mask"), *([(job.overlay, "overlay")] if overlay else [])]
        inputs_hit = [path for path, role in outputs
                      if path.resolve() in sources and not written_by_fastseg(path, role)]  # fmt: skip
        if inputs_hit:
            problems.append((source, f"output {inputs_hit[0]} would overwrite an input; "
                                     "choose another --out"))  # fmt: skip
        elif key in claimed:
            problems.append((source, f"output {mask} is already taken by {claimed[key]}"))
        else:
            skipped = skip_existing and all(path.exists() for path, _ in outputs)  # nothing is written
            try:
                for path, role in [] if skipped else outputs:
                    guard(path, role, force, option="--replace-foreign")
            except OutputRefused as refused:
                problems.append((source, str(refused)))
                continue
            claimed[key] = source
            jobs.append(job)
    return jobs, problems


def image_files(folder: Path, out: Path) -> list[Path]:
    """Image files under `folder`, walked recursively and sorted. An `out` inside `folder` is left
    out: a rerun would take its own masks for inputs (out/out/...). An `out` that *is* `folder` is
    walked: its images are refused one by one, as their outputs would overwrite them."""
    out, root = out.resolve(), folder.resolve()
    skipped = out.relative_to(root).parts if out.is_relative_to(root) else ()
    files = [path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()]
    if skipped:
        files = [path for path in files if path.relative_to(folder).parts[: len(skipped)] != skipped]
    return sorted(files)


def is_done(job: Job, overlay: bool) -> bool:
    """What `--skip-existing` leaves: an image whose mask exists, and its overlay when one is asked
    for (an image without it is done again, mask included: the same labels)."""
    return job.mask.is_file() and (not overlay or job.overlay.is_file())


def prepare_out(out: Path) -> None:
    """Create `out` and check that files can be written into it, before any image is decoded: a
    folder that cannot take the outputs would otherwise fail at the first mask.

    `os.access` asks the kernel with the user's own rights (root passes every permission check).
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FastsegError(f"{out}: cannot create the output folder ({error.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise FastsegError(f"{out}: cannot write into the output folder (permission denied)")
    log = out / "predictions.csv"
    if log.exists() and not log.is_file():  # found after every image was segmented, when renamed into place
        kind = "a folder" if log.is_dir() else "not a regular file"
        raise FastsegError(f"{log}: {kind}, where predict writes its log; remove it or choose another --out")
    remove_stale_temporaries(out)  # e.g. the .predictions.csv.PID.tmp of a predict killed with -9


ROWS_PER_CHUNK = 256  # rows of labels counted / overlay rows blended at a time: bounded memory


def row_chunks(height: int) -> Iterator[slice]:
    """Bands of rows: whole-image temporaries would cost 8 bytes a pixel to count classes
    (`np.bincount` widens to int64) and ~30 to blend an overlay in float32 (2.6 GB at 9400x9400,
    measured: benchmarks/predict_memory.py)."""
    for start in range(0, height, ROWS_PER_CHUNK):
        yield slice(start, min(height, start + ROWS_PER_CHUNK))


def class_fractions(labels: np.ndarray, num_classes: int) -> list[float]:
    """Share of each class among the pixels of `labels` `(H, W)`, counted a band of rows at a time."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for rows in row_chunks(labels.shape[0]):
        counts += np.bincount(labels[rows].ravel(), minlength=num_classes)[:num_classes]
    return (counts / max(labels.size, 1)).round(6).tolist()


def save_overlay(
    image: np.ndarray, labels: np.ndarray, path: Path, classes: Classes, alpha: float = 0.5
) -> None:
    """RGB image `(H, W, 3)` blended with its labels in the model's colours, as JPEG, written
    atomically (`encode_overlay`)."""
    with atomic_path(path) as temporary:
        encode_overlay(temporary, image, labels, classes, alpha)


def encode_overlay(
    target: Path | BinaryIO, image: np.ndarray, labels: np.ndarray, classes: Classes, alpha: float = 0.5
) -> None:
    """The overlay JPEG into a file or a binary stream (predict's files, `fastseg serve`'s
    `?overlay=1`); the float arithmetic runs a band of rows at a time into one uint8 picture."""
    blended = np.empty_like(image, dtype=np.uint8)
    for rows in row_chunks(image.shape[0]):
        colours = colorize(labels[rows], classes.colors).astype(np.float32)
        blended[rows] = ((1 - alpha) * image[rows].astype(np.float32) + alpha * colours).round()
    Image.fromarray(blended).save(target, format="JPEG", quality=90, comment=OVERLAY_COMMENT)


def csv_row(source: Path, status: str, error: str = "", size: tuple[int, int] | None = None,
            seconds: float | None = None, fractions: list[float] | None = None,
            runtime: str = "") -> list:  # fmt: skip
    """One `predictions.csv` row (without fractions the class columns are left to `PredictionLog`,
    which fills them blank); `size` is `(height, width)`."""
    height, width = size or ("", "")
    timing = "" if seconds is None else f"{seconds:.4f}"
    return [source, width, height, status, error, timing, runtime, *(fractions or [])]


class PredictionLog:
    """`predictions.csv`: one row per input image (ok, failed or skipped), written to a temporary
    file as the run goes and renamed into place when it ends; `runtime` goes in every "ok" row."""

    def __init__(self, file: TextIO, fields: list[str], runtime: str = ""):
        self.writer = csv.writer(file, lineterminator="\n")  # csv's default is CRLF
        self.width = len(fields)
        self.runtime = runtime
        self.writer.writerow(fields)

    def row(self, source: Path, status: str, error: str = "", **values: Any) -> None:
        if status == "ok":
            values.setdefault("runtime", self.runtime)
        self.write(csv_row(source, status, error, **values))

    def write(self, row: list) -> None:
        self.writer.writerow(row + [""] * (self.width - len(row)))


MAX_LOG_BYTES = 1 << 30  # an earlier predictions.csv read back whole: millions of rows, not a device


def previous_rows(path: Path, fields: list[str]) -> dict[str, list[str]]:
    """The rows of an earlier `predictions.csv` that hold an image's figures, by path; read before
    this run replaces the file. An unreadable or foreign file (another model's classes included) is
    no loss: masks are read back. Read through `read_utf8`, which refuses a FIFO or a device
    (opening a FIFO named predictions.csv blocked forever)."""
    try:
        rows = list(csv.reader(io.StringIO(read_utf8(path, "predictions.csv", MAX_LOG_BYTES), newline="")))
    except (StructuredFileError, csv.Error):
        return {}
    if not rows:
        return {}
    classes = fields[len(FIXED_FIELDS) :]
    if rows[0] == csv_fields(classes, OLD_FIXED_FIELDS):  # before the runtime column: left blank
        old = len(OLD_FIXED_FIELDS)
        rows = [rows[0], *([*row[:old], "", *row[old:]] for row in rows[1:] if len(row) == len(rows[0]))]
    elif rows[0] != fields:
        return {}
    return {row[0]: row for row in rows[1:] if len(row) == len(fields) and row[1]}


def skipped_rows(
    jobs: list[Job], overlay: bool, previous: dict[str, list[str]], num_classes: int
) -> dict[Job, list]:
    """The log rows of the jobs `--skip-existing` leaves (`is_done`), with the size, time and class
    fractions of the earlier run's row, or, without one (an interrupted run writes no CSV), the
    size and fractions read back from the mask. A mask that cannot be read is not done."""
    rows = {}
    for job in (job for job in jobs if is_done(job, overlay)):
        earlier = previous.get(str(job.source))
        if earlier is not None:
            rows[job] = [job.source, *earlier[1:3], "skipped", "", *earlier[5:]]  # its time, runtime, shares
            continue
        try:
            labels = read_mask(job.mask)
        except DatasetError:
            continue
        fractions = class_fractions(labels, num_classes)
        rows[job] = csv_row(job.source, "skipped", size=labels.shape, fractions=fractions)
    return rows


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an `OSError` while writing `path` into a `FastsegError` naming it: a folder blocked by a
    file, a full disk or a read-only subfolder fails that image only. The file behind the error is
    named when it is not `path`'s own (temporary) file: `File exists: OUT/a` for a blocked folder."""
    try:
        yield
    except OSError as error:
        reason = error.strerror or str(error)
        if error.filename and Path(error.filename).parent != path.parent:
            reason = f"{reason}: {error.filename}"
        raise FastsegError(f"cannot write {path} ({reason})") from None


def save_outputs(result: Segmented, job: Job, overlay: bool) -> np.ndarray:
    """The mask (a palette PNG in the model's colours) and overlay of one segmented image;
    returns its labels."""
    labels = result.labels()
    classes = result.segmenter.loaded.class_set
    with writing(job.mask):
        job.mask.parent.mkdir(parents=True, exist_ok=True)
        write_mask(job.mask, labels, classes.palette())
    if overlay:
        with writing(job.overlay):
            save_overlay(result.item["original"], labels, job.overlay, classes)
    return labels


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
    tiling = make_tiling(tile, overlap, size)
    out = Path(out)
    with launched(device) as launch:
        jobs, failures = collect_jobs(inputs, out, overlay, force, skip_existing)
        choice = choose_runtime(model, runtime, launch.device, precision, device)
        segmenter = open_chosen(choice, runtime, launch.device, precision, tta, size, device, tiling)
        label = runtime_label(segmenter.runtime, segmenter.loaded)
        if announce is not None:
            announce(choice.line(label))
        prepare_out(out)
        jobs, failures = jobs[launch.rank :: launch.world], failures[launch.rank :: launch.world]
        fields = csv_fields(segmenter.loaded.classes)
        previous = previous_rows(out / "predictions.csv", fields) if skip_existing else {}
        skipped = (
            skipped_rows(jobs, overlay, previous, len(segmenter.loaded.classes)) if skip_existing else {}
        )
        todo = [job for job in jobs if job not in skipped]
        results = segment(segmenter, segmenter.dataset([job.source for job in todo], keep_original=overlay),
                          batch_size, loader_workers(num_workers), progress)  # fmt: skip
        csv_name = "predictions.csv" if launch.world == 1 else f"predictions.rank{launch.rank}.csv"
        with atomic_path(out / csv_name) as temporary, temporary.open("w", newline="") as file:
            log = PredictionLog(file, fields, label)
            for source, reason in failures:
                log.row(source, "failed", reason)
            for row in skipped.values():
                log.write(row)
            threads = 0 if tiling is not None else OUTPUT_THREADS
            segmented = write_outputs(results, todo, overlay, log, failures, threads, max(batch_size, 2))
        csv_path = merge_rank_csvs(out, launch, fields)
        segmented, failed, skipped_count = sum_across_processes([segmented, len(failures), len(skipped)])
    return PredictSummary(segmented, failed, skipped_count, csv_path, failures, label)


def open_chosen(choice: RuntimeChoice, runtime: str, device: torch.device, precision: str, tta: bool,
                size: int | None, requested_device: str, tiling: Tiling | None) -> Segmenter:  # fmt: skip
    """The `Segmenter` of `choice` (reusing the file `choose_runtime` opened, if it did); an .onnx
    file asked for as `--runtime onnx` or `int8` must hold that precision (`check_opened`)."""
    if choice.opened is not None:
        loaded, chosen = choice.opened.loaded, choice.opened.runtime
        return Segmenter(loaded, device, precision, tta, size, chosen, tiling)
    segmenter = Segmenter.open(choice.path, device, precision, tta, size, requested_device, tiling)
    check_opened(choice, segmenter.loaded, runtime)
    return segmenter


# Threads writing outputs while the model runs the next batch: upsampling, the argmax, zlib and
# JPEG encoding release the GIL, so on CPU they overlap the forward pass instead of following it.
# One: on the idle 2-core AMD EPYC (bf16), 50 images at 224² took 7.70-7.77 s with one thread,
# 7.81-7.84 s with two, 8.05-8.13 s with none, peaking at 1.1, 1.2 and 0.95 GB (mostly each
# thread's malloc arena; benchmarks/README.md, #24).
OUTPUT_THREADS = 1
PENDING_PIXELS = 1 << 25  # 32 Mpx of images waiting to be written: bounded memory (labels, originals)


def write_outputs(
    results: Iterable[Segmented],
    jobs: list[Job],
    overlay: bool,
    log: PredictionLog,
    failures: list,
    threads: int = OUTPUT_THREADS,
    max_pending: int = 8,
) -> int:
    """Each image's mask (and overlay) and its log row; returns how many were written. An image
    that cannot be read, or whose outputs cannot be written, is added to `failures` and logged,
    and the rest go on.

    With `threads`, the outputs are made on that many threads while the next images are decoded
    and run through the model; rows and failures are still logged in the input order, and at most
    `max_pending` images (and `PENDING_PIXELS` of them, one at least) wait at a time, so memory
    does not grow with the number of images. `threads=0`: one image after the other (the sliding
    window, which runs the model itself while its labels are made)."""
    if threads <= 0:
        made = ((result, jobs[result.index]) for result in results)
        return sum(_logged(result, job, log, failures, _made(result, job, overlay)) for result, job in made)
    pending: deque[tuple[Segmented, Future]] = deque()
    segmented, pixels = 0, 0

    def settle() -> None:
        nonlocal segmented, pixels
        result, future = pending.popleft()
        pixels -= result.size[0] * result.size[1]
        segmented += _logged(result, jobs[result.index], log, failures, future.result())

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fastseg-outputs") as pool:
        try:
            for result in results:
                pending.append((result, pool.submit(_made, result, jobs[result.index], overlay)))
                pixels += result.size[0] * result.size[1]
                while len(pending) > max_pending or (len(pending) > 1 and pixels > PENDING_PIXELS):
                    settle()
            while pending:
                settle()
        except BaseException:  # Ctrl-C or a bug: what was not started is not started
            for _, future in pending:
                future.cancel()
            raise
    return segmented


def _made(result: Segmented, job: Job, overlay: bool) -> list[float] | str:
    """One image's outputs: its class fractions, or why it failed (unreadable, not writable)."""
    if result.error:
        return result.error
    try:
        labels = save_outputs(result, job, overlay)
        return class_fractions(labels, len(result.segmenter.loaded.classes))
    except FastsegError as error:
        return str(error)
    except (MemoryError, RuntimeError) as error:
        if not out_of_memory(error):
            raise  # a bug, not a picture too big
        height, width = result.size
        lines = str(error).strip().splitlines()
        return f"out of memory at {width}x{height} ({lines[0] if lines else type(error).__name__})"


def _logged(result: Segmented, job: Job, log: PredictionLog, failures: list, made: list[float] | str) -> int:
    """The log row of one image (`_made`'s outcome); 1 when its outputs were written, else 0."""
    if isinstance(made, str):
        failures.append((job.source, made))
        log.row(job.source, "failed", made)
        return 0
    log.row(job.source, "ok", size=result.size, seconds=result.seconds, fractions=made)
    return 1


def out_of_memory(error: BaseException) -> bool:
    """Python's `MemoryError` (numpy, Pillow) or torch's allocator giving up: "DefaultCPUAllocator:
    can't allocate memory" on CPU, `torch.OutOfMemoryError` ("CUDA out of memory") on a GPU."""
    text = str(error)
    return isinstance(error, MemoryError) or "can't allocate memory" in text or "out of memory" in text


def merge_rank_csvs(out: Path, launch: Launch, fields: list[str]) -> Path:
    """One `predictions.csv`, rows sorted by path, from the per-process files (then removed);
    rank 0 merges once every process has finished its own. Alone, the file is already whole."""
    merged = out / "predictions.csv"
    if launch.world == 1:
        return merged
    barrier()
    if launch.main:
        parts = [out / f"predictions.rank{rank}.csv" for rank in range(launch.world)]
        rows = []
        for part in parts:
            with part.open(newline="") as file:
                rows += list(csv.reader(file))[1:]
        with atomic_path(merged) as temporary, temporary.open("w", newline="") as file:
            writer = csv.writer(file, lineterminator="\n")
            writer.writerow(fields)
            writer.writerows(sorted(rows, key=lambda row: row[0]))
        for part in parts:
            part.unlink()
    barrier()
    return merged
