"""What a path from a user or an export names, asked without a traceback: `~` expanded as the
shell does, and the errors asking about a path may raise (a symbolic link loop, a name past the
file system's limit, a NUL byte) told in a few words for the one line that names it."""

from __future__ import annotations

import errno
from pathlib import Path

# What asking about a path may raise: OSError (a name too long), ValueError (a NUL byte),
# RuntimeError (a symbolic link loop, from Python 3.11's `Path.resolve`; later versions: OSError)
UNUSABLE_PATH = (OSError, ValueError, RuntimeError)


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
