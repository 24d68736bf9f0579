"""A stranger's hostile pass over multi-process launches, experiment trackers and `fastseg lr-find`.

Each test here failed before its fix: launcher variables set wrong or in part (as a hand-written
SLURM script or a half-copied torchrun line leaves them) were a traceback from deep inside the
data check or torch.distributed, a silent run that wrote nothing, or a wait of half an hour for a
host that does not exist. Each now ends in one line naming the variable, exit 1, before any work
and with nothing made. Tiny generated data; the processes spawned have a timeout.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import LAUNCH_VARIABLES
from test_hostile_training_s32 import invoke, one_error_line

TINY = ["--size", "32", "--crop-size", "32", "--batch-size", "2", "--no-pretrained", "--num-workers", "0",
        "--device", "cpu", "--train-set", "train", "--epochs", "1", "--quiet"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


LOCAL = {"MASTER_ADDR": "127.0.0.1"}
BROKEN_LAUNCHES = [
    ({"RANK": "1"}, "RANK=1 without WORLD_SIZE"),
    ({"WORLD_SIZE": "0"}, "WORLD_SIZE=0: "),
    ({"WORLD_SIZE": "-1", "RANK": "0"}, "WORLD_SIZE=-1: "),
    ({"WORLD_SIZE": "2", **LOCAL, "MASTER_PORT": "29500"}, "WORLD_SIZE=2 without RANK"),
    ({"WORLD_SIZE": "2", "RANK": "2", **LOCAL, "MASTER_PORT": "29500"}, "RANK=2 is outside WORLD_SIZE=2"),
    ({"WORLD_SIZE": "2", "RANK": "-1", **LOCAL, "MASTER_PORT": "29500"}, "RANK=-1 is outside WORLD_SIZE=2"),
    ({"WORLD_SIZE": "2", "RANK": "0"}, "WORLD_SIZE=2 needs MASTER_ADDR and MASTER_PORT"),
    ({"WORLD_SIZE": "2", "RANK": "0", **LOCAL}, "WORLD_SIZE=2 needs MASTER_PORT"),
    ({"WORLD_SIZE": "2", "RANK": "0", **LOCAL, "MASTER_PORT": "abc"}, "MASTER_PORT='abc': not a port"),
    ({"WORLD_SIZE": "2", "RANK": "0", **LOCAL, "MASTER_PORT": "70000"}, "MASTER_PORT='70000': not a port"),
    (
        {
            "WORLD_SIZE": "2",
            "RANK": "0",
            **LOCAL,
            "MASTER_PORT": "29500",
            "LOCAL_RANK": "2",
            "LOCAL_WORLD_SIZE": "2",
        },
        "LOCAL_RANK=2 is outside LOCAL_WORLD_SIZE=2",
    ),
    (
        {"WORLD_SIZE": "2", "RANK": "1", **LOCAL, "MASTER_PORT": "29500", "LOCAL_RANK": "x"},
        "LOCAL_RANK='x': not a whole number",
    ),
]


@pytest.mark.parametrize(("variables", "expected"), BROKEN_LAUNCHES, ids=lambda v: str(v)[:60])
def test_launcher_variables_set_wrong_or_in_part_are_one_line_before_any_work(
    voc_root, tmp_path, launch_env, variables, expected
):
    launch_env(**variables)
    run = tmp_path / "run"
    line = one_error_line(invoke("train", "--data", voc_root, "--out", run, *TINY))
    assert line.startswith(f"Error: {expected}"), line
    assert not run.exists()


def test_a_launcher_variable_problem_stops_lr_find_as_well(voc_root, tmp_path, launch_env):
    launch_env(RANK="3")
    line = one_error_line(invoke("lr-find", "--data", voc_root, "--out", tmp_path / "lr", *TINY[:-3]))
    assert line.startswith("Error: RANK=3 without WORLD_SIZE"), line
    assert not (tmp_path / "lr").exists()


def test_a_master_port_already_taken_is_one_line(voc_root, tmp_path, launch_env):
    """Rank 0 opens the rendezvous on MASTER_PORT: a port another program holds was
    torch.distributed's DistNetworkError traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        launch_env(WORLD_SIZE="2", RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        run = tmp_path / "run"
        line = one_error_line(invoke("train", "--data", voc_root, "--out", run, *TINY))
    assert line.startswith(f"Error: cannot join the launcher's 2 processes at 127.0.0.1:{port} "), line
    assert "address already in use" in line
    assert not run.exists()


def test_a_master_addr_that_does_not_resolve_is_one_line_not_a_half_hour_wait(voc_root, tmp_path):
    """torch retries an unresolvable MASTER_ADDR until its 30-minute timeout: a subprocess, so a
    regression fails the test after a minute instead of hanging it."""
    env = {name: value for name, value in os.environ.items() if name not in LAUNCH_VARIABLES}
    env.update(WORLD_SIZE="2", RANK="1", MASTER_ADDR="nosuch.invalid", MASTER_PORT=str(free_port()),
               OMP_NUM_THREADS="1")  # fmt: skip
    run = tmp_path / "run"
    command = [sys.executable, "-m", "fastseg", "train", "--data", str(voc_root), "--out", str(run), *TINY]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        f"Error: MASTER_ADDR='nosuch.invalid': cannot be resolved ({socket_error('nosuch.invalid')})"
    ]
    assert not run.exists()


def socket_error(host: str) -> str:
    try:
        socket.getaddrinfo(host, None)
    except OSError as error:
        return error.strerror or str(error)
    raise AssertionError(f"{host} resolved")


def test_a_local_rank_beyond_the_gpus_is_one_line(launch_env, monkeypatch):
    """LOCAL_RANK=7 on a machine of one GPU was torch.cuda.set_device's 'invalid device ordinal'
    traceback (CUDA faked here: only the count matters)."""
    import torch

    from fastseg.errors import FastsegError
    from fastseg.launch.processes import launched

    launch_env(WORLD_SIZE="8", RANK="7", LOCAL_RANK="7", MASTER_ADDR="127.0.0.1", MASTER_PORT="29500")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: pytest.fail("set_device was called"))
    refused = pytest.raises(FastsegError, match=r"^LOCAL_RANK=7: this machine has 1 CUDA device \(0\); ")
    with refused, launched("cuda"):
        pytest.fail("launched")


@pytest.mark.parametrize("name", ["meta", "xla", "hpu", "mps:0", "cpu:1", "cuda:x", "cuda:-1", "cuda:\u0663"])
def test_a_device_torch_knows_but_fastseg_does_not_run_on_is_one_line(voc_root, tmp_path, name):
    """`device:` in a --config skips the CLI's choice list: `meta` was 'Cannot copy out of meta
    tensor' after the data check, `hpu` a ModuleNotFoundError, `mps:0` a dispatcher dump."""
    config = tmp_path / "my.yaml"
    config.write_text(f"device: '{name}'\n", encoding="utf-8")
    run = tmp_path / "run"
    line = one_error_line(invoke("train", "--data", voc_root, "--out", run, "--config", config, *TINY[:-9],
                                 "--epochs", "1", "--train-set", "train", "--quiet"))  # fmt: skip
    assert line == f"Error: --device {name}: unknown device; choose auto, cpu, cuda, mps or cuda:N"
    assert not run.exists()


def test_a_cuda_index_beyond_the_gpus_is_one_line(monkeypatch):
    import torch

    from fastseg.errors import FastsegError
    from fastseg.launch.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(FastsegError, match=r"^--device cuda:2: this machine has 2 CUDA devices \(0 to 1\)$"):
        resolve_device("cuda:2")


# --- experiment trackers -------------------------------------------------------------------------

OFFLINE = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "MLFLOW_EXPERIMENT_NAME": "tests"}


@pytest.fixture
def offline_trackers(tmp_path, monkeypatch):
    """MLflow and W&B kept on the disk under `tmp_path`, and nothing leaving the machine."""
    home = tmp_path / "trackers"
    home.mkdir()
    for name, value in OFFLINE.items():
        monkeypatch.setenv(name, value)
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(name, str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    monkeypatch.chdir(home)
    return home


@pytest.mark.parametrize("source", ["flags", "config"])
def test_a_tracker_named_twice_is_one_line_before_any_work(voc_root, tmp_path, source, offline_trackers):
    """`--log mlflow --log mlflow` was MLflow's 'Run ... is already active' traceback after the
    data check; `tensorboard` twice wrote every event twice."""
    run = tmp_path / "run"
    if source == "flags":
        given = ["--log", "mlflow", "--log", "tensorboard", "--log", "mlflow"]
    else:
        (tmp_path / "my.yaml").write_text("trackers: [mlflow, tensorboard, mlflow]\n", encoding="utf-8")
        given = ["--config", tmp_path / "my.yaml"]
    line = one_error_line(invoke("train", "--data", voc_root, "--out", run, *TINY, *given))
    assert line.endswith("--log mlflow is given twice: each tracker logs a run once"), line
    assert not run.exists()


def test_a_run_folder_name_that_is_not_utf8_reaches_mlflow_escaped(tmp_path, offline_trackers):
    """A folder named with a byte that is not UTF-8 (a name from another system's file names) was
    MLflow's UnicodeEncodeError traceback after the data check: its name and config now reach
    it as `errors.shown` writes them. (Only the tracker is exercised: `fastseg train`'s closing
    'model: PATH' line has the same problem, see the report.)"""
    import mlflow

    from fastseg.runs.folder import RunFolder
    from fastseg.training.config import TrainConfig
    from fastseg.training.reporting import RunReporter

    run = RunFolder(tmp_path / os.fsdecode(b"run\xff<b>&x"))
    run.create()
    config = TrainConfig(data="unused", out=str(run.path), trackers=("mlflow",))
    with RunReporter(run, config, "valid_miou", None, echo=None, capture_prints=False, main=True) as reporter:
        reporter.status = "FINISHED"
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    (logged,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert logged.info.run_name == "run\\xff<b>&x" and logged.info.status == "FINISHED"
    assert logged.data.params["out"].endswith("/run\\xff<b>&x")


def test_wandb_under_a_folder_name_that_is_not_utf8_is_one_line(voc_root, tmp_path, offline_trackers):
    """W&B writes its folder's path into its own logs and records: a UnicodeEncodeError
    traceback (after two logging-error dumps). No escape keeps its files where they belong, so
    it is one line, before any epoch, and no run is left."""
    run = tmp_path / os.fsdecode(b"run\xff")
    line = one_error_line(invoke("train", "--data", voc_root, "--out", run, *TINY, "--log", "wandb"))
    assert line == (f"Error: --log wandb: W&B cannot keep its files under {tmp_path.resolve()}/run\\xff, "
                    "a name that is not UTF-8; choose another --out")  # fmt: skip
    assert not run.exists()


def test_a_tracker_that_cannot_start_is_one_line_and_leaves_no_run(voc_root, tmp_path, offline_trackers,
                                                                   monkeypatch):  # fmt: skip
    """A tracking store that refuses the connection, at the start: nothing has been spent yet,
    so the run stops in one line naming the tracker rather than training unlogged."""
    import mlflow

    def refused(*args, **kwargs):
        raise ConnectionError("tracking server refused the connection\nsecond line")

    monkeypatch.setattr(mlflow, "start_run", refused)
    run = tmp_path / "run"
    line = one_error_line(invoke("train", "--data", voc_root, "--out", run, *TINY, "--log", "mlflow"))
    assert line == ("Error: --log mlflow: could not start logging (ConnectionError: tracking server "
                    "refused the connection)")  # fmt: skip
    assert not run.exists()


@pytest.mark.slow
def test_a_tracker_that_fails_mid_run_is_dropped_and_training_goes_on(voc_root, tmp_path, offline_trackers,
                                                                     monkeypatch):  # fmt: skip
    """A logger is not worth a training run: MLflow's server gone at epoch 0 was a traceback that
    ended the run. Now that tracker is dropped, said once in train.log, and the others (and
    history.csv) keep every epoch; the run finishes and exits 0."""
    import mlflow

    calls = []

    def server_gone(*args, **kwargs):
        calls.append(args)
        raise ConnectionError("server gone")

    monkeypatch.setattr(mlflow, "log_metrics", server_gone)
    monkeypatch.setattr(mlflow, "log_artifact", lambda *a, **k: pytest.fail("a dropped tracker was fed"))
    run = tmp_path / "run"
    result = invoke("train", "--data", voc_root, "--out", run, *TINY[:-3], "--epochs", "2",
                    "--log", "mlflow", "--log", "tensorboard")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(calls) == 1  # dropped after its first failure, not called every epoch
    assert (run / "model.pth").is_file()
    log = (run / "train.log").read_text(encoding="utf-8").splitlines()
    dropped = [line for line in log if line.startswith("mlflow:")]
    assert dropped == ["mlflow: failed at epoch 0 (ConnectionError: server gone); training goes on "
                       "without it (train.log and history.csv have every epoch)"]  # fmt: skip
    assert dropped[0] in result.output
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert len(events.Scalars("valid_miou")) == 2  # the other tracker kept logging
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    (logged,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert logged.info.status == "FAILED"  # closed, and marked as the tracker run that broke


# --- fastseg lr-find ------------------------------------------------------------------------------

LR_FIND = ["--size", "32", "--crop-size", "32", "--batch-size", "4", "--no-pretrained", "--num-workers", "0",
           "--device", "cpu", "--train-set", "train", "--quiet"]  # fmt: skip


def test_lr_find_iterations_beyond_any_sweep_are_refused(voc_root, tmp_path):
    """--iterations 10**26 swept the rate so slowly that it never diverged: an lr-find that ran
    until it was killed, epoch after epoch."""
    from fastseg.errors import FastsegError
    from fastseg.training.config import TrainConfig
    from fastseg.training.lr_find import MAX_ITERATIONS, find_learning_rate

    result = invoke("lr-find", "--data", voc_root, "--out", tmp_path / "lr", *LR_FIND,
                    "--iterations", 10**26)  # fmt: skip
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{10**26} is not in the range 20<=x<={MAX_ITERATIONS}" in result.output
    with pytest.raises(
        FastsegError, match=f"^--iterations 100001: the finder takes at most {MAX_ITERATIONS}"
    ):
        find_learning_rate(TrainConfig(data=str(voc_root)), iterations=100_001)
    assert not (tmp_path / "lr").exists()


def test_lr_find_with_a_loss_that_is_nan_from_the_first_batch_says_so(voc_root, tmp_path, monkeypatch):
    """A loss that is NaN from the first batch stops fastai's sweep at once: the line told to
    'try more --iterations', which can never help."""
    import fastseg.training.lr_find as lr_find

    real = lr_find.make_learner

    def nan_loss_learner(*args, **kwargs):
        learn = real(*args, **kwargs)
        loss = learn.loss_func
        learn.loss_func = lambda output, target: loss(output, target) * float("nan")
        return learn

    monkeypatch.setattr(lr_find, "make_learner", nan_loss_learner)
    out = tmp_path / "lr"
    line = one_error_line(invoke("lr-find", "--data", voc_root, "--out", out, *LR_FIND, "--iterations", 20))
    assert line == ("Error: the learning-rate finder found no suggestion: the loss was not a number (NaN "
                    "or infinite) from the first batch; check the data and --loss")  # fmt: skip
    assert not out.exists()


def test_lr_find_with_a_forward_that_fails_keeps_its_error_not_nan(voc_root, monkeypatch):
    """A bug at the first forward (a shape mismatch) records no loss at all: it was told as 'the
    loss was not a number ... from the first batch', its own text lost."""
    import fastseg.training.lr_find as lr_find
    from fastseg.training.config import TrainConfig

    real = lr_find.make_learner

    def broken(*args, **kwargs):
        learn = real(*args, **kwargs)

        def forward(*inputs):
            raise RuntimeError("shape mismatch: 3 channels expected, got 4")

        learn.model.forward = forward
        return learn

    monkeypatch.setattr(lr_find, "make_learner", broken)
    config = TrainConfig(data=str(voc_root), size=32, crop_size=32, batch_size=4, pretrained=False,
                         num_workers=0, device="cpu", train_set="train")  # fmt: skip
    with pytest.raises(Exception, match="shape mismatch: 3 channels expected, got 4") as raised:
        lr_find.find_learning_rate(config, iterations=20)
    assert "not a number" not in str(raised.value)


def test_two_lr_finds_into_one_folder_the_second_is_refused_at_once(voc_root, tmp_path):
    """Two lr-finds into one --out both swept for minutes, then the second was refused ('an
    earlier lr-find's plot') and its result lost, or, writing at the same moment, left one's
    plot beside the other's sweep. The first holds the folder (the kernel's lock on a file in the folder,
    released however it ends, removed at the end); the second is one line before its sweep."""
    from fastseg.folder_lock import LOCK, holding

    out = tmp_path / "lr"
    with holding(out, "lr-find", "hint"):
        line = one_error_line(invoke("lr-find", "--data", voc_root, "--out", out, *LR_FIND))
        assert line == (f"Error: {out}: another fastseg lr-find (process {os.getpid()}) is using this "
                        "folder; wait for it to end or choose another --out")  # fmt: skip
        assert list(out.iterdir()) == [out / LOCK]
    assert not out.exists()  # made for the lock alone: removed again


def test_a_refused_lr_find_leaves_the_folder_another_one_holds(tmp_path, monkeypatch):
    """Two lr-finds that both saw --out missing: the second, refused by the first's lock, removed
    the (still empty) folder the first was sweeping into. Only a folder this lr-find made and
    held is removed."""
    from contextlib import ExitStack

    from fastseg.errors import FastsegError
    from fastseg.folder_lock import LOCK, holding

    out = tmp_path / "lr"
    real_open, first, started = os.open, ExitStack(), []

    def the_first_takes_it_meanwhile(path, *args, **kwargs):
        if Path(path) == out / LOCK and not started:  # between the second's mkdir and its lock
            started.append(True)
            first.enter_context(holding(out, "lr-find", "hint"))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", the_first_takes_it_meanwhile)
    with first:
        refused = pytest.raises(FastsegError, match=r"another fastseg lr-find \(process \d+\) is using")
        with refused, holding(out, "lr-find", "hint"):
            pass
        assert out.is_dir()  # the first still holds it
        monkeypatch.undo()


def test_a_failed_lr_find_leaves_no_folder_it_made(voc_copy, tmp_path):
    (voc_copy / "VOCdevkit/VOC2012/SegmentationClass/2007_000001.png").write_bytes(b"not a png")
    out = tmp_path / "new" / "lr"
    result = invoke("lr-find", "--data", voc_copy, "--out", out, *LR_FIND)
    assert result.exit_code == 1, result.output
    assert not (tmp_path / "new").exists()  # the folders made for the lock are removed again


# --- processes under torchrun, killed -------------------------------------------------------------


def torchrun_training(voc_root, run, epochs: int) -> subprocess.Popen:
    """`torchrun --nproc_per_node 2 fastseg train` on the CPU, in a session of its own."""
    env = {name: value for name, value in os.environ.items() if name not in LAUNCH_VARIABLES}
    env["OMP_NUM_THREADS"] = "1"
    torchrun = str(Path(sys.executable).parent / "torchrun")
    command = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "fastseg", "train", "--data",
               str(voc_root), "--out", str(run), *TINY[:-3], "--epochs", str(epochs), "--quiet"]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip


def children(pid: int) -> list[int]:
    found = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(line) for line in found.stdout.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = (
        Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if Path(f"/proc/{pid}").exists()
        else "X"
    )
    return state not in ("Z", "X")


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["rank 1", "launcher"])
def test_a_killed_rank_or_launcher_ends_every_process(voc_root, tmp_path, victim):
    """kill -9 of one rank mid-run: torchrun ends the other (held up). kill -9 of torchrun itself
    left both workers training on, orphans holding the run folder's lock (and on a GPU machine,
    the GPUs): each worker now asks the kernel for SIGTERM when its launcher dies."""
    run = tmp_path / "run"
    launcher = torchrun_training(voc_root, run, epochs=300)
    workers: list[int] = []
    try:
        assert wait_until(lambda: (run / "last.json").is_file(), 120), launcher.stderr.read()[-2000:]
        workers = children(launcher.pid)
        assert len(workers) == 2
        os.kill(workers[1] if victim == "rank 1" else launcher.pid, 9)
        assert wait_until(lambda: not any(alive(pid) for pid in workers), 30), "a worker outlived the kill"
        assert launcher.wait(30) != 0
    finally:
        for pid in [*workers, launcher.pid]:
            if alive(pid):
                os.kill(pid, 9)
        launcher.communicate(timeout=30)
    history = (run / "history.csv").read_text().splitlines()
    assert 2 <= len(history) < 301  # stopped mid-run, every row whole
    assert all(line.count(",") == history[0].count(",") for line in history)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize(
    ("marker", "asked"),
    [(None, False), ("TORCHELASTIC_RUN_ID", True), ("ACCELERATE_MIXED_PRECISION", True)],
)
def test_only_a_launcher_process_is_ended_with_its_parent(monkeypatch, launch_env, marker, asked):
    """The death signal was asked for whatever set WORLD_SIZE > 1: a rank started by hand under
    nohup then died with its shell. Only torchrun's (TORCHELASTIC_RUN_ID, also under accelerate's
    multi-GPU launch) and accelerate launch's own (ACCELERATE_MIXED_PRECISION) processes ask."""
    import ctypes

    from fastseg.launch import processes

    calls = []

    class Libc:
        def prctl(self, *arguments):
            calls.append(arguments)

    monkeypatch.setattr(ctypes, "CDLL", lambda *args, **kwargs: Libc())
    for name in ("TORCHELASTIC_RUN_ID", "ACCELERATE_MIXED_PRECISION"):
        monkeypatch.delenv(name, raising=False)
    launch_env(WORLD_SIZE="2", RANK="1")
    if marker:
        monkeypatch.setenv(marker, "x")
    processes.end_with_launcher()
    assert calls == ([(1, 15, 0, 0, 0)] if asked else [])


def test_cores_a_launcher_pinned_are_this_process_own_not_shared_again(monkeypatch):
    """accelerate --enable_cpu_affinity, SLURM --cpus-per-task or numactl give each process its own
    cores: its affinity is already its share, and dividing it by LOCAL_WORLD_SIZE again halved
    --num-workers' limit (2 processes of 4 cores on 8: 8 a process, not 16)."""
    from fastseg.errors import OptionError
    from fastseg.launch import device

    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # a container's host: not what is compared
    launcher = set(range(8))  # the cores the launcher (this process's parent) may use
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: launcher if pid else {0, 1, 2, 3})  # pinned
    assert device.loader_workers(16) == 16
    with pytest.raises(OptionError, match=r"at most 16 here \(4 a core, 4 cores\)"):
        device.loader_workers(17)
    assert (device.default_num_workers(), device.cores_per_process()) == (3, 4)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))  # the launcher's cores: shared
    assert device.loader_workers(16) == 16
    with pytest.raises(OptionError, match=r"at most 16 a process here \(4 a core, 8 cores, 2 processes\)"):
        device.loader_workers(17)
    assert (device.default_num_workers(), device.cores_per_process()) == (3, 4)


def test_loader_workers_are_shared_between_the_processes_of_a_machine(voc_root, tmp_path, launch_env,
                                                                      monkeypatch):  # fmt: skip
    """--num-workers is per process: under torchrun with 2 processes on 2 cores, 8 each was 16
    forked workers, twice the 4 a core a single process may have."""
    from fastseg.launch import device

    monkeypatch.setattr(device, "available_cores", lambda: 2)
    launch_env(LOCAL_WORLD_SIZE="2")  # what counts; a full launch would wait for its peer here
    assert device.loader_workers(4) == 4
    run = tmp_path / "run"
    result = invoke("train", "--data", voc_root, "--out", run, *TINY, "--num-workers", "5")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.output.strip().splitlines()[-1] == (
        "Error: --num-workers 5: at most 4 a process here (4 a core, 2 cores, 2 processes); each worker "
        "is a process of its own"
    )
    assert not run.exists()
