"""Typed errors: the library raises them, the CLI turns them into one line and an exit code."""

from __future__ import annotations

from collections.abc import Sequence


def bytes_escaped(text: str) -> str:
    """`text` as UTF-8 can hold it. A name's bytes that are not UTF-8 (Linux allows them; Python
    keeps each as a lone surrogate, U+DCxx) are written as the byte, `\\xff`, as `ls -b` shows
    them: the one spelling in fastseg's lines, logs and CSVs, so a name printed can be found in
    `predictions.csv`. (Printing the surrogate itself raised UnicodeEncodeError.)"""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no byte made: \\ud800
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def shown(text: object) -> str:
    """A name or problem as it can stand in one line: control characters (a newline in a file's
    name, a NUL) escaped (`a\\nb.png`), and bytes that are not UTF-8 as `\\xff`
    (`bytes_escaped`); a problem per line is what a reader and a log count."""
    text = bytes_escaped(str(text))
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def clipped_middle(text: str, limit: int = 120) -> str:
    """`text`, or its head and tail around `...`: a path whose length is the problem, where the
    tail names the file and the head where it is."""
    if len(text) <= limit:
        return text
    head = (limit - 3) * 2 // 5
    return f"{text[:head]}...{text[-(limit - 3 - head):]}"


def clipped(text: str, limit: int = 200) -> str:
    """`text`, or its first `limit` characters and `...`: a name, a path or another program's
    words inside one line of ours, which a 60 kB one would swamp. The `...` says it was cut."""
    return text if len(text) <= limit else text[:limit] + "..."


def quoted(text: str, limit: int = 200) -> str:
    """`text` quoted (`repr`), cut as `clipped` does with the `...` outside the quotes, so a name
    that itself ends in dots is not taken for a cut one."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def first_line(error: BaseException) -> str:
    """The first line of `error`'s message, or its type's name when it has none: a library's
    error (torch, Pillow, onnxruntime, MLflow) quoted inside one line of ours, never its
    traceback or a multi-line dump."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


class FastsegError(Exception):
    """A problem the user can fix (bad path, bad data, bad option); never a bug.

    The message is one line; the CLI escapes any newline a name in it holds (`shown`), so a path
    with a newline cannot split it. An error that lists several problems gives them as `lines`,
    each then one line of the output. `details`, when there are any, is the full story (every
    mismatched weight of a model file, say), which the CLI prints under `--verbose`."""

    def __init__(self, message: str = "", details: str = "", lines: Sequence[str] = ()) -> None:
        self.lines = [shown(line) for line in lines] or [message]  # a listed problem: one line each
        super().__init__("\n".join(self.lines))
        self.details = details

    def shown_lines(self) -> list[str]:
        """The lines the CLI prints: each problem one line, whatever the names in it hold."""
        return [shown(line) for line in self.lines]


class OptionError(FastsegError):
    """Options that cannot work together; the CLI reports it as a usage error (exit 2)."""


class DatasetError(FastsegError):
    """The dataset on disk is missing pieces or holds unreadable files."""


class DownloadError(FastsegError):
    """A download could not be completed or verified."""


class CheckpointError(FastsegError):
    """A model file or run folder is missing, corrupt or of the wrong kind."""
