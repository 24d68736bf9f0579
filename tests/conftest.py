"""Shared fixtures: a tiny generated VOC 2012 tree, made once per session, and a disk that fills up;
and the cores shared between `make test`'s workers (pytest-xdist's `-n auto`)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

MAX_WORKERS = 4  # each worker holds torch, its models and the trainings it starts


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto`: one worker per core this process may use, at most `MAX_WORKERS`, unless
    PYTEST_XDIST_AUTO_NUM_WORKERS says otherwise (None: xdist reads it). The suite keeps about
    1.4 of 2 cores busy alone (process starts, waits on subprocesses and servers); two workers
    took it from 18-22 min to about 12 on 2 cores."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    return max(1, min(cores(), MAX_WORKERS))


def share_the_cores() -> None:
    """Each worker's torch (and the processes its tests start) takes its share of the cores, set
    before torch is imported: two workers with two threads each on two cores would spin on each
    other's cores (OpenMP)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, str(max(1, cores() // workers)))


share_the_cores()

from fastseg.data.demo_voc import make_demo_voc  # noqa: E402 - after the thread count is set


@pytest.fixture(scope="session")
def voc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding `VOCdevkit/VOC2012`: 16 train and 12 val images, 32-64 px."""
    root = tmp_path_factory.mktemp("voc")
    make_demo_voc(root, n_train=16, n_val=12, seed=1, min_size=32, max_size=64)
    return root


@pytest.fixture
def voc_copy(voc_root: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny dataset, for tests that damage it."""
    import shutil

    target = tmp_path / "data"
    shutil.copytree(voc_root, target)
    return target


@pytest.fixture
def fill_disk_at(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Callable[[], None]]:
    """`free = fill_disk_at(name, when=1)`: from the `when`-th atomic write of a file called `name`
    (of any file: `None`) on, the disk is full, and `free()` gives the space back.

    The write fails where every fastseg writer passes, `fastseg.atomic`'s rename into place, with
    ENOSPC as write(2) reports it: no file name, so the test sees whether `fastseg.atomic` names
    the file."""
    import fastseg.atomic

    real_replace = fastseg.atomic.os.replace

    def fill(name: str | None, when: int = 1) -> Callable[[], None]:
        calls = []

        def replace(source: str | Path, target: str | Path) -> None:
            if name is None or Path(target).name == name:
                calls.append(target)
                if len(calls) >= when:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real_replace(source, target)

        monkeypatch.setattr(fastseg.atomic.os, "replace", replace)
        return lambda: monkeypatch.setattr(fastseg.atomic.os, "replace", real_replace)

    return fill


class StillRunning(BaseException):
    """Not an `Exception`: no `except Exception` on the way (CliRunner's, a fenced callback's) can
    take a hang for a handled error."""


@pytest.fixture
def alarm():
    """Fail instead of hanging: a test still running after 60 s raises `StillRunning` where it
    is (reading a FIFO with no writer blocked in open() forever; an accepted option value can ask
    for endless work)."""
    import signal

    def hung(signum, frame):
        raise StillRunning("still running after 60 s: blocked, or endless work")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def launch_env(monkeypatch):
    """`launch_env(RANK="1", ...)`: exactly these launcher variables set, none of the others."""

    def set_variables(**values: str) -> None:
        for name in LAUNCH_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_variables
