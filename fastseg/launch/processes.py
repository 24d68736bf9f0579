"""Multi-process runs started by `torchrun` or `accelerate launch`.

Both launchers describe the process in environment variables (RANK, WORLD_SIZE, LOCAL_RANK);
a plain `fastseg` process has none and is rank 0 of 1, so single-process code paths are untouched.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastseg.launch.device import launcher_number, resolve_device, surely_cpu

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
    (`surely_cpu`) is told so without importing torch."""
    rank, world = rank_and_world()
    if torch_free and world == 1 and surely_cpu(device_name):  # nothing to ask torch
        yield Launch(rank, world, "cpu")
        return
    import torch

    device = resolve_device(device_name)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    with process_group(device):
        yield Launch(rank, world, str(device))


def rank_and_world() -> tuple[int, int]:
    return launcher_number("RANK", 0), launcher_number("WORLD_SIZE", 1)


def local_rank() -> int:
    return launcher_number("LOCAL_RANK", 0)


@contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Join the launcher's process group for the block (gloo on CPU, nccl on CUDA); no-op alone.

    After a block that ended well, every process meets at a barrier before the group is torn
    down: without it the first process out closes its gloo connections while another may still
    be finishing its last collective, which aborts that one at exit (seen, rarely, as
    "terminate called without an active exception" from 2-process CPU runs)."""
    import torch.distributed as dist

    _, world = rank_and_world()
    started = world > 1 and not dist.is_initialized()
    if started:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield
        if started:
            dist.barrier()
    finally:
        if started:
            dist.destroy_process_group()


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
