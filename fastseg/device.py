"""Choosing the compute device and the mixed-precision type it supports."""

from __future__ import annotations

import os

import torch

from fastseg.errors import FastsegError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then CPU; asking for a missing device is a user error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FastsegError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    if name == "mps" and not (torch.backends.mps.is_available()):
        raise FastsegError("--device mps: Apple MPS is not available on this machine (use --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise FastsegError(f"--device {name}: unknown device; choose {', '.join(DEVICE_CHOICES)}") from None


def cuda_amp_dtype() -> torch.dtype:
    """bf16 where the GPU supports it (Ampere and newer): no loss scaling, no overflow; else fp16."""
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


MAX_WORKERS_PER_PROCESS = 32


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_num_workers(processes_on_machine: int | None = None) -> int:
    """Loader workers per process: this machine's cores shared between its processes (torchrun's
    LOCAL_WORLD_SIZE), less one each for the process itself, at most 32; 0 (load in the main
    process) on a 1-2 core machine, where workers would only compete with it.

    On a GPU box the loaders, not the GPU, bound the fast recipe's speed (decoding a JPEG and
    its mask and cropping them takes milliseconds per image per core), so every spare core works.
    """
    cores = available_cores()
    if cores <= 2:
        return 0
    launched = os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1"))
    processes = processes_on_machine or int(launched)
    return max(0, min(MAX_WORKERS_PER_PROCESS, cores // max(1, processes) - 1))
