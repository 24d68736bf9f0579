"""`benchmarks/gpu_check.sh` is known to run before a GPU is lent: its checks stop in one line,
and its tiny CPU rehearsal goes through every step (tests skipped) and writes the results file."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def run(*arguments, python=sys.executable, timeout=600, wheels="/nonexistent"):
    environment = {"PATH": "/usr/bin:/bin", "PYTHON": str(python), "HOME": str(Path.home()),
                   "GPU_CHECK_WHEELS": wheels}  # fmt: skip
    return subprocess.run(["bash", str(SCRIPT), *map(str, arguments)], capture_output=True, text=True,
                          env=environment, timeout=timeout)  # fmt: skip


def test_a_python_without_the_packages_is_one_line(tmp_path):
    """A Python lacking torch, fastai and smp (a bare interpreter), and no .wheels to install from."""
    bare = tmp_path / "python"
    bare.write_text(f'#!/bin/sh\nexec {shutil.which("python3") or sys.executable} -I -S "$@"\n')
    bare.chmod(0o755)
    result = run("--device", "cpu", "--quick", python=bare)
    assert result.returncode == 2
    assert (
        result.stderr.count("\n") == 1 and "lacks torch fastai segmentation-models-pytorch" in result.stderr
    )
    assert "--fetch-wheels" in result.stderr


def test_asking_for_cuda_without_it_is_one_line():
    pytest.importorskip("segmentation_models_pytorch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run()
    assert result.returncode == 2 and "sees no CUDA device" in result.stderr and result.stdout == ""


@pytest.mark.slow
def test_the_cpu_rehearsal_runs_every_step(tmp_path):
    pytest.importorskip("segmentation_models_pytorch")
    result = run("--device", "cpu", "--quick", "--out", tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    stages = [
        line.split("] ")[1][:3] for line in result.stdout.splitlines() if line.startswith("gpu_check: [")
    ]
    assert stages == ["1/5", "2/5", "3/5", "4/5", "5/5", "don"]
    (written,) = tmp_path.glob("*.json")
    figures = json.loads(written.read_text())
    assert figures["cuda_tests"]["exit_code"] == 0 and "skipped" in figures["cuda_tests"]["summary"]
    assert figures["train_step"]["recipes"]["seed"]["ratio_fastseg_over_smp"] > 0
    assert figures["predict"]["whole_process_images_per_s"] > 0
    assert figures["training"]["finished"] and figures["training"]["epochs_completed"] == 1
