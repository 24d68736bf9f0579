"""The run folder's lock: one `fastseg train` at a time per folder.

The lock is the kernel's (`flock`), released when the process ends however it ends, so a killed
run never leaves a stale lock. Its own module because it is the one piece of the run folder that
talks to the operating system rather than to a file format.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastseg.errors import FastsegError

LOCK = ".fastseg.lock"  # held by the one process training into the folder


@contextmanager
def hold_lock(folder: Path) -> Iterator[None]:
    """Hold `folder`'s lock for the block: a second `fastseg train` into the same folder is
    refused in one line instead of both writing the same files. A folder made only to hold the
    lock is removed again if the block fails before anything else was written into it."""
    if folder.exists() and not folder.is_dir():
        raise FastsegError(f"{folder}: is a file, not a run folder; choose another --out")
    created = not folder.exists()
    before = set() if created else {entry.name for entry in folder.iterdir()}
    lock = folder / LOCK
    if lock.is_symlink():  # opened through, it truncated the file the link names
        raise FastsegError(f"{lock}: a symbolic link, not fastseg's lock file; remove it")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: a link put there since the check is refused too (ELOOP), never written through
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as error:
        raise FastsegError(f"{folder}: cannot create the run folder ({error.strerror})") from None
    try:
        _lock_exclusively(descriptor, lock)
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(descriptor)  # releases the lock
        after = {entry.name for entry in folder.iterdir()}
        if LOCK not in before and after == before | {LOCK}:  # nothing else written: leave no trace
            lock.unlink()
            if created:
                folder.rmdir()


def _lock_exclusively(descriptor: int, path: Path) -> None:
    """`flock` without waiting. Where it is missing (Windows) no lock is taken."""
    try:
        import fcntl
    except ImportError:
        return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = path.read_text(encoding="utf-8", errors="replace").strip() or "unknown"
        raise FastsegError(
            f"{path.parent}: another fastseg train (process {holder}) is using this run folder; "
            "wait for it to end or choose another --out"
        ) from None
