"""Writing a file so that a crash at any moment leaves it whole or absent, never half-written.

Every file fastseg writes (masks, overlays, CSVs, JSON, figures, checkpoints, model files) goes
through :func:`atomic_path`: the content goes to a hidden temporary name in the same folder, is
flushed to disk, and is renamed over the target in one step (`os.replace` is atomic on POSIX and
Windows within a file system). A reader therefore sees the old file or the new one.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: Path | str, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write `path`'s content to; on success it replaces `path`.

    `durable=True` fsyncs the file before the rename and the folder after it, so a power cut
    cannot leave an empty file under the final name (checkpoints: hours of work); outputs that a
    rerun recreates skip the two syncs. On any error the temporary file is removed and `path`
    keeps its previous content.
    """
    path = Path(path)
    temporary = path.with_name(f".{temporary_key(path.name)}.{os.getpid()}.tmp")
    try:
        yield temporary
        if durable:
            _fsync(temporary)
        os.replace(temporary, path)
        if durable:
            _fsync_folder(path.parent)
    except OSError as error:
        if error.errno in DISK_FULL and not error.filename:  # write() names no file: name the target
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    except RuntimeError as error:
        # torch.save's zip writer reports a full disk as "unexpected pos N vs M", no errno
        if disk_full(path.parent):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from error
        raise
    finally:
        temporary.unlink(missing_ok=True)  # still there only if writing failed


NAME_MAX = 255  # bytes in one file name: ext4, XFS, Btrfs, APFS, NTFS (in UTF-16 units, more room)
PID_DIGITS = 10  # room for any process id (Linux's largest is 4194304)


def sibling_key(name: str, reserved: int) -> str:
    """`name` as it stands inside a temporary sibling's name that adds `reserved` bytes around it
    (`.NAME.PID.tmp`): `name` itself when that fits in `NAME_MAX` bytes, else its start and a
    digest of the whole name (`.STAR~1a2b3c4d5e.PID.tmp`), so a 250-byte output is still written
    (its temporary name was past the limit: ENAMETOOLONG) and two long names that begin alike
    never share a temporary. The key depends on `name` alone, so a cleaner finds it again."""
    encoded = os.fsencode(name)
    if len(encoded) + reserved <= NAME_MAX:
        return name
    import hashlib

    digest = "~" + hashlib.sha256(encoded).hexdigest()[:12]
    start = name
    while start and len(os.fsencode(start)) + len(digest) + reserved > NAME_MAX:
        start = start[:-1]  # by characters: a UTF-8 name is never cut inside a character
    return start + digest


def temporary_key(name: str) -> str:
    """`name` as `atomic_path`'s temporary for it holds it (`.KEY.PID.tmp`), which is how a
    cleaner tells a file's own temporaries from any other hidden file of the folder."""
    # `.` + `.` + `.tmp` around the name and the process id: 6 bytes ('..tmp' left one out, hidden
    # by the id's slack: 10 digits kept, 7 at most on Linux)
    return sibling_key(name, len("...tmp") + PID_DIGITS)


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # the machine, not the program: a full disk or quota
FULL_BELOW = 1 << 20  # bytes free on the file system below which a failed write is the disk's fault


def disk_full(folder: Path) -> bool:
    """Whether the file system of `folder` has (next to) no space left for this user."""
    try:
        return shutil.disk_usage(folder).free < FULL_BELOW
    except OSError:
        return False


def write_text(path: Path | str, text: str, durable: bool = False) -> Path:
    with atomic_path(path, durable) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: Path | str, values: Any, durable: bool = False) -> Path:
    """JSON that other tools read: NaN and infinities become `null` (Python's `json` would write
    `NaN`/`-Infinity`, which strict parsers refuse)."""
    return write_text(path, json.dumps(_finite(values), indent=1), durable)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _fsync(path: Path) -> None:
    with path.open("rb+") as file:
        os.fsync(file.fileno())


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; not possible (nor needed) on Windows."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems refuse fsync on folders; the rename is still atomic
    finally:
        os.close(descriptor)


TEMPORARY = re.compile(r"^\..+\.(\d+)\.tmp$")  # what `atomic_path` writes before its rename


def remove_stale_temporaries(folder: Path | str, names: Iterable[str] | None = None) -> list[Path]:
    """Temporary files in `folder` left by a killed process (its rename never came): whole files
    are always under their real names, so these are only ever incomplete copies. Files of a
    process still alive (this one, or another fastseg writing there now) are left, and so are
    folders of that shape (a report or an import built beside its place), which their own
    writers clear: one may hold an earlier report or import moved aside, to be put back.

    `names`: only the temporaries of files of those names. A writer into a folder that is not
    fastseg's alone (export's `--out ~/model.onnx`, predict's `--out`) gives the files it writes:
    every hidden `.NAME.NUMBER.tmp` there was removed, another program's half-written file or a
    user's own note (on a shared disk, a process alive on another machine looks dead here)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    keys = None if names is None else {temporary_key(name) for name in names}
    matches = [(entry, TEMPORARY.match(entry.name)) for entry in folder.iterdir()]
    files = [(entry, match) for entry, match in matches if match and not _real_folder(entry)]
    if keys is not None:  # `.KEY.PID.tmp`: the key is what lies between the dot and `.PID.tmp`
        files = [(entry, match) for entry, match in files if entry.name[1 : match.start(1) - 1] in keys]
    stale = [entry for entry, match in files if left_by_dead_process(entry, int(match.group(1)))]
    for entry in stale:
        entry.unlink(missing_ok=True)
    return stale


WALK_DEPTH = 64  # folders below the one asked: a predict's masks mirror its inputs' tree


def live_writers(folder: Path | str) -> list[tuple[int, Path]]:
    """(process id, temporary) of each live process writing into `folder` or a folder inside it
    (up to `WALK_DEPTH` below) now, by the temporaries `atomic_path` names after it (a predict
    holds its log's for its whole run): a folder to be moved or replaced whole (a report's) would
    take their unfinished files with it. Only for refusing, never for removing, so a process that
    started after the file last changed counts as not its writer (`_written_since_start`): a
    stray `.notes.1.tmp` under a container's process 1, or a dead predict's under a reused id,
    refused the report for good. Walked with a stack: `os.walk` recursed, a RecursionError for a
    tree 1,100 folders deep."""
    found = []
    stack = [(Path(folder), 0)]
    while stack:
        parent, depth = stack.pop()
        try:
            entries = list(os.scandir(parent))
        except OSError:  # vanished or unreadable meanwhile: nothing of a writer's can be seen there
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if depth < WALK_DEPTH:
                    stack.append((Path(entry.path), depth + 1))
                continue
            match = TEMPORARY.match(entry.name)
            if match and _written_since_start(Path(entry.path), int(match.group(1))):
                found.append((int(match.group(1)), Path(entry.path)))
    return sorted(found)


def _written_since_start(path: Path, pid: int) -> bool:
    """Whether process `pid` may be writing `path` now: it is alive and, where /proc says when it
    started, started before the file last changed."""
    if left_by_dead_process(path, pid):
        return False
    if pid == os.getpid():
        return True
    started = _start_time(pid)
    try:
        changed = path.lstat().st_ctime
    except OSError:  # renamed into place meanwhile: that writer is done with it
        return False
    return started is None or changed >= started - START_SLACK


def _real_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OverflowError:  # not a process id at all
        return False
    return True


START_SLACK = 2.0  # seconds: /proc/stat's boot time is whole seconds, a start time so much less sure


def left_by_dead_process(path: Path, pid: int) -> bool:
    """Whether `path`, a temporary named after process `pid`, was left by a process now gone: none
    has that id, or the id is this process's and `path` last changed before it started (Linux).
    Ids are reused: a container's command is process 1, say, every time it runs, so a kill -9'd
    predict's `.a.png.1.tmp` looked like the next run's own and stayed, and a report refused the
    folder as being written into. The change time (`st_ctime`, which a rename sets too) only errs
    towards alive: a writer cannot change a file before it started. Another live process is
    never second-guessed: a wall clock stepped forward while it writes would make its files look
    older than its start, and removing them would break it (this process clears before it writes)."""
    if pid <= 0:  # no process has such an id (`kill(0, 0)` asks this process's group)
        return True
    if pid != os.getpid():
        return not process_alive(pid)
    started = _start_time(pid)
    if started is None:
        return False
    try:
        changed = path.lstat().st_ctime
    except OSError:  # gone meanwhile: nothing to remove
        return False
    return changed < started - START_SLACK


def _start_time(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), from /proc; None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
        boot = next(line for line in Path("/proc/stat").read_text(encoding="utf-8").splitlines()
                    if line.startswith("btime "))  # fmt: skip
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name before ")" may hold spaces
        return int(boot.split()[1]) + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None
