"""Choosing the compute device, the mixed-precision type it supports, and the loader workers.

torch is imported inside the functions: the CLI reads `DEVICES` for `--help`, which must not
wait for torch.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from fastseg.errors import FastsegError, OptionError
from fastseg.number_style import quantity

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda", "mps")  # `--device` of train, predict and report
MAX_WORKERS_PER_PROCESS = 32
# the most `--num-workers` (and config.json's num_workers) may ask for: 100000 forked until the
# machine hung
MAX_LOADER_WORKERS = 1024
WORKERS_PER_CORE = 4  # decoding is CPU work: more workers than this only share the same cores


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then CPU. Only `DEVICES` and `cuda:N` are devices
    fastseg trains and predicts on: torch also accepts `meta`, `xla`, `hpu`, `mps:0` or `cuda:7` on
    a machine of one GPU, each of which was a traceback once the first tensor moved (a
    `device:` in a --config reaches here without the CLI's choice list). Asking for a missing
    device is a user error."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind, _, index = name.partition(":")
    if name not in DEVICES and not (kind == "cuda" and index.isdigit() and index.isascii()):
        raise FastsegError(f"--device {name}: unknown device; choose {', '.join(DEVICES)} or cuda:N")
    if kind == "cuda" and not torch.cuda.is_available():
        raise FastsegError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    if name == "mps" and not (torch.backends.mps.is_available()):
        raise FastsegError("--device mps: Apple MPS is not available on this machine (use --device cpu)")
    if index and int(index) >= torch.cuda.device_count():
        raise FastsegError(f"--device {name}: {cuda_devices_line()}")
    return torch.device(name)


def cuda_devices_line() -> str:
    """`this machine has 2 CUDA devices (0 to 1)`: what a device index must be below."""
    import torch

    count = torch.cuda.device_count()
    numbers = "none" if count == 0 else "0" if count == 1 else f"0 to {count - 1}"
    return f"this machine has {quantity(count, 'CUDA device')} ({numbers})"


# What a GPU torch could use leaves on Linux: NVIDIA's driver, a Jetson's integrated GPU, WSL2's
# GPU bridge, AMD's ROCm
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/nvhost-ctrl", "/dev/nvmap",
                    "/dev/dxg", "/dev/kfd")  # fmt: skip


def surely_cpu(name: str = "auto") -> bool:
    """Whether `--device NAME` is the CPU without asking torch: `cpu`, or `auto` on a Linux machine
    with none of `GPU_DEVICE_FILES` (CUDA and ROCm cannot run without them) and not on macOS
    (MPS). Otherwise `resolve_device` asks torch. Only `predict` of an ONNX file or a run folder
    takes this answer (`launched(..., torch_free=True)`), to skip importing torch (1.2-1.7 s): a
    GPU it missed would make `auto` run the run's INT8 file on the CPU rather than model.pth on
    that GPU, and say so. Training and a model.pth asked for by name always ask torch."""
    if name == "cpu":
        return True
    return (
        name == "auto"
        and sys.platform.startswith("linux")
        and not any(os.path.exists(path) for path in GPU_DEVICE_FILES)
    )


def cuda_amp_dtype() -> torch.dtype:
    """bf16 where the GPU supports it (Ampere and newer): no loss scaling, no overflow; else fp16."""
    import torch

    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. under a scheduler), else all."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def launcher_number(name: str, default: int) -> int:
    """A whole number a launcher puts in the environment (RANK, WORLD_SIZE, ...), or `default`
    where it is unset; anything else is one line naming the variable."""
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise FastsegError(f"{name}={value!r}: not a whole number (the launcher sets it)") from None


def local_world_size() -> int | None:
    """LOCAL_WORLD_SIZE, the processes torchrun started on this machine (None where unset). A
    launch's WORLD_SIZE bounds it: more on one machine than in the whole launch is a hand-made
    environment gone wrong, which divided the cores (and the loader workers) by a count of
    processes that did not exist."""
    if "LOCAL_WORLD_SIZE" not in os.environ:
        return None
    local, world = launcher_number("LOCAL_WORLD_SIZE", 0), launcher_number("WORLD_SIZE", 0)  # 0: unset
    if world >= 1 and local > world:
        raise FastsegError(f"LOCAL_WORLD_SIZE={local} is more than WORLD_SIZE={world}: a launcher starts at "
                           "most the launch's processes on one machine")  # fmt: skip
    return local


def processes_on_machine() -> int:
    """Processes a launcher started on this machine (torchrun's LOCAL_WORLD_SIZE, else WORLD_SIZE:
    ranks started by hand on one machine); 1 alone."""
    local = local_world_size()
    return max(1, local if local is not None else launcher_number("WORLD_SIZE", 1))


def processes_sharing_cores() -> int:
    """The processes `available_cores()` is shared between: those on this machine, unless this
    process was pinned to fewer cores than its launcher may use, then 1. A launcher that pins
    cores (accelerate --enable_cpu_affinity, SLURM --cpus-per-task) leaves each process an
    affinity that is already its own share, which divided again was half or less. Compared with
    the parent's affinity, not `os.cpu_count()`: in a container limited to some cores
    (`--cpuset-cpus`) every process has fewer cores than the host counts, and they still share
    them."""
    try:
        own, launcher = os.sched_getaffinity(0), os.sched_getaffinity(os.getppid())
    except (AttributeError, OSError):  # no affinity on this system, or the parent is gone
        return processes_on_machine()
    return 1 if own < launcher else processes_on_machine()


def cores_per_process() -> int:
    """This process's share of the machine's cores, at least one."""
    return max(1, available_cores() // processes_sharing_cores())


def default_num_workers(processes: int | None = None) -> int:
    """Loader workers per process: this machine's cores shared between its processes, less one
    each for the process itself, at most 32; 0 (load in the main process) on a 1-2 core machine,
    where workers would only compete with it.

    Decoding a VOC JPEG and its mask and cropping them takes about 8 ms on one core
    (benchmarks/README.md), so a GPU training at ~1,000 images/s needs every spare core loading.
    """
    cores = available_cores()
    if cores <= 2:
        return 0
    return max(0, min(MAX_WORKERS_PER_PROCESS, cores // (processes or processes_sharing_cores()) - 1))


def loader_workers(requested: int | None) -> int:
    """`--num-workers`: a count as given, or -1 / None for :func:`default_num_workers`. More than
    `WORKERS_PER_CORE` a core is refused: each worker is a forked process that soon holds its own
    ~450 MiB, so 100000 on 2 cores ran the machine out of memory (a hostile pass). The cores
    are shared between a launcher's processes on this machine (LOCAL_WORLD_SIZE), unless it
    pinned each to cores of its own (`processes_sharing_cores`)."""
    if requested is None or requested < 0:
        return default_num_workers()
    cores, processes = available_cores(), processes_sharing_cores()
    most = WORKERS_PER_CORE * cores // processes  # --num-workers is per process (2 processes of 8: 16)
    if requested > most:
        each = " a process" if processes > 1 else ""
        shared = f", {processes} processes" if processes > 1 else ""
        raise OptionError(f"--num-workers {requested}: at most {most}{each} here ({WORKERS_PER_CORE} a core, "
                          f"{cores} cores{shared}); each worker is a process of its own")  # fmt: skip
    return requested
