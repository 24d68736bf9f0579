"""Multi-process runs started by `torchrun` or `accelerate launch`.

Both launchers describe the process in environment variables (RANK, WORLD_SIZE, LOCAL_RANK);
a plain `fastseg` process has none and is rank 0 of 1, so single-process code paths are untouched.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastseg.errors import FastsegError
from fastseg.launch.device import (
    cuda_devices_line,
    launcher_number,
    local_world_size,
    resolve_device,
    surely_cpu,
)

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Launch:
    """This process in its launch: rank among `world` processes, and the device it computes on,
    by name (`cpu`, `cuda:1`, `mps`): a plain process on a machine without a GPU knows it is on
    the CPU without importing torch, which `predict` on an ONNX file never needs (issue #24)."""

    rank: int
    world: int
    device_name: str

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes shared files and prints."""
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        import torch

        return torch.device(self.device_name)


@contextmanager
def launched(device_name: str = "auto", torch_free: bool = False) -> Iterator[Launch]:
    """Resolve this process's device (GPU `LOCAL_RANK` under a launcher) and join the launcher's
    process group for the block; a plain process is rank 0 of 1 and joins nothing. With
    `torch_free` (predict of an ONNX model), a plain process that is surely on the CPU
    (`surely_cpu`) is told so without importing torch. The launcher's variables are checked
    first (`rank_and_world`, `local_rank`, `check_rendezvous`): one line naming the variable,
    before any work."""
    rank, world = rank_and_world()
    local = local_rank()
    if world > 1:
        check_rendezvous(world)
        end_with_launcher()
    if torch_free and world == 1 and surely_cpu(device_name):  # nothing to ask torch
        yield Launch(rank, world, "cpu")
        return
    import torch

    device = resolve_device(device_name)
    if device.type == "cuda" and world > 1:
        if local >= torch.cuda.device_count():  # else torch's "invalid device ordinal" traceback
            raise FastsegError(f"LOCAL_RANK={local}: {cuda_devices_line()}; start at most one process "
                               "per device on this machine (torchrun --nproc_per_node)")  # fmt: skip
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    with process_group(device):
        yield Launch(rank, world, str(device))


# Set only in the processes a launcher starts: torchrun's (also under `accelerate launch
# --multi_gpu`, which runs torchrun in its own process) and `accelerate launch`'s other launches
LAUNCHER_MARKERS = ("TORCHELASTIC_RUN_ID", "ACCELERATE_MIXED_PRECISION")


def end_with_launcher() -> None:
    """Under torchrun or accelerate launch (`LAUNCHER_MARKERS`), ask the kernel for SIGTERM when
    the launcher that started this process dies (Linux's PR_SET_PDEATHSIG): torchrun ends its
    other workers when one fails, but a `kill -9` of torchrun itself left its workers training
    on, orphans holding the run folder's lock and the GPUs. Not for ranks started by hand (with
    nohup, their shell exiting would end them). A launcher that died after the first `getppid()`
    but before the request counted ends this process at once (the parent changed); one that died
    earlier is not seen (this process was already an orphan)."""
    if not sys.platform.startswith("linux") or not any(name in os.environ for name in LAUNCHER_MARKERS):
        return
    import ctypes
    import signal

    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no prctl (another libc): nothing to ask
        return
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def rank_and_world() -> tuple[int, int]:
    """RANK and WORLD_SIZE as a launcher sets them (0 of 1 where neither is set), or one line
    naming what is wrong: a launcher sets both, so one without the other, a world below one or a
    rank outside it is a hand-made environment gone wrong (RANK=1 alone made a process that
    trained without writing anything; WORLD_SIZE=0 was a ZeroDivisionError)."""
    rank = launcher_number("RANK", 0)
    if rank != 0 and "WORLD_SIZE" not in os.environ:
        raise FastsegError(f"RANK={rank} without WORLD_SIZE: a launcher (torchrun, accelerate launch) "
                           "sets both; unset RANK to run one process")  # fmt: skip
    world = launcher_number("WORLD_SIZE", 1)
    if world < 1:
        raise FastsegError(f"WORLD_SIZE={world}: a launch has at least 1 process (the launcher sets it)")
    if world > 1 and "RANK" not in os.environ:
        raise FastsegError(f"WORLD_SIZE={world} without RANK: a launcher (torchrun, accelerate launch) "
                           "sets both, one rank for each process")  # fmt: skip
    if not 0 <= rank < world:
        raise FastsegError(f"RANK={rank} is outside WORLD_SIZE={world}: ranks are 0 to {world - 1}")
    return rank, world


def local_rank() -> int:
    """LOCAL_RANK (0 unset): this process's number on its machine, below LOCAL_WORLD_SIZE."""
    local = launcher_number("LOCAL_RANK", 0)
    processes = local_world_size() or 0  # 0: not said
    if local < 0 or (processes and local >= processes):
        raise FastsegError(f"LOCAL_RANK={local} is outside LOCAL_WORLD_SIZE={processes or '(unset)'}: "
                           "a launcher numbers a machine's processes from 0")  # fmt: skip
    return local


def check_rendezvous(world: int) -> None:
    """MASTER_ADDR and MASTER_PORT, where a launch's processes meet (torch's env:// rendezvous),
    set, a port number, and an address that resolves: torch retried an unresolvable address
    for its 30-minute timeout, and took MASTER_PORT=abc as a ValueError traceback."""
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise FastsegError(f"WORLD_SIZE={world} needs {' and '.join(missing)}: where the processes meet "
                           "(torchrun and accelerate launch set them)")  # fmt: skip
    address, port = os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"]
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise FastsegError(f"MASTER_PORT={port!r}: not a port number (1 to 65535)")
    try:
        socket.getaddrinfo(address, int(port), type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise FastsegError(f"MASTER_ADDR={address!r}: cannot be resolved ({reason})") from None


@contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Join the launcher's process group for the block (gloo on CPU, nccl on CUDA); no-op alone.

    After a block that ended well, every process meets at a barrier before the group is torn
    down: without it the first process out closes its gloo connections while another may still
    be finishing its last collective, which aborts that one at exit (seen, rarely, as
    "terminate called without an active exception" from 2-process CPU runs).

    A process whose peer stopped first (its own error, a kill) finds its connections closed in
    its next collective: that is one line saying so (`peers_lost`), the peer's own line says why.
    A block that failed lets the backend's threads finish before the process may exit
    (`let_backend_finish`)."""
    import torch.distributed as dist

    rank, world = rank_and_world()
    started = world > 1 and not dist.is_initialized()
    if started:
        try:
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        except (RuntimeError, ValueError) as error:  # DistNetworkError: MASTER_PORT taken, say
            where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise FastsegError(f"cannot join the launcher's {world} processes at {where} ({first})") from None
    ended_well = False
    try:
        yield
        if started:
            dist.barrier()
        ended_well = True
    except RuntimeError as error:
        if not (started and peers_lost(error)):
            raise
        reason = transport_reason(error)
        lost = f"rank {rank} of {world} lost the other processes of its launch ({reason})"
        raise FastsegError(f"{lost}: another one stopped first; its own output says why") from error
    finally:
        if started:
            dist.destroy_process_group()
            if not ended_well:
                let_backend_finish()


# How gloo words a collective that lost a peer: "[.../gloo/transport/tcp/pair.cc:561] Connection
# closed by peer [ADDRESS]:PORT. This is typically caused by ..." (also "Read error [...]:
# Connection reset by peer", a broken pipe); fastai puts "Exception occured in `Recorder` when
# calling event `after_train`:" on a line before it. Only these words: gloo's other transport
# errors ("enforce fail ... op.preamble.length <= op.nbytes", ranks disagreeing on a collective;
# "Timed out waiting", a rank stalled or a collective missing) may be a bug here, and keep their
# traceback.
GLOO_TRANSPORT = re.compile(
    r"^\s*\[(?!enforce fail)[^\]\n]*gloo/transport/[^\]\n]*\]\s*"
    r"(?P<reason>[^\n]*?(?:by peer|Broken pipe|Connection refused)[^\n]*)",
    re.MULTILINE,
)


def peers_lost(error: BaseException) -> bool:
    """Whether `error` is a collective that found its connection to another process gone (gloo's
    transport, or torch's network error): the consequence of a peer that stopped, not a bug here."""
    import torch.distributed as dist

    return isinstance(error, dist.DistNetworkError) or GLOO_TRANSPORT.search(str(error)) is not None


def transport_reason(error: BaseException) -> str:
    """The reason gloo gives, without its source location and its advice: "Connection closed by
    peer [127.0.0.1]:47018"."""
    found = GLOO_TRANSPORT.search(str(error))
    text = found["reason"] if found else (str(error).strip().splitlines() or [type(error).__name__])[-1]
    return text.split(". ", 1)[0].strip().rstrip(".")


# Long enough for a thread already waiting on the GIL to take it (1 ms sufficed in every run
# measured) with room for a busy machine's scheduler; paid only by a process that failed
BACKEND_FINISH_SECONDS = 0.2


def let_backend_finish() -> None:
    """Give the backend's threads the GIL before this process may exit. Each collective launched
    in a backward (DDP's gradient all_reduce) keeps the thread state of its caller, which holds a
    Python object (backward's context); the gloo thread that ran it drops it afterwards and needs
    the GIL for that. A process that failed goes from its error to the interpreter's exit in a few
    milliseconds, without letting go of the GIL: the thread then asked for it during finalization,
    which ends such a thread inside C++ code that may not be unwound, and the process died by
    SIGABRT ("terminate called without an active exception") after its `Error:` line, about one
    run in three. The group cannot be joined instead: DDP keeps it alive (and its threads with
    it) past `destroy_process_group`. Sleeping lets go of the GIL."""
    time.sleep(BACKEND_FINISH_SECONDS)


def joined_group() -> Any | None:  # noqa: ANN401 - the torch.distributed module
    """`torch.distributed` when this process has joined a process group, else None. Joining one
    needs torch.distributed imported first, so a process that never imported it is alone, and
    stays free of torch (`predict` on an ONNX file)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not (dist.is_available() and dist.is_initialized()):
        return None
    return dist


def barrier() -> None:
    dist = joined_group()
    if dist is not None:
        dist.barrier()


def sum_across_processes(values: list[int]) -> list[int]:
    """Element-wise sum over all processes (the values themselves when alone)."""
    dist = joined_group()
    if dist is None:
        return values
    import torch

    tensor = torch.tensor(values, dtype=torch.int64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def is_distributed() -> bool:
    dist = joined_group()
    return dist is not None and dist.get_world_size() > 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of `tensor` over processes (a copy); the tensor itself when alone. gloo reduces on CPU."""
    if not is_distributed():
        return tensor
    dist = joined_group()
    reduced = tensor.clone() if dist.get_backend() == "nccl" else tensor.cpu().clone()
    dist.all_reduce(reduced)
    return reduced.to(tensor.device)


def gather_objects(value: Any) -> list[Any]:  # noqa: ANN401 - any picklable value
    """Every process's `value`, in rank order (`[value]` when alone); picklable values only."""
    dist = joined_group()
    if dist is None:
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered
