"""Typed errors: the library raises them, the CLI turns them into one line and an exit code."""

from __future__ import annotations


class FastsegError(Exception):
    """A problem the user can fix (bad path, bad data, bad option); never a bug."""


class OptionError(FastsegError):
    """Options that cannot work together; the CLI reports it as a usage error (exit 2)."""


class DatasetError(FastsegError):
    """The dataset on disk is missing pieces or holds unreadable files."""


class DownloadError(FastsegError):
    """A download could not be completed or verified."""


class CheckpointError(FastsegError):
    """A model file or run folder is missing, corrupt or of the wrong kind."""
