"""A request the server refuses: an HTTP status and one line for `{"error": ...}`."""

from __future__ import annotations


class ServeError(Exception):
    """Raised anywhere in a request; the app turns it into `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = one_line(message)
        self.headers = headers or {}


def one_line(text: str, limit: int = 300) -> str:
    """The first line of `text`, bounded: an error never carries a traceback or a file's contents."""
    lines = str(text).strip().splitlines()
    line = lines[0] if lines else "error"
    return line if len(line) <= limit else line[: limit - 3] + "..."
