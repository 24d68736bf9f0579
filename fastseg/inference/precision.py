"""Which autocast type inference runs in. torch is imported inside the functions: the CLI reads
`PRECISIONS` for `--help`, which must not wait for torch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "bf16", "fp16", "fp32")  # `--precision` of predict and report


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # native bf16 dot products


def cpu_supports_bf16(cpuinfo: str | None = None) -> bool:
    """bf16 autocast pays off on CPUs with native bf16 dot products (AVX512-BF16 or AMX); elsewhere
    torch emulates bf16, several times slower than fp32. `cpuinfo`: /proc/cpuinfo's text (read
    when None; a machine without it, e.g. macOS, counts as without native bf16)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    flags = {flag for line in cpuinfo.splitlines() if line.startswith("flags") for flag in line.split()}
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast type for `precision` on `device`; None means plain fp32. `auto`: bf16 on GPUs
    that have it (else fp16) and on CPUs with native bf16; fp32 elsewhere, where bf16 is emulated
    and several times slower."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32" or device.type == "mps":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_supports_bf16() else None
