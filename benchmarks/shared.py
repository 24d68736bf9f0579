"""What several benchmark scripts set up the same way, imported from beside them (not a script):

- an untrained model file of the default shape with VOC's 21 classes: speed and memory figures
  do not depend on the weights;
- one whole `fastseg predict` process timed: wall seconds and peak RSS, taken by a wrapper process
  whose only child it is (`getrusage(RUSAGE_CHILDREN)`), so the measuring script's own memory
  stays out of the figure.
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


def untrained_model(path: Path, size: int, **options: object) -> Path:
    """Write `path` (model.pth): an untrained network of the default shape and VOC's 21 classes at
    `size`² input; `options` are `save_model`'s (`resize=LETTERBOX`). Seed torch first for the
    same weights each run."""
    from fastseg.data.voc import VOC
    from fastseg.model.checkpoint import save_model
    from fastseg.model.config import ModelConfig
    from fastseg.model.network import SegmentationModel

    config = ModelConfig(num_classes=len(VOC))
    return save_model(path, SegmentationModel(config).eval(), config, size, classes=VOC, **options)


def predict_arguments(model: Path, images: Path, out: Path, *options: str) -> list[str]:
    """`predict --model MODEL IMAGES --out OUT --quiet OPTIONS`, for a `fastseg` command line."""
    return ["predict", "--model", str(model), str(images), "--out", str(out), "--quiet", *options]


def seconds_and_peak_rss(
    command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of `command`, run to its end with its output discarded
    (in `cwd`, with the environment `env` where given); a failure raises
    `subprocess.CalledProcessError`."""
    result = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *command],
        check=True,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
    )
    seconds, rss_kib = result.stdout.split()
    return float(seconds), int(rss_kib) / 1024
