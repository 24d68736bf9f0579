"""A stranger's hostile pass over train's options that contradict each other, a resume under
another number of processes, and the loader-worker cap's reading of the launcher's variables.

Each test here failed before its fix. Tiny generated data (`--size 32`), at most a few epochs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_hostile_training_s32 import invoke, usage_error_line

TINY = ["--size", "32", "--crop-size", "32", "--batch-size", "4", "--num-workers", "0", "--device", "cpu",
        "--train-set", "train", "--epochs", "1", "--quiet"]  # fmt: skip


# --- 1. options that contradict each other -------------------------------------------------------


@pytest.fixture
def weights_file(tmp_path):
    path = tmp_path / "encoder.pth"
    torch.save({}, path)
    return path


@pytest.mark.parametrize("source", ["command line", "yaml", "run config.json", "yaml + command line"])
def test_no_pretrained_with_encoder_weights_is_one_usage_line_naming_both(voc_root, tmp_path, weights_file,
                                                                          source):  # fmt: skip
    """`--no-pretrained --encoder-weights FILE`: the file's weights were loaded and --no-pretrained
    dropped without a word (load_encoder_weights: the file wins); from a --config file the same."""
    run = tmp_path / "run"
    options = ["--data", voc_root, "--out", run, *TINY]
    if source == "command line":
        result = invoke("train", *options, "--no-pretrained", "--encoder-weights", weights_file)
    else:
        config = tmp_path / ("config.json" if source == "run config.json" else "options.yaml")
        if source == "run config.json":  # as a run writes it: every field under `train`
            from fastseg.training.recipes import recipe

            values = recipe("fast", data=str(voc_root), pretrained=False).to_dict()
            values["encoder_weights"] = str(weights_file)
            config.write_text(json.dumps({"train": values, "model": {}}))
        elif source == "yaml":
            config.write_text(f"pretrained: false\nencoder_weights: {weights_file}\n")
        else:
            config.write_text(f"encoder_weights: {weights_file}\n")
        extra = ["--no-pretrained"] if source == "yaml + command line" else []
        result = invoke("train", "--config", config, *options, *extra)
    line = usage_error_line(result)
    assert "--encoder-weights" in line and "--no-pretrained" in line, line
    assert not run.exists()


def test_lr_find_refuses_the_same_contradiction(voc_root, tmp_path, weights_file):
    """lr-find reads train's options through the same recipe: the same line."""
    out = tmp_path / "find"
    result = invoke("lr-find", "--data", voc_root, "--out", out, "--size", "32", "--crop-size", "32",
                    "--batch-size", "4", "--num-workers", "0", "--train-set", "train", "--no-pretrained",
                    "--encoder-weights", weights_file)  # fmt: skip
    line = usage_error_line(result)
    assert "--encoder-weights" in line and "--no-pretrained" in line, line
    assert not out.exists()


def test_crop_size_with_squish_from_a_yaml_file_names_both(voc_root, tmp_path):
    """The older rule of the same kind (a crop only random-scale crops take), now from the same
    table: named the same way from a file as from the command line."""
    config = tmp_path / "options.yaml"
    config.write_text("crop_size: 32\nrandom_scale_crop: false\n")
    run = tmp_path / "run"
    result = invoke("train", "--config", config, "--data", voc_root, "--out", run, "--size", "32",
                    "--batch-size", "4", "--no-pretrained", "--train-set", "train", "--epochs", "1",
                    "--quiet")  # fmt: skip
    line = usage_error_line(result)
    assert "--crop-size" in line and "--squish" in line, line
    assert not run.exists()


# --- 2. a resume under another number of processes keeps the run's global batch -------------------


def resume_config(voc_root, run, batch_size=2, epochs=3):
    from fastseg.training.recipes import recipe

    return recipe("fast", data=str(voc_root), out=str(run), train_set="train", size=32, crop_size=32,
                  batch_size=batch_size, epochs=epochs, pretrained=False, num_workers=0, seed=3,
                  device="cpu")  # fmt: skip


@pytest.mark.parametrize(
    ("processes", "world", "recorded", "fitted", "expected"),
    [
        (2, 2, 8, 8, (8, 1, None)),  # the same launch
        (None, 1, 8, 8, (8, 1, None)),  # a checkpoint of an earlier fastseg: nothing known, nothing said
        (2, 1, 8, 8, (8, 2, "2 batches of 8 per optimiser step, keeping the run's global batch of 16 "
                           "(BatchNorm's statistics still come from one batch at a time)")),
        (8, 2, 4, 4, (4, 4, "adds up 4 batches of 4")),
        (1, 2, 8, 8, (4, 1, "batches of 4 per process keep the run's global batch of 8")),
        (1, 2, 6, 3, (3, 1, None)),  # fitted to the share already: 2 x 3 is the run's 6
        (2, 1, 3, 3, (3, 2, "adds up 2 batches of 3")),  # a fitted run's batch, the other way
        (3, 2, 8, 8, (8, 1, "the global batch is 16 where it was 24")),  # 12 a process would not fit
        (1, 2, 7, 7, (7, 1, "the global batch is 14 where it was 7")),  # no whole batch each
    ],
)
def test_a_resume_keeps_the_global_batch_or_says_it_cannot(processes, world, recorded, fitted, expected):
    from dataclasses import replace

    from fastseg.training.config import TrainConfig
    from fastseg.training.trainer import kept_global_batch

    asked = TrainConfig(batch_size=recorded)
    config, steps, note = kept_global_batch(replace(asked, batch_size=fitted), asked, processes, world)
    assert (config.batch_size, steps) == expected[:2]
    if expected[2] is None:
        assert note is None
    else:
        under = f"resumed under {world} process{'es' if world > 1 else ''}, the run started under {processes}"
        assert expected[2] in note and note.startswith(under), note


def test_a_hand_edited_process_count_in_last_json_is_one_line(tmp_path):
    from fastseg.errors import FastsegError
    from fastseg.runs.folder import RunFolder
    from fastseg.training.resume import run_processes

    (tmp_path / "last.json").write_text('{"completed_epochs": 1, "processes": "two"}')
    with pytest.raises(FastsegError, match=r"last.json: processes must be a whole number >= 1, got 'two'"):
        run_processes(RunFolder(tmp_path))
    (tmp_path / "last.json").write_text('{"completed_epochs": 1}')  # an earlier fastseg's
    assert run_processes(RunFolder(tmp_path)) is None


STARTED_UNDER_TWO = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_resume_schedule import KillAfter, Killed
from test_hostile_train_options_s34 import resume_config
from fastseg.errors import FastsegError
from fastseg.training.trainer import train
import os
code = 3
try:
    run = Path({run!r})
    train(resume_config(Path({data!r}), run), run, show_progress=False, callbacks=[KillAfter(0)])
except Killed:  # after epoch 0 (rank 0: after last.pth was written)
    code = 0
except FastsegError as error:  # the other rank, whose peer is gone: one line (launch.processes)
    code = 0 if os.environ["RANK"] != "0" and "lost the other processes" in str(error) else 3
sys.stdout.flush()
sys.stderr.flush()
# as kill -9 would: no interpreter teardown (where gloo's threads aborted rank 1 now and then, "terminate
# called without an active exception", before launch.processes.let_backend_finish)
os._exit(code)
"""


@pytest.mark.slow
def test_a_run_started_under_two_processes_resumes_under_one_with_its_global_batch(tmp_path, monkeypatch):
    """torchrun 2 processes of batch 2 (global 4, 2 optimiser steps an epoch over 8 images), stopped
    after epoch 0, resumed by a plain process: the batch of 2 stayed and each epoch took 4 steps of
    half the images at the run's learning rates, without a word. Now each step adds up 2 batches
    (2 steps an epoch again), said once in the output and in train.log."""
    import subprocess
    import sys

    from fastai.callback.core import Callback

    from fastseg.data.demo_voc import make_demo_voc
    from fastseg.runs.folder import RunFolder
    from fastseg.training.trainer import train

    voc_root, run = tmp_path / "data", tmp_path / "run"
    make_demo_voc(voc_root, n_train=8, n_val=4, seed=2, min_size=32, max_size=48)
    script = tmp_path / "start.py"
    script.write_text(STARTED_UNDER_TWO.format(tests=str(Path(__file__).parent), data=str(voc_root),
                                               run=str(run)))  # fmt: skip
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torchrun = str(Path(sys.executable).parent / "torchrun")
    command = [torchrun, "--standalone", "--nproc_per_node", "2", str(script)]
    started = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert started.returncode == 0, started.stderr[-3000:]
    assert RunFolder(run).read_resume_state()["completed_epochs"] == 1

    class Steps(Callback):
        def __init__(self):
            self.per_epoch = {}

        def after_step(self):
            self.per_epoch[self.learn.epoch] = self.per_epoch.get(self.learn.epoch, 0) + 1

    steps, lines = Steps(), []
    config = RunFolder(run).read_train_config()
    train(config, run, resume=True, show_progress=False, echo=lines.append, callbacks=[steps])
    assert steps.per_epoch == {1: 2, 2: 2}
    said = [line for line in lines if "global batch" in line]
    assert said == ["resumed under 1 process, the run started under 2: each process adds up 2 batches of 2 "
                    "per optimiser step, keeping the run's global batch of 4 (BatchNorm's statistics still "
                    "come from one batch at a time)"], lines  # fmt: skip
    assert said[0] in (run / "train.log").read_text().splitlines()


@pytest.mark.slow
def test_a_run_started_alone_resumes_under_two_processes_with_its_global_batch(tmp_path):
    """The other way: one process of batch 4 over 8 images, resumed under torchrun with 2 processes,
    trained on with 2 x 4 (half the steps an epoch) without a word; now 2 x 2, said in one line."""
    import subprocess
    import sys

    from test_resume_schedule import KillAfter, Killed

    from fastseg.data.demo_voc import make_demo_voc
    from fastseg.runs.folder import RunFolder
    from fastseg.training.trainer import train

    voc_root, run = tmp_path / "data", tmp_path / "run"
    make_demo_voc(voc_root, n_train=8, n_val=4, seed=2, min_size=32, max_size=48)
    with pytest.raises(Killed):
        train(resume_config(voc_root, run, batch_size=4), run, show_progress=False, callbacks=[KillAfter(0)])
    assert RunFolder(run).read_resume_state()["processes"] == 1
    command = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2",
               "-m", "fastseg", "train", "--resume", str(run), "--device", "cpu"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    line = ("resumed under 2 processes, the run started under 1: batches of 2 per process keep the run's "
            "global batch of 4")  # fmt: skip
    assert result.stdout.count(line) == 1, result.stdout
    assert line in (run / "train.log").read_text().splitlines()
    assert RunFolder(run).read_train_config().batch_size == 4  # config.json is left as it was


# --- 3. the launcher's variables as the loader-worker cap reads them ------------------------------

# `launch_env`: tests/conftest.py


def test_more_processes_on_a_machine_than_in_the_launch_is_one_line(launch_env, monkeypatch):
    """LOCAL_WORLD_SIZE=8 beside WORLD_SIZE=2 (a hand-made environment: no launcher puts more
    processes on one machine than the launch has) divided the cores by 8: a quarter of the loader
    workers, and --num-workers refused for '8 processes' that did not exist."""
    from fastseg.errors import FastsegError
    from fastseg.launch import device, processes

    monkeypatch.setattr(device, "available_cores", lambda: 16)
    launch_env(WORLD_SIZE="2", RANK="0", LOCAL_WORLD_SIZE="8")
    for read in (device.processes_on_machine, lambda: device.loader_workers(8), processes.local_rank):
        with pytest.raises(FastsegError, match=r"^LOCAL_WORLD_SIZE=8 is more than WORLD_SIZE=2: "):
            read()
    launch_env(WORLD_SIZE="16", RANK="0", LOCAL_WORLD_SIZE="8")  # 2 machines of 8: as before
    assert (device.processes_on_machine(), device.loader_workers(8)) == (8, 8)
    launch_env(LOCAL_WORLD_SIZE="2")  # no WORLD_SIZE: as before, the machine's count stands
    assert device.processes_on_machine() == 2


def test_a_world_size_without_a_launcher_is_named_not_blamed_on_num_workers(voc_root, tmp_path, launch_env,
                                                                            monkeypatch):  # fmt: skip
    """WORLD_SIZE=4 left in a shell without RANK: train's loader cap, checked first, divided the cores
    by 4 and refused `--num-workers 4` as 'at most 2 a process here (..., 4 processes)' (exit 2); the
    environment was the mistake, which the launch check names once it is reached."""
    from test_hostile_training_s32 import one_error_line

    from fastseg.launch import device

    monkeypatch.setattr(device, "available_cores", lambda: 2)
    launch_env(WORLD_SIZE="4")
    run = tmp_path / "run"
    options = ["--size", "32", "--crop-size", "32", "--batch-size", "4", "--no-pretrained", "--device", "cpu",
               "--train-set", "train", "--epochs", "1", "--quiet"]  # fmt: skip
    line = one_error_line(invoke("train", "--data", voc_root, "--out", run, *options, "--num-workers", "4"))
    assert line.startswith("Error: WORLD_SIZE=4 without RANK"), line
    assert not run.exists()


def test_train_help_reads_no_launcher_variable(tmp_path):
    """`fastseg train --help` under WORLD_SIZE=abc on a machine of more than 2 cores: the module's
    --crop-size help ran the fast recipe's checks at import, whose loader cap read WORLD_SIZE, a
    traceback before click could print anything."""
    import os
    import subprocess
    import sys

    code = ("import fastseg.launch.device as device; device.available_cores = lambda: 16\n"
            "from cli.main import main; main(['train', '--help'])")  # fmt: skip
    environment = {**os.environ, "WORLD_SIZE": "abc"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment,
                            cwd=Path(__file__).parent.parent, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--crop-size" in result.stdout and "Traceback" not in result.stderr
