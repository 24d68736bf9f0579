"""A run resumed under another number of processes (a laptop's run finished on a DDP box, or the
reverse). A training set smaller than one batch trains in batches of each process's share, fitted
again when the process count changes; the resume compares the options config.json holds, so a
batch fitted again is said in one line, not refused as "config.json changed" (it was not)."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_resume_schedule import KillAfter, Killed

from fastseg.data.demo_voc import make_demo_voc
from fastseg.runs.folder import RunFolder
from fastseg.training.recipes import recipe
from fastseg.training.trainer import train

EPOCHS = 3


@pytest.mark.slow
def test_a_run_with_a_fitted_batch_resumes_under_two_processes(tmp_path, monkeypatch):
    """With MLflow logging too: the resumed MLflow run is given config.json's options again, which
    MLflow compares with those it logged ("Changing param values is not allowed")."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)  # MLflow's artefacts go to ./mlruns, here and in torchrun's processes
    voc_root = tmp_path / "data"
    make_demo_voc(voc_root, n_train=6, n_val=4, seed=2, min_size=32, max_size=48)
    run = tmp_path / "run"
    config = recipe("fast", data=str(voc_root), out=str(run), train_set="train", size=32, crop_size=32,
                    batch_size=8, epochs=EPOCHS, pretrained=False, num_workers=0, seed=3,
                    trackers=("mlflow",))  # fmt: skip
    with pytest.raises(Killed):
        train(config, run, show_progress=False, callbacks=[KillAfter(0)])
    assert RunFolder(run).read_train_config().batch_size == 6  # fitted to the 6 training images
    command = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2",
               "-m", "fastseg", "train", "--resume", str(run), "--device", "cpu"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training with batches of 3" in result.stdout + result.stderr
    assert "changed since" not in result.stdout + result.stderr
    assert list(pd.read_csv(run / "history.csv")["epoch"]) == list(range(EPOCHS))
    assert RunFolder(run).read_train_config().batch_size == 6  # config.json is left as it was
