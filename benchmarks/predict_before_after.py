"""Whole `fastseg predict` processes of two source trees, alternately, on the same files: what a
change did to start-up, throughput and peak RSS (#24).

Cases: one image and 50 VOC-sized JPEGs with the INT8 file given, 50 with the run folder
(`--runtime auto`, which takes the INT8 file: its check is stamped as in peer_ratios.py, and its
description records model.pth's digest), and 50 with `model.pth` (torch). Each tree runs as
`python -m fastseg` with the tree first on `PYTHONPATH` (its fastseg is checked to be the one
imported); rounds alternate the trees so a drift of the machine falls on both.

    git worktree add /tmp/before HEAD~3
    python benchmarks/predict_before_after.py --before /tmp/before [--after .] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peer_ratios import cpu_description, exported_models, make_jpegs  # beside this script
from shared import FASTSEG, predict_arguments, seconds_and_peak_rss  # beside this script

CASES = ("int8 file, 1 image", "int8 file, 50 images", "run folder (auto), 50 images", "model.pth, 50 images")


def run_tree(tree: Path, arguments: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of `python -m fastseg ARGUMENTS` from `tree`."""
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    return seconds_and_peak_rss([*FASTSEG, *arguments], cwd=tree, env=environment)


def imported_from(tree: Path) -> str:
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    code = "import fastseg, pathlib; print(pathlib.Path(fastseg.__file__).resolve().parent.parent)"
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=tree,
                          env=environment).stdout.strip()  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the figures here as JSON")
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    for name, tree in trees.items():
        found = imported_from(tree)
        if Path(found) != tree:
            raise SystemExit(f"{name}: python -m fastseg from {tree} imports the fastseg of {found}")
    report: dict[str, object] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                 "cpu": cpu_description(), "trees": {k: str(v) for k, v in trees.items()},
                                 "rounds": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        small, one = make_jpegs(scratch / "small", 50), make_jpegs(scratch / "one", 1)
        model, _, int8 = exported_models(scratch, small, 224)
        inputs = {CASES[0]: (int8, one), CASES[1]: (int8, small), CASES[2]: (model.parent, small),
                  CASES[3]: (model, small)}  # fmt: skip
        figures: dict[str, dict[str, list]] = {case: {name: [] for name in trees} for case in CASES}
        for round_number in range(args.rounds):
            order = list(trees) if round_number % 2 == 0 else list(reversed(trees))
            for case, (given, images) in inputs.items():
                for name in order:
                    out = scratch / f"out-{name}-{round_number}-{CASES.index(case)}"
                    arguments = predict_arguments(given, images, out, "--batch-size", "8", "--size", "224")
                    seconds, rss = run_tree(trees[name], arguments)
                    figures[case][name].append([round(seconds, 2), round(rss)])
                    print(f"{case:32s} {name:6s} {seconds:6.2f} s {rss:6.0f} MiB", flush=True)
        report["rounds"] = figures
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
