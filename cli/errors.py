"""One place that turns library errors into the CLI's one-line messages and exit codes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(function: F) -> F:
    """Report `FastsegError` (a user's mistake, not a bug) as `Error: ...` and exit 1, no traceback;
    `OptionError` (options that cannot work together) as a usage error, exit 2.

    An error's `details` (every mismatched weight of a model file, say) follow its line under the
    command's `--verbose` flag, which is consumed here; without it the line says they exist."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from fastseg.errors import FastsegError, OptionError

        verbose = kwargs.pop("verbose", None)  # None: the command has no --verbose
        try:
            return function(*args, **kwargs)
        except OptionError as error:
            raise click.UsageError(str(error)) from None
        except FastsegError as error:
            message = str(error)
            if error.details and verbose:
                message = f"{message}\n{error.details}"
            elif error.details and verbose is not None:
                message = f"{message} (--verbose: every key)"
            raise click.ClickException(message) from None

    return wrapper  # type: ignore[return-value]
