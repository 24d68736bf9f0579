"""The offline end-to-end demo: generated data -> short CPU training -> predict -> report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastseg.config import TrainConfig
from fastseg.demo_data import make_demo_voc
from fastseg.predict import PredictSummary, predict
from fastseg.report import ReportResult, report
from fastseg.train import TrainResult, train


@dataclass
class DemoResult:
    data: Path
    training: TrainResult
    predictions: PredictSummary
    report: ReportResult


def demo_config(data: Path, run_dir: Path, epochs: int = 20) -> TrainConfig:
    """The seed's recipe shrunk for 2 CPU cores: 64² images, no ImageNet weights (offline), so a
    higher peak learning rate (3e-3 instead of 1e-4) to learn from scratch in a few epochs."""
    return TrainConfig(
        data=str(data), out=str(run_dir), size=64, batch_size=8, epochs=epochs, patience=epochs,
        lr=3e-3, pretrained=False, num_workers=0,
    )  # fmt: skip


def run_demo(out: Path, epochs: int = 20, force: bool = False, show_progress: bool = True) -> DemoResult:
    """Train on generated data, segment its validation images, and report on its test half."""
    out = Path(out)
    data = make_demo_voc(out / "data")
    run = out / "run"
    training = train(demo_config(data, run, epochs), run, force=force, show_progress=show_progress)
    predictions = predict(run, [data / "JPEGImages"], out / "predictions", overlay=True, num_workers=0)
    evaluation = report(run, out / "report", num_workers=0)
    return DemoResult(data=data, training=training, predictions=predictions, report=evaluation)
