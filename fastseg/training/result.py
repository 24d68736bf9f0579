"""What `fastseg train` returns: its own module so that the trainer, which makes it, and the
reporting, which hands it to the experiment trackers, both import it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class TrainResult:
    run_dir: Path
    epochs_run: int
    best_epoch: int | None
    best_miou: float | None
    best_pixel_accuracy: float | None
    stopped_early: bool
    kept: str = "best"  # which epoch best_epoch and the scores name: the best one, or the final one
