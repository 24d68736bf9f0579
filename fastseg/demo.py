"""The offline end-to-end demo: generated VOC-format data -> a short CPU training run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastseg.config import TrainConfig
from fastseg.demo_data import make_demo_voc
from fastseg.train import TrainResult, train


@dataclass
class DemoResult:
    data: Path
    training: TrainResult


def demo_config(data: Path, run_dir: Path, epochs: int = 20) -> TrainConfig:
    """The seed's recipe shrunk for 2 CPU cores: 64² images, no ImageNet weights (offline), so a
    higher peak learning rate (3e-3 instead of 1e-4) to learn from scratch in a few epochs."""
    return TrainConfig(
        data=str(data), out=str(run_dir), size=64, batch_size=8, epochs=epochs, patience=epochs,
        lr=3e-3, pretrained=False, num_workers=0,
    )  # fmt: skip


def run_demo(out: Path, epochs: int = 20, force: bool = False, show_progress: bool = True) -> DemoResult:
    data = make_demo_voc(Path(out) / "data")
    result = train(demo_config(data, Path(out) / "run", epochs), Path(out) / "run", force=force,
                   show_progress=show_progress)  # fmt: skip
    return DemoResult(data=data, training=result)
