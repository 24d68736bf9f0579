"""A report folder written whole: built beside its place, swapped in only once every file is in it.

`fastseg report` used to write its files one by one into `out`: each file was whole (through
`fastseg.atomic`), but a full disk or a kill midway left the new files beside the earlier
report's, a mix of two reports. Now:

    RUN/.report.PID.tmp/            the new report, built here (PID: the writing process)
    RUN/.report.replaced.PID.tmp/   the earlier report, moved aside while the new one goes in

`building` yields the hidden sibling folder to write into, then puts it in `out`'s place: on
Linux in one step (`renameat2(RENAME_EXCHANGE)` swaps the two folders atomically), elsewhere by
moving the earlier report aside and renaming the new one in. A reader, `fastseg runs` say, sees
the earlier report or the new one, never a mix. Files in the earlier folder that a report does
not write (a user's notes; what `--replace-foreign` allowed in a folder of the user's) move into
the new one: only the report's own files are replaced, as when it wrote into the folder. On any
error, nothing changes in `out` and the temporary folder goes. A process killed with -9 leaves its
temporary folder, which the next report into `out` removes, first putting an earlier report that
was moved aside back in place if nothing took it (or carrying its other files into the new one).

Whether `out` may be replaced at all is `fastseg.outputs.guard`'s answer, asked before the
evaluation and again just before the swap (the folder may have changed in the minutes between).
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fastseg.atomic import PID_DIGITS, TEMPORARY, left_by_dead_process, live_writers, sibling_key
from fastseg.errors import FastsegError
from fastseg.outputs import guard, written_by_fastseg
from fastseg.paths import make_folders, why_not_created

# Every file a report writes (`fastseg.inference.report`): the new report's set replaces the
# earlier one's whole, so a grid the new report does not draw is not left from the earlier one.
REPORT_FILES = frozenset({
    "metrics.json", "per_class.csv", "per_image.csv", "confusion_matrix.csv", "class_iou.png",
    "confusion_matrix.png", "predictions_best.png", "predictions_worst.png", "predictions_random.png",
    "report.html",
})  # fmt: skip
BUILD, REPLACED = "build", "replaced"  # the two kinds of temporary folder
RENAME_EXCHANGE = 2  # linux/fs.h: swap the two paths in one step
AT_FDCWD = -100


def building_folder(out: Path, pid: int | None = None) -> Path:
    """`.OUT.PID.tmp` beside `out`: where process `pid` (this one by default) builds the report."""
    return out.parent / f".{_key(out)}.{os.getpid() if pid is None else pid}.tmp"


def replaced_folder(out: Path, pid: int | None = None) -> Path:
    """`.OUT.replaced.PID.tmp` beside `out`: the earlier report while the new one goes in."""
    return out.parent / f".{_key(out)}.{REPLACED}.{os.getpid() if pid is None else pid}.tmp"


def _key(out: Path) -> str:
    """`out`'s name in its temporary siblings' names: itself, or for a name too long to leave
    room for `.replaced.PID.tmp` within 255 bytes (a 240-byte `--out`), a shorter one that stands
    for it alone (`fastseg.atomic.sibling_key`): the folder was ENAMETOOLONG, a traceback."""
    return sibling_key(out.name, len(f"..{REPLACED}..tmp") + PID_DIGITS)


@dataclass
class Build:
    """The report being built: `folder` to write into; once the block has ended, `replaced` says
    whether it took the place of an earlier fastseg report (known only at the swap: a report
    written there meanwhile, by a second `fastseg report` into the same new folder, counts)."""

    folder: Path
    replaced: bool = False


@contextmanager
def building(out: Path, force: bool = False, option: str = "--replace-foreign") -> Iterator[Build]:
    """Yield a new, empty temporary folder beside `out` to write the report into (`Build.folder`);
    when the block ends without an error, it takes `out`'s place (see the module's docstring). An
    `OSError` from the block naming a file in the temporary folder is raised naming the file in
    `out` instead: the folder the user asked for is the one to read about. `force`, `option`:
    `guard`'s."""
    given, out = Path(out), absolute(out)
    check_place(out)
    remove_stale(out)
    folder, earlier = building_folder(out), None
    build = Build(folder)
    try:
        try:
            if folder.exists() or folder.is_symlink():  # a dead process's of the same id: partial
                _remove(folder)
            make_folders(folder, exist_ok=False)
            yield build
        except OSError as error:
            named = _named_in(error, folder, given)
            if named is error:
                raise
            raise named from error
        was_report = written_by_fastseg(out, "report")
        earlier = install(folder, out, force, option)
        build.replaced = earlier is not None and was_report
        if earlier is not None:
            _carry_over(earlier, out)
            _remove(earlier)
    finally:
        # after the swap the folder holds the earlier report: should moving the user's files
        # over have failed, they are still there, for the next report to move (`remove_stale`)
        if earlier != folder and (folder.exists() or folder.is_symlink()):
            _remove(folder)


def absolute(out: Path | str) -> Path:
    """`out` from the root, `..` and `.` resolved (links kept): `.` has no name to build beside."""
    return Path(os.path.abspath(out))


def check_place(out: Path) -> None:
    """A report folder that is, or holds, the current folder cannot be swapped: the shell that
    ran fastseg would stay in the earlier folder, removed. Ask before the evaluation's minutes."""
    out = absolute(out)
    if not out.is_dir() or out.is_symlink():
        return
    try:
        current = Path(os.path.realpath(Path.cwd()))
    except OSError:  # the current folder was removed: it is not `out`
        return
    real = Path(os.path.realpath(out))
    if current == real or real in current.parents:
        raise FastsegError(f"{out}: the report folder holds the current folder, and a report replaces its "
                           "folder whole; choose another --out, or run fastseg from elsewhere")  # fmt: skip


def check_writable(out: Path) -> None:
    """Make `out`'s parent folder and a building folder in it (removed again), or say in one line
    why not, before the evaluation's minutes: `--out FILE/report` or `/proc/report` ended in a
    NotADirectoryError or PermissionError traceback once every image was scored (predict, for
    its --out, says "cannot create the output folder")."""
    out = absolute(out)
    probe = building_folder(out)
    try:
        make_folders(out.parent)
        if not (probe.exists() or probe.is_symlink()):  # else a dead process's, which `building` replaces
            probe.mkdir()
            probe.rmdir()
    except OSError as error:
        reason = why_not_created(probe, error)
        raise FastsegError(f"{out}: cannot create the report folder there ({reason})") from None


def check_not_written(out: Path) -> None:
    """Refuse a folder some live process is writing into (its temporaries in it say so: a
    `fastseg predict --out` there holds its log's for its whole run). Swapped out whole, the
    folder took the writer's unfinished files with it: the predict ended in a traceback and its
    predictions.csv was lost. Asked before the evaluation and again at the swap; a writer that
    begins between that last look and the swap (microseconds) is not seen (no lock: predict
    takes none, and two predicts into one folder each end whole)."""
    out = absolute(out)
    if not out.is_dir() or out.is_symlink():
        return
    writers = live_writers(out)
    if writers:  # the file named: one a dead process left under a live one's id can be removed
        pid, temporary = writers[0]
        raise FastsegError(f"{out}: process {pid} may be writing into it ({temporary.relative_to(out)}); "
                           "a report replaces its folder whole: run it when that process ends, or "
                           "choose another --out (if no fastseg command writes there, remove that "
                           "file)")  # fmt: skip


def install(folder: Path, out: Path, force: bool, option: str) -> Path | None:
    """Put the finished `folder` in `out`'s place; returns where the earlier report at `out`
    went (`folder` itself after the one-step swap), None where there was none."""
    absent = not (out.exists() or out.is_symlink())
    if absent or (out.is_dir() and not out.is_symlink() and not any(out.iterdir())):
        try:
            os.rename(folder, out)  # an empty folder at `out` is replaced, a full one refuses
            return None
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise
    guard(out, "report", force, option=option)  # it may have changed since the evaluation began
    check_not_written(out)  # a predict begun since the evaluation did
    if out.is_dir() and not out.is_symlink() and _exchange(folder, out):
        return folder  # the swap left the earlier report under the temporary name
    earlier = replaced_folder(out)
    os.rename(out, earlier)
    try:
        os.rename(folder, out)
    except OSError:
        if out.exists() or out.is_symlink():  # another report went in meanwhile: it stays
            _carry_over(earlier, out)
            _remove(earlier)
            raise FastsegError(f"{out}: another report was written there meanwhile; this one "
                               "was discarded (run it again to replace that one)") from None  # fmt: skip
        os.rename(earlier, out)  # nothing took its place: the earlier report goes back
        raise
    return earlier


def remove_stale(out: Path) -> list[Path]:
    """The temporary folders beside `out` of reports killed while writing it (their process is
    gone): an earlier report moved aside goes back in `out`'s place when nothing took it, else its
    files that are not a report's move into `out`; the rest is removed. Returns what was there."""
    out, found = absolute(out), []
    for path, kind, pid in _temporaries(out):
        if not left_by_dead_process(path, pid):  # a reused id (a container's process 1) is seen
            continue
        found.append(path)
        if kind == REPLACED and not (out.exists() or out.is_symlink()):
            os.rename(path, out)
            continue
        if out.is_dir() and not out.is_symlink():  # a swapped build holds the earlier report
            _carry_over(path, out)
        _remove(path)
    return found


def _temporaries(out: Path) -> list[tuple[Path, str, int]]:
    """(path, kind, process id) of each `.OUT.PID.tmp` and `.OUT.replaced.PID.tmp` beside `out`."""
    prefix, suffix = f".{_key(out)}.", ".tmp"
    if not out.parent.is_dir():
        return []
    found = []
    for path in out.parent.iterdir():
        name = path.name
        if not (name.startswith(prefix) and name.endswith(suffix)) or len(name) <= len(prefix) + len(suffix):
            continue
        middle = name[len(prefix) : -len(suffix)]
        kind, _, pid = middle.rpartition(".")
        if pid.isdigit() and pid.isascii() and kind in ("", REPLACED):
            found.append((path, kind or BUILD, int(pid)))
    return found


def _carry_over(earlier: Path, out: Path) -> None:
    """Move what is in the `earlier` folder and is not a report's file (nor a partial one an
    atomic write left) into `out`, unless `out` has an entry of that name."""
    if earlier.is_symlink() or not earlier.is_dir():
        return
    for entry in earlier.iterdir():
        if entry.name in REPORT_FILES or TEMPORARY.match(entry.name):
            continue
        target = out / entry.name
        if not (target.exists() or target.is_symlink()):
            os.rename(entry, target)


def _remove(path: Path) -> None:
    """A folder with everything in it; a file or a link itself (never what a link points to)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two folders in one step (Linux 3.15+, a file system that supports it); False where
    that is not possible, and the caller swaps them in two renames."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a C library without renameat2 (glibc before 2.28, musl)
        return False
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if function(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(second))


def _named_in(error: OSError, folder: Path, out: Path) -> OSError:
    """`error` naming `out`'s file where it named the temporary `folder`'s."""
    name = error.filename
    if not isinstance(name, (str, os.PathLike)):
        return error
    try:
        inside = Path(name).relative_to(folder)
    except ValueError:
        return error
    return OSError(error.errno, error.strerror, str(out / inside))
