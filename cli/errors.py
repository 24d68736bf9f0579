"""One place that turns library errors into the CLI's one-line messages and exit codes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(function: F) -> F:
    """Report `FastsegError` (a user's mistake, not a bug) as `Error: ...` and exit 1, no traceback;
    `OptionError` (options that cannot work together) as a usage error, exit 2."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from fastseg.errors import FastsegError, OptionError

        try:
            return function(*args, **kwargs)
        except OptionError as error:
            raise click.UsageError(str(error)) from None
        except FastsegError as error:
            raise click.ClickException(str(error)) from None

    return wrapper  # type: ignore[return-value]
