"""One whole `fastseg predict` process as the benchmarks time it (peer_ratios, predict_throughput,
serve_load): wall seconds and peak RSS, taken by a wrapper process whose only child it is
(`getrusage(RUSAGE_CHILDREN)`), so the measuring script's own memory stays out of the figure.
Not a script: the others import it from beside them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FASTSEG = [sys.executable, "-m", "fastseg"]  # the installed command, as a user runs it
_WRAPPER = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); "
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def predict_arguments(model: Path, images: Path, out: Path, *options: str) -> list[str]:
    """`predict --model MODEL IMAGES --out OUT --quiet OPTIONS`, for a `fastseg` command line."""
    return ["predict", "--model", str(model), str(images), "--out", str(out), "--quiet", *options]


def seconds_and_peak_rss(command: list[str], cwd: Path | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of `command`, run to its end with its output discarded;
    a failure raises `subprocess.CalledProcessError`."""
    result = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *command], check=True, capture_output=True, text=True, cwd=cwd
    )
    seconds, rss_kib = result.stdout.split()
    return float(seconds), int(rss_kib) / 1024
