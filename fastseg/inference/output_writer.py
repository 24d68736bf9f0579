"""Each segmented image's outputs and log row, made on a thread while the model runs the next
images, logged in the input order, with a bound on the images waiting.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from fastseg.errors import FastsegError, first_line
from fastseg.inference.image_outputs import class_fractions, save_outputs
from fastseg.inference.jobs import Job
from fastseg.inference.memory import out_of_memory
from fastseg.inference.prediction_log import PredictionLog
from fastseg.inference.segmented import Segmented

# Threads writing outputs while the model runs the next batch: upsampling, the argmax, zlib and
# JPEG encoding release the GIL, so on CPU they overlap the forward pass instead of following it.
# One: the fastest measured, for less memory than two (each thread's malloc arena); the figures
# are in benchmarks/README.md (#24).
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
        return f"out of memory at {width}x{height} ({first_line(error)})"


def _logged(result: Segmented, job: Job, log: PredictionLog, failures: list, made: list[float] | str) -> int:
    """The log row of one image (`_made`'s outcome); 1 when its outputs were written, else 0."""
    if isinstance(made, str):
        failures.append((job.source, made))
        log.row(job.source, "failed", made)
        return 0
    log.row(job.source, "ok", size=result.size, seconds=result.seconds, fractions=made)
    return 1
