"""kill -9 `fastseg train` and `fastseg predict` at random moments, again and again, and check
that nothing is ever lost or left half-written (issue #10), and that a run killed and resumed
trains what an uninterrupted run trains (issue #19).

After every kill: every file under the run folder / output folder (hidden temporaries aside: they
are never read, and the next start removes them) must be whole (JSON parses strictly, `.pth`
loads weights-only, PNGs decode, CSVs have every column on every row), and the next start must
succeed (`train --resume`, or `predict --skip-existing`). At the end the run must be finished with
every epoch in its history once, and every image segmented exactly once. The training itself is
compared with the uninterrupted calibration run of the same seed: `model.pth`'s weights bit for
bit (`--keep final`, one thread per process so every process sums in the same order) and every
epoch's line of train.log (training and validation loss, scores, the learning rate it ended at).

    python benchmarks/torture.py --kills 25 --seed 0
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from fastseg.data.demo_voc import make_demo_voc
from fastseg.errors import FastsegError
from fastseg.runs.folder import HISTORY, RunFolder

TRAIN = ["--recipe", "seed", "--train-set", "train", "--size", "32", "--batch-size", "4", "--no-pretrained",
         "--num-workers", "0", "--seed", "3", "--keep", "final", "--quiet"]  # fmt: skip


def problems_in(folder: Path) -> list[str]:
    """Every visible file that is not whole."""
    found = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        try:
            if path.suffix == ".json":
                json.loads(path.read_text(), parse_constant=lambda constant: 1 / 0)
            elif path.suffix == ".pth":
                torch.load(path, map_location="cpu", weights_only=True)
            elif path.suffix in (".png", ".jpg"):
                with Image.open(path) as image:
                    image.load()
            elif path.suffix == ".csv":
                rows = list(csv.reader(path.open(newline="")))
                if not rows or any(len(row) != len(rows[0]) for row in rows):
                    raise ValueError("ragged rows")
                if path.name == HISTORY:  # and `fastseg runs` reads it (its error names the file)
                    RunFolder(path.parent).read_history()
        except FastsegError as error:  # fastseg's own reader: its one line names the file
            found.append(str(error)[:300])
        except Exception as error:  # noqa: BLE001 - any failure to read is the finding
            found.append(f"{path}: {type(error).__name__}: {str(error)[:120]}")
    return found


def history_problem(run: Path, epochs: int) -> str | None:
    """What keeps `run`'s history.csv from holding epochs 0 .. epochs-1 once each, in order, read
    as `fastseg runs` reads it; None when it does. The reader keeps an epoch's last row only, so
    the rows as written (`history_rows_before`) are counted too: an epoch written twice is two."""
    folder = RunFolder(run)
    try:
        read = folder.read_history()["epoch"].tolist()
    except FastsegError as error:  # names the file
        return str(error)
    rows = len(folder.history_rows_before(sys.maxsize))
    if read == list(range(epochs)) and rows == epochs:
        return None
    listed = ", ".join(f"{epoch:g}" for epoch in read)
    return f"{folder.file(HISTORY)}: epochs {listed} in {rows} rows, not 0 to {epochs - 1} once each"


def run_and_kill(command: list[str], delay: float) -> bool:
    """Start `command`; kill -9 it after `delay` s unless it ended first. True when it was killed."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return True
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{process.stderr.read()[-3000:]}")
    return False


def timed(command: list[str]) -> float:
    """Seconds one uninterrupted run of `command` takes: kills are spread over that span."""
    started = time.perf_counter()
    run_and_kill(command, delay=3600)
    return time.perf_counter() - started


def check(folder: Path) -> None:
    if problems := problems_in(folder):
        raise SystemExit("half-written after a kill:\n" + "\n".join(problems))


def epoch_lines(run: Path) -> dict[int, str]:
    """train.log's last line per epoch, without the time it took."""
    lines = (run / "train.log").read_text().splitlines()
    return {int(line.split()[1]): line.split("  time ")[0] for line in lines if line.startswith("epoch ")}


def training_differences(run: Path, reference: Path) -> list[str]:
    """How `run`'s training differs from the uninterrupted `reference`'s: weights, then epochs."""
    found = torch.load(run / "model.pth", weights_only=True)["state_dict"]
    expected = torch.load(reference / "model.pth", weights_only=True)["state_dict"]
    differences = [f"weights {name} differ" for name in expected
                   if name not in found or not torch.equal(found[name], expected[name])]  # fmt: skip
    lines, reference_lines = epoch_lines(run), epoch_lines(reference)
    differences += [f"epoch {epoch}: {lines.get(epoch)!r} != {line!r}"
                    for epoch, line in reference_lines.items() if lines.get(epoch) != line]  # fmt: skip
    return differences


def train_until_finished(fresh: list[str], run: Path, span: float, rng: random.Random) -> tuple[int, int]:
    """One run from scratch to `finished`, killed at random moments of `span` on the way;
    returns (kills, resumes)."""
    kills = resumes = 0
    command = fresh
    while True:
        if not run_and_kill(command, rng.uniform(0.2 * span, 1.1 * span)):
            return kills, resumes
        kills += 1
        check(run)
        print(f"train: killed ({kills} in {run.name}), every file whole", flush=True)
        if (run / "last.json").is_file() and json.loads((run / "last.json").read_text()).get("finished"):
            return kills, resumes  # killed after model.pth and the finished mark: nothing left to resume
        if (run / "last.json").is_file():
            command, resumes = (
                [sys.executable, "-m", "fastseg", "train", "--resume", str(run), "--quiet"],
                resumes + 1,
            )
        else:  # killed before the first epoch ended: nothing to resume, start again
            command = fresh


def torture_training(data: Path, root: Path, epochs: int, kills: int, rng: random.Random) -> dict:
    def fresh(run: Path) -> list[str]:
        return [sys.executable, "-m", "fastseg", "train", "--data", str(data), "--out", str(run),
                "--epochs", str(epochs), "--force", *TRAIN]  # fmt: skip

    span = timed(fresh(root / "calibration"))
    totals = {"runs": 0, "kills": 0, "resumes": 0, "uninterrupted_run_seconds": round(span, 1)}
    while totals["kills"] < kills:
        run = root / f"run{totals['runs']}"
        killed, resumed = train_until_finished(fresh(run), run, span, rng)
        if problem := history_problem(run, epochs):
            raise SystemExit(f"{run.name} did not record every epoch once: {problem}")
        assert json.loads((run / "last.json").read_text())["finished"] is True
        torch.load(run / "model.pth", weights_only=True)
        check(run)
        if differences := training_differences(run, root / "calibration"):
            listed = "\n".join(differences[:10])
            raise SystemExit(f"{run.name} trained otherwise than the uninterrupted run:\n{listed}")
        print(f"train: {run.name} trained as the uninterrupted run did (weights bit for bit)", flush=True)
        totals = {**totals, "runs": totals["runs"] + 1, "kills": totals["kills"] + killed,
                  "resumes": totals["resumes"] + resumed}  # fmt: skip
        print(f"train: {run.name} finished whole after {killed} kills", flush=True)
    return totals


def torture_predict(run: Path, images: Path, root: Path, kills: int, rng: random.Random) -> dict:
    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "fastseg", "predict", "--model", str(run), str(images),
                "--out", str(out), "--skip-existing", "--overlay", "--num-workers", "0", "--batch-size", "2",
                "--quiet"]  # fmt: skip

    span = timed(command(root / "calibration"))
    totals = {"runs": 0, "kills": 0, "uninterrupted_run_seconds": round(span, 1)}
    while totals["kills"] < kills:
        out = root / f"masks{totals['runs']}"
        while run_and_kill(command(out), rng.uniform(0.2 * span, 1.1 * span)):
            totals["kills"] += 1
            check(out)
            print(f"predict: killed ({totals['kills']} so far), every file whole", flush=True)
        sources = sorted(images.glob("*.jpg"))
        with (out / "predictions.csv").open(newline="") as file:
            rows = list(csv.DictReader(file))
        assert sorted(row["path"] for row in rows) == sorted(map(str, sources)), "each image once"
        for source in sources:
            with Image.open(source) as image, Image.open(out / f"{source.stem}.png") as mask:
                assert mask.size == image.size and mask.mode == "P"
        check(out)
        totals["runs"] += 1
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="kills in each of train and predict")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    os.environ["OMP_NUM_THREADS"] = "1"  # every training process sums in the same order: same bits
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        data = make_demo_voc(root / "data", n_train=24, n_val=12, seed=1, min_size=32, max_size=64)
        training = torture_training(data, root, args.epochs, args.kills, rng)
        predicting = torture_predict(root / "calibration", data / "JPEGImages", root, args.kills, rng)
    summary = {"train": training, "predict": predicting, "seconds": round(time.perf_counter() - started)}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
