"""One line of a command's output, whatever the names in it hold.

Paths and ids come from users and scripts, and Linux lets a name hold a newline, a tab or a
terminal's escape sequence. Printed as they are, one line of output became two (a log then counts
two events, a script reads a half path) or recoloured the terminal. `say` escapes them
(`fastseg.errors.shown`, the spelling every error and log uses); it is what the CLI prints with,
and what it hands the library as the `echo` of its progress and summary lines, which are one line
each. `click.echo` stays for text that is several lines on purpose (a table, `--help`).
"""

from __future__ import annotations

import click

from fastseg.errors import shown


def say(text: object = "", err: bool = False) -> None:
    """Print `text` as one line (to stderr with `err`)."""
    click.echo(shown(text), err=err)


def say_err(text: object) -> None:
    """`say` to stderr, for a callback that takes the line alone."""
    say(text, err=True)
