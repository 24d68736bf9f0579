"""Out of memory, told apart from a bug: a picture too big for the memory left fails alone (predict
logs it and goes on; serve answers 507), whereas any other error is raised as it is."""

from __future__ import annotations

from fastseg.errors import FastsegError


def out_of_memory(error: BaseException) -> bool:
    """Python's `MemoryError` (numpy, Pillow) or torch's allocator giving up: "DefaultCPUAllocator:
    can't allocate memory" on CPU, `torch.OutOfMemoryError` ("CUDA out of memory") on a GPU."""
    if isinstance(error, FastsegError):  # already the user's one line (it may say "out of memory")
        return False
    text = str(error)
    return isinstance(error, MemoryError) or "can't allocate memory" in text or "out of memory" in text
