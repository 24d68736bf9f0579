"""HTTP downloads that survive interruptions: a file brought up to the whole of a URL, asking only
for the bytes it lacks (a `Range` request), mirror after mirror.

Only the standard library is imported here, so `fastseg download` starts at once. The library
draws nothing: a caller that wants to show progress passes a factory of `ByteProgress` (the CLI's
bar is `cli.download.ByteBar`).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Sequence
from http.client import HTTPException
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.error import HTTPError
from urllib.request import Request, urlopen

from fastseg import __version__
from fastseg.errors import DownloadError

CHUNK = 1 << 20  # bytes per read
TIMEOUT = 30.0  # seconds without a byte before a mirror counts as down

Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None when unknown)
Log = Callable[[str], None]


class ByteProgress(Protocol):
    """What shows one request's progress: called with (bytes so far, total or None), then closed."""

    def __call__(self, done: int, total: int | None) -> None: ...

    def close(self) -> None: ...


ProgressFactory = Callable[[str], ByteProgress]  # file name -> the progress of one request for it


def fetch_any(
    urls: Sequence[str],
    partial: Path,
    root: Path,
    progress: ProgressFactory | None = None,
    log: Log | None = None,
    timeout: float = TIMEOUT,
) -> None:
    """Try each URL in turn until `partial` holds the whole file; each mirror resumes the last one's bytes.

    Network failures move on to the next URL; if all fail, the one-line error tells the user how to
    proceed without a network. Disk errors (`DownloadError` from `fetch`) stop at once: another
    mirror would not help.
    """
    log = log or silent
    filename = partial.name.removesuffix(".part")
    failures = []
    for url in urls:
        log(f"downloading {url}")
        bar = progress(filename) if progress else None
        try:
            fetch(url, partial, progress=bar, timeout=timeout)
            return
        except (OSError, HTTPException, ValueError) as error:  # URLError, timeouts, refusals, bad URLs
            reason = _reason(error)
            failures.append(f"{url}: {reason}")
            log(f"failed: {reason}")
        finally:
            if bar is not None:
                bar.close()
    tried = "; ".join(failures) or "no URL given"
    raise DownloadError(f"could not download {filename} ({tried}); put {filename} in {root} and run again")


def fetch(url: str, partial: Path, progress: Progress | None = None, timeout: float = TIMEOUT) -> None:
    """Bring `partial` up to the whole of `url`, asking only for the bytes it lacks (HTTP Range).

    A server that ignores Range (200) or answers a different range is restarted from byte 0, since
    appending its body would corrupt the file. Raises `OSError` for network trouble (the caller
    tries another mirror) and `DownloadError` when the file cannot be written.
    """
    done = partial.stat().st_size if partial.is_file() and not partial.is_symlink() else 0
    # Some hosts refuse urllib's default agent; an honest named one is accepted.
    headers = {"User-Agent": f"fastseg/{__version__}"}
    if done:
        headers["Range"] = f"bytes={done}-"
    try:
        response = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as error:
        if error.code == 416 and done:  # Range Not Satisfiable: the part file already holds every byte
            return
        raise
    with response:
        if done and (response.status != 206 or _range_start(response) != done):
            if response.status == 206:  # a range we did not ask for: ask again for the whole file
                response.close()
                remove_file(partial)
                fetch(url, partial, progress, timeout)
                return
            done = 0  # 200: the server ignored Range and sends everything
        length = response.headers.get("Content-Length")
        total = done + int(length) if length and length.isascii() and length.isdigit() else None  # not "²"
        if progress:
            progress(done, total)
        with _open_for_writing(partial, append=done > 0) as file:
            while chunk := response.read(CHUNK):
                try:
                    file.write(chunk)
                except OSError as error:
                    raise DownloadError(f"{partial}: cannot write ({error.strerror})") from None
                done += len(chunk)
                if progress:
                    progress(done, total)
    if total is not None and done < total:
        raise ConnectionError(f"connection closed after {done} of {total} bytes")


def _reason(error: Exception) -> str:
    """One line saying why a URL failed: `HTTP 404 Not Found`, `[Errno 111] Connection refused`."""
    if isinstance(error, HTTPError):
        text = f"HTTP {error.code} {error.reason}"
    else:
        text = str(getattr(error, "reason", None) or error) or type(error).__name__
    return " ".join(text.split())


def _range_start(response: Any) -> int | None:
    """First byte of a 206 answer, from `Content-Range: bytes START-END/TOTAL`."""
    match = re.match(r"\s*bytes\s+(\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _open_for_writing(path: Path, append: bool) -> IO[bytes]:
    """`path` opened to append to or to start again, never through a symbolic link: a link at a
    `.part`'s name (planted in a shared folder) wrote the download outside the root."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC) | getattr(os, "O_NOFOLLOW", 0)
    if path.is_symlink():  # O_NOFOLLOW refuses one too (ELOOP), should it be put there from now on
        raise DownloadError(f"{path}: a symbolic link, not a partial download; remove it")
    try:
        return os.fdopen(os.open(path, flags, 0o644), "ab" if append else "wb")
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise DownloadError(f"{path}: a symbolic link, not a partial download; remove it") from None
        raise DownloadError(f"{path}: cannot write ({error.strerror})") from None


def remove_file(path: Path) -> None:
    """Remove `path` if it is there, or one `DownloadError` line saying why not."""
    try:
        path.unlink(missing_ok=True)
    except OSError as error:
        raise DownloadError(f"{path}: cannot remove ({error.strerror})") from None


def silent(message: str) -> None:
    """The default `log`: the library reports through its return value, the CLI decides what to print."""
