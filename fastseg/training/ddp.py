"""fastai's DistributedDataParallel support, made to run on CPU (gloo) as well as CUDA (nccl).

fastai's `DistributedDL` broadcasts the shuffled order with `.cuda()` tensors ("nccl only works
with cuda tensors"), which fails on a CPU-only machine; these subclasses broadcast on the
backend's own device and change nothing else.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from fastai.distributed import DistributedDL, DistributedTrainer


class BackendDistributedDL(DistributedDL):
    """`DistributedDL` whose index broadcast uses CPU tensors under gloo."""

    def _broadcast(self, values: list[int], rank: int) -> list[int]:
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        tensor = torch.tensor(values, dtype=torch.int64, device=device)
        dist.broadcast(tensor, rank)
        return tensor.cpu().tolist()


class BackendDistributedTrainer(DistributedTrainer):
    """`DistributedTrainer` (DDP + SyncBatchNorm through accelerate) with :class:`BackendDistributedDL`."""

    def _wrap_dl(self, dl):  # noqa: ANN001, ANN202 - fastai's signature
        if isinstance(dl, DistributedDL):
            return dl
        return BackendDistributedDL(dl, device=self.learn.model.device)


def real_items_in_batch(dl, batch_size: int) -> int:  # noqa: ANN001 - a fastai DataLoader
    """How many items of the current batch are real: `DistributedDL` pads the last shard by
    repeating samples so every process gets the same count, and those repeats must not be scored."""
    if not isinstance(dl, DistributedDL) or not hasattr(dl, "n_padded"):
        return batch_size
    per_process = dl.n_padded // dl.world_size
    first = dl.rank * per_process + dl.i - batch_size  # global position of this batch's first item
    return max(0, min(batch_size, dl.n - first))


def attach_ddp(learn, device: torch.device) -> None:  # noqa: ANN001 - a fastai Learner
    """One process per device: DDP, each process on its shard of the data, only rank 0 showing
    progress (fastai's `to_distributed`, backend-neutral).

    BatchNorm is synchronised (SyncBatchNorm) on CUDA; PyTorch refuses SyncBatchNorm on CPU
    modules, so CPU processes (gloo, used for tests) normalise their own batches."""
    from fastai.callback.progress import ProgressCallback
    from fastai.torch_core import rank_distrib

    cuda = device.type == "cuda"
    learn.add_cb(BackendDistributedTrainer(sync_bn=cuda, cpu=not cuda))
    if rank_distrib():
        learn.remove_cb(ProgressCallback)
