"""The offline end-to-end demo: generated data -> short CPU training -> predict -> report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastseg.data.demo_voc import foreign_file, make_demo_voc
from fastseg.errors import FastsegError, shown
from fastseg.inference.predict import PredictSummary, predict
from fastseg.inference.report import ReportResult, report
from fastseg.paths import create_folder
from fastseg.runs.folder import RunExists, RunFolder
from fastseg.training.config import TrainConfig
from fastseg.training.recipes import DEFAULT_RECIPE, recipe
from fastseg.training.result import TrainResult
from fastseg.training.trainer import train


@dataclass
class DemoResult:
    data: Path
    training: TrainResult
    predictions: PredictSummary
    report: ReportResult


# Generated images are 48-96 px: the fast recipe letterboxes them at their own size (96) and
# crops 64 px, the seed's squishes them to 64², so both train on 64² inputs.
DEMO_SIZES = {"fast": {"size": 96, "crop_size": 64}, "seed": {"size": 64}}


def demo_config(
    data: Path, run_dir: Path, epochs: int = 20, recipe_name: str = DEFAULT_RECIPE
) -> TrainConfig:
    """A recipe shrunk for 2 CPU cores: VOC train only (the generated data has no SBD), small
    images, no ImageNet weights (offline), so a higher peak learning rate (3e-3), the same for
    encoder and decoder, to learn from scratch in a few epochs."""
    return recipe(
        recipe_name, data=str(data), out=str(run_dir), train_set="train", batch_size=8, epochs=epochs,
        patience=epochs, lr=3e-3, encoder_lr_ratio=1.0, pretrained=False, num_workers=0,
        **DEMO_SIZES[recipe_name],
    )  # fmt: skip


def run_demo(
    out: Path,
    epochs: int = 20,
    force: bool = False,
    show_progress: bool = True,
    recipe_name: str = DEFAULT_RECIPE,
    echo: Callable[[str], None] | None = None,
    stage: Callable[[str], None] | None = None,
) -> DemoResult:
    """Train on generated data, segment its images, and report on its test half into the run
    folder's own `report/` (where `fastseg runs` reads a run's test mIoU). `show_progress` and
    `echo` as for `fastseg.training.trainer.train`; `stage` (if given) gets one line as each stage
    starts, so a log file shows what the quiet minutes are spent on."""
    say = stage or (lambda line: None)
    out = Path(out)
    foreign = foreign_file(out / "data") if (out / "data").is_dir() else None
    data_path = out / "data"  # a link, a file, a FIFO there: not a folder the demo made
    if foreign is not None or data_path.is_symlink() or (data_path.exists() and not data_path.is_dir()):
        shown_path = foreign or out / "data"
        raise FastsegError(f"{out / 'data'}: holds files fastseg demo did not write ({shown(shown_path)}); "
                           "choose another --out")  # fmt: skip
    create_folder(out, "demo folder")  # one line, not a traceback from the data set's first folder
    run = out / "run"
    try:  # before the data is generated: train would refuse only after it
        RunFolder(run).check_can_start(resume=False, force=force)
    except RunExists:
        raise RunExists(f"{run}: holds a run already; --force replaces an earlier demo's run (fastseg's "
                        "own files), or choose another --out") from None  # fmt: skip
    say(f"generating the demo data set in {out / 'data'}")
    data = make_demo_voc(out / "data")
    config = demo_config(data, run, epochs, recipe_name)
    say(f"training into {run}: every image and mask checked, then {epochs} epochs of "
        f"{config.size} px, batch {config.batch_size}, one line each")  # fmt: skip
    training = train(config, run, force=force, show_progress=show_progress, echo=echo)
    images = data / "JPEGImages"
    say(f"segmenting every image of {images} into {out / 'predictions'}")
    predictions = predict(run, [images], out / "predictions", overlay=True, num_workers=0)
    say(f"reporting on the test half into {run / 'report'}")
    evaluation = report(run, run / "report", num_workers=0)
    return DemoResult(data=data, training=training, predictions=predictions, report=evaluation)
