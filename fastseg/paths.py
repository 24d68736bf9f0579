"""What a path from a user or an export names, asked without a traceback: `~` expanded as the
shell does, the errors asking about a path may raise (a symbolic link loop, a name past the
file system's limit, a NUL byte) told in a few words for the one line that names it, and a
folder's tree walked however deep it goes."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

from fastseg.errors import FastsegError, clipped_middle, shown

# What asking about a path may raise: OSError (a name too long), ValueError (a NUL byte),
# RuntimeError (a symbolic link loop, from Python 3.11's `Path.resolve`; later versions: OSError)
UNUSABLE_PATH = (OSError, ValueError, RuntimeError)
# what a command says of a folder `walk` could not list for want of permission
UNREADABLE_FOLDER = "a folder this user may not read (permission denied)"


def path_problem(error: Exception) -> str:
    """Why a path cannot be used, in a few words (one of `UNUSABLE_PATH`'s errors)."""
    if isinstance(error, RuntimeError) or getattr(error, "errno", None) == errno.ELOOP:
        return "a symbolic link loop"
    return error.strerror if isinstance(error, OSError) and error.strerror else str(error)


def expanded(path: Path | str) -> Path:
    """`path` with `~` / `~user` expanded; `~name` of no user stays as written, as the shell leaves
    it (`Path.expanduser` raises RuntimeError there: a traceback for a typo)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        return Path(path)


def walk(root: Path | str, unreadable: list[Path] | None = None) -> Iterator[Path]:
    """Every file and folder below `root`, as `Path(root).rglob("*")` lists them and in its order
    (each folder's entries, then its subfolders' in turn; a symbolic link to a folder listed, not
    entered; a folder this user may not read passed over), lazily. Walked with a stack: Python
    3.11's `rglob` recursed once per level, so a tree about 1,000 folders deep was a
    RecursionError traceback from `predict`, `check-data` or `runs`.

    A folder this user may not read is added to `unreadable` when one is given, for a caller to
    say what it left out (`find` names each one too). A folder that cannot be listed for another
    reason (a path past the system's 4,096 bytes, an I/O error) raises `FastsegError` naming it:
    passing over it would leave its images out without a word, and `rglob`'s OSError was a
    traceback."""
    stack = [Path(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except PermissionError:
            if unreadable is not None:
                unreadable.append(folder)
            continue
        except (FileNotFoundError, NotADirectoryError):  # vanished meanwhile: as `rglob`, not there
            continue
        except OSError as error:
            raise FastsegError(f"{shown(folder)}: cannot be listed ({path_problem(error)})") from None
        folders = []
        for entry in entries:
            path = folder / entry.name
            yield path
            try:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(path)
            except OSError:
                pass  # vanished meanwhile: nothing below it to list
        stack.extend(reversed(folders))


def create_folder(path: Path | str, what: str = "folder") -> None:
    """`make_folders(path)`, or one line naming the path and why it cannot be a folder: a command's
    --out under a file or in /proc ended in a FileNotFoundError or NotADirectoryError traceback
    (show-data, demo, import), or said "File exists" of `/dev/null/x` (report)."""
    try:
        make_folders(path)
    except OSError as error:
        reason = why_not_created(path, error)
        raise FastsegError(f"{clipped_middle(shown(path))}: cannot create the {what} ({reason})") from None


def why_not_created(path: Path | str, error: OSError) -> str:
    """Why `path` could not be made, in words: the first name on the way down that is a file says
    more than mkdir's "File exists" or "Not a directory"."""
    path = Path(path)
    for step in (*reversed(path.parents), path):
        try:
            os.stat(step)
        except FileNotFoundError:
            if step.is_symlink():
                return f"{shown(step)} is a broken symbolic link"
            break  # missing: mkdir would have made it, so its own words follow
        except OSError as failure:
            if failure.errno == errno.ELOOP:
                return f"{shown(step)} is a symbolic link loop"
            break  # a name too long to ask about: mkdir's own words follow
        if not step.is_dir():
            return f"{clipped_middle(shown(step))} is not a folder"
    if error.errno == errno.ENAMETOOLONG:
        return f"{error.strerror}: a name holds at most 255 bytes, a path 4,096"
    return error.strerror or str(error)


def make_folders(path: Path | str, exist_ok: bool = True) -> None:
    """`Path(path).mkdir(parents=True, exist_ok=exist_ok)`, the same errors, without its recursion:
    Python 3.11's called itself once per missing folder, so a predict mirroring an input tree
    about 1,000 folders deep ended in a RecursionError traceback."""
    leaf = path = Path(path)
    missing = []
    while True:  # up to the first folder there, as `mkdir` does
        try:
            path.mkdir()
        except FileNotFoundError:
            if path.parent == path:
                raise
            missing.append(path)
            path = path.parent
            continue
        except OSError:
            if (path == leaf and not exist_ok) or not path.is_dir():
                raise
        break
    for folder in reversed(missing):  # then down again; only the last, `path` itself, must be new
        try:
            folder.mkdir()
        except OSError:
            if (folder == leaf and not exist_ok) or not folder.is_dir():
                raise
