"""One place that turns library errors into the CLI's one-line messages and exit codes."""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
# The machine, not the program: a full disk or quota. Every file fastseg writes goes through a
# temporary file renamed when whole (fastseg.atomic), so what was written before stays whole.
RESOURCE_ERRORS = (errno.ENOSPC, errno.EDQUOT)
# A name the user gave (or one made from it) that the system refuses whatever the program does:
# one past 255 bytes, a path past 4,096, a symbolic link loop. Commands check the names they are
# given where they can; this catches the rest (a traceback in check-data, runs, report, demo).
NAME_ERRORS = (errno.ENAMETOOLONG, errno.ELOOP)


def resource_message(error: OSError) -> str:
    """`OUT: no space left on the disk (...)`: one line naming the file being written."""
    where = f"{error.filename}: " if error.filename else ""
    return (
        f"{where}{error.strerror or 'no space left'}; every file written before is whole (written "
        "atomically) and a partial one was discarded: free some space and run the command again"
    )


def name_message(error: OSError) -> str:
    """`NAME: File name too long (...)`: the name clipped, since it is the problem's size."""
    from fastseg.errors import clipped_middle, shown
    from fastseg.paths import path_problem

    where = f"{clipped_middle(shown(error.filename))}: " if error.filename else ""
    too_long = error.errno == errno.ENAMETOOLONG
    advice = "a name holds at most 255 bytes, a path 4,096" if too_long else "remove the loop"
    return f"{where}{path_problem(error)} ({advice}); choose another name"


def user_errors(function: F) -> F:
    """Report `FastsegError` (a user's mistake, not a bug) as `Error: ...` and exit 1, no traceback;
    `OptionError` (options that cannot work together) as a usage error, exit 2. Each is one line
    (a newline in a name it quotes is escaped), or one line per problem where the error lists
    `lines`.

    An error's `details` (every mismatched weight of a model file, say) follow its line under the
    command's `--verbose` flag, which is consumed here; without it the line says they exist."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from fastseg.errors import FastsegError, OptionError, shown

        verbose = kwargs.pop("verbose", None)  # None: the command has no --verbose
        try:
            return function(*args, **kwargs)
        except OptionError as error:
            raise click.UsageError("\n".join(error.shown_lines())) from None
        except FastsegError as error:
            message = "\n".join(error.shown_lines())
            if error.details and verbose:
                message = "\n".join([message, *map(shown, error.details.splitlines())])
            elif error.details and verbose is not None:
                message = f"{message} (--verbose: every key)"
            raise click.ClickException(message) from None
        except OSError as error:
            if error.errno in NAME_ERRORS:
                raise click.ClickException(name_message(error)) from None
            if error.errno not in RESOURCE_ERRORS:
                raise  # a bug, or something no user did: the traceback is what a report needs
            raise click.ClickException(resource_message(error)) from None

    return wrapper  # type: ignore[return-value]
