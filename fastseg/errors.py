"""Typed errors: the library raises them, the CLI turns them into one line and an exit code."""

from __future__ import annotations


def shown(text: object) -> str:
    """A name or problem as it can stand in one line: control characters (a newline in a file's
    name, a NUL) escaped (`a\\nb.png`); a problem per line is what a reader and a log count."""
    text = str(text)
    return text if text.isprintable() else repr(text)[1:-1]


def first_line(error: BaseException) -> str:
    """The first line of `error`'s message, or its type's name when it has none: a library's
    error (torch, Pillow, onnxruntime, MLflow) quoted inside one line of ours, never its
    traceback or a multi-line dump."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


class FastsegError(Exception):
    """A problem the user can fix (bad path, bad data, bad option); never a bug.

    The message is one line. `details`, when there are any, is the full story (every mismatched
    weight of a model file, say), which the CLI prints under `--verbose`."""

    def __init__(self, message: str = "", details: str = "") -> None:
        super().__init__(message)
        self.details = details


class OptionError(FastsegError):
    """Options that cannot work together; the CLI reports it as a usage error (exit 2)."""


class DatasetError(FastsegError):
    """The dataset on disk is missing pieces or holds unreadable files."""


class DownloadError(FastsegError):
    """A download could not be completed or verified."""


class CheckpointError(FastsegError):
    """A model file or run folder is missing, corrupt or of the wrong kind."""
