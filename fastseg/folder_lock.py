"""One fastseg command at a time in a folder: train's run folder, download's root, lr-find's --out.

The lock is the kernel's (`flock`) on a file `.fastseg.lock` inside the folder, released when the
process ends however it ends, so a killed command never leaves a stale lock (its file stays, and
the next command takes it). A file, not the folder itself: on NFS `flock` is emulated by a
byte-range lock that needs a descriptor open for writing, which a folder cannot be (the folder
locks download and lr-find had raised EBADF there). The file holds the holder's process id and
command, so the second command's line says which process to wait for.

The file is removed while still held when the block ends; a command that opened it just before
(and so would lock a file no longer in the folder, beside a newer one) sees that the name now
leads elsewhere and opens the name again. Where the system has no `flock` (Windows) or the file
system refuses it (ENOLCK, EOPNOTSUPP), the block runs without a lock, as it did before locks
existed.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from fastseg.errors import FastsegError
from fastseg.paths import UNUSABLE_PATH, path_problem

LOCK = ".fastseg.lock"
COMMANDS = ("train", "download", "lr-find")  # what a lock file may name as its holder
NO_LOCKING = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}  # a file system without flock


@contextmanager
def holding(
    folder: Path, command: str, busy_hint: str, error: type[FastsegError] = FastsegError
) -> Iterator[None]:
    """Hold `folder` for `command` (`train`, `download`, `lr-find`) for the block, making it and its
    missing parents first. A second holder gets `error`: "FOLDER: another fastseg COMMAND
    (process PID) is using this folder; BUSY_HINT". Folders this call made are removed again if
    nothing was written into them, by the holder only (one refused leaves the holder's alone)."""
    folder = Path(folder)
    try:  # a name over the file system's limit: one line naming it, not a traceback
        a_file = folder.exists() and not folder.is_dir()
    except UNUSABLE_PATH as failure:
        raise error(f"{folder}: cannot be used ({path_problem(failure)})") from None
    if a_file:
        raise error(f"{folder}: is a file, not a folder; choose another")
    lock = folder / LOCK
    made = _make_folders(folder, error)
    descriptor, state = _taken(lock, made, error)
    if descriptor is None or state == "busy":
        if descriptor is not None:
            os.close(descriptor)
        pid, holder_command = _holder(lock)
        raise _busy(folder, pid, holder_command or command, busy_hint, error)
    try:
        if state == "held":
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"{os.getpid()} {command}\n".encode())
        yield
    finally:  # removed while still held: see the module's docstring
        with suppress(OSError):
            lock.unlink()
        _remove_empty(made)
        os.close(descriptor)  # releases the lock


ATTEMPTS = 3  # a holder ending removes its file: the next attempt opens the one made since


def _taken(lock: Path, made: list[Path], error: type[FastsegError]) -> tuple[int | None, str]:
    """The lock file opened and asked for the lock: its descriptor and "held", "busy" or
    "unsupported". A file the holder removed between the open and the lock is not taken (the name
    leads to another file, which another command may hold): the name is opened again."""
    for _ in range(ATTEMPTS):
        try:  # O_NOFOLLOW: a link planted at the name is refused (ELOOP), never written through
            descriptor = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as failure:
            _remove_empty(made)
            what = "a symbolic link, not fastseg's lock file; remove it" if lock.is_symlink() else (
                f"cannot create fastseg's lock file ({failure.strerror or failure})")  # fmt: skip
            raise error(f"{lock}: {what}") from None
        try:
            state = _lock_exclusively(descriptor)
        except OSError as failure:  # EIO, EBADF: the file system, not another command
            os.close(descriptor)
            if made and made[0] == lock.parent:  # a folder this call made: the file is its own
                with suppress(OSError):
                    lock.unlink()
            _remove_empty(made)
            raise error(f"{lock}: cannot lock it ({failure.strerror or failure})") from None
        if state != "held" or _same_file(descriptor, lock):
            return descriptor, state
        os.close(descriptor)  # the removed file: unlocked, and no longer anyone's
    return None, "busy"  # replaced under it every time: commands starting and ending meanwhile


def _make_folders(folder: Path, error: type[FastsegError]) -> list[Path]:
    """The missing folders down to `folder`, made one by one: innermost first, the ones this call's
    own mkdir made (another command may be making the same ones)."""
    made: list[Path] = []
    try:
        for step in (*reversed(folder.parents), folder):
            if not step.exists():
                try:
                    step.mkdir()
                    made.insert(0, step)
                except FileExistsError:
                    pass
    except OSError as failure:
        _remove_empty(made)
        raise error(f"{folder}: cannot create the folder ({failure.strerror or failure})") from None
    return made


def _remove_empty(made: list[Path]) -> None:
    for step in made:  # innermost first; one holding anything stays, and so do its parents
        try:
            step.rmdir()
        except OSError:
            break


def _lock_exclusively(descriptor: int) -> str:
    """`flock` without waiting: "held", "busy" (another process holds it) or "unsupported" (no
    `fcntl`, or a file system that refuses locks)."""
    try:
        import fcntl
    except ImportError:
        return "unsupported"
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return "busy"
    except OSError as failure:
        if failure.errno in NO_LOCKING:
            return "unsupported"
        raise
    return "held"


def _same_file(descriptor: int, lock: Path) -> bool:
    try:
        here = os.stat(lock, follow_symlinks=False)
    except OSError:
        return False
    opened = os.fstat(descriptor)
    return (here.st_dev, here.st_ino) == (opened.st_dev, opened.st_ino)


def _holder(lock: Path) -> tuple[str, str]:
    """`("process PID", COMMAND)` from the lock file, or `("", "")` when it says nothing readable."""
    try:
        with open(lock, encoding="utf-8", errors="replace") as opened:
            words = opened.read(200).split()
    except OSError:
        return "", ""
    if len(words) < 2 or not words[0].isdigit() or words[1] not in COMMANDS:
        return "", ""
    return f"process {words[0]}", words[1]


def _busy(folder: Path, holder: str, command: str, hint: str, error: type[FastsegError]) -> FastsegError:
    """The line a second command gets; `command` is the holder's where its lock file says it."""
    who = f" ({holder})" if holder else ""
    return error(f"{folder}: another fastseg {command}{who} is using this folder; {hint}")
