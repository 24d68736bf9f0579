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
import time
from collections.abc import Callable, Sequence
from http.client import HTTPException, IncompleteRead
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.error import HTTPError
from urllib.request import Request, urlopen

from fastseg import __version__
from fastseg.errors import DownloadError

CHUNK = 1 << 20  # bytes per read
TIMEOUT = 30.0  # seconds without a byte before a mirror counts as down
# A mirror sending less than this, averaged over a whole TIMEOUT, counts as down too: each read
# has its own timeout, so a byte every 29 s kept a 2 GB download waiting for ever.
MIN_BYTES_PER_SECOND = 1024

Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None when unknown)
Log = Callable[[str], None]


class ByteProgress(Protocol):
    """What shows one request's progress: called with (bytes so far, total or None), then closed."""

    def __call__(self, done: int, total: int | None) -> None: ...

    def close(self) -> None: ...


ProgressFactory = Callable[[str], ByteProgress]  # file name -> the progress of one request for it


class NotTheFile(OSError):
    """An answer that is not the file asked for (an HTML page): that mirror's failure, like a
    network error, so the next one is tried and the `.part` is left as it was."""


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

    A server that ignores Range (200) sends the file from byte 0: the bytes `partial` holds are
    compared with it and kept while they agree, so a mirror failing midway never shortens it, and
    the `.part` of another file is replaced from its first differing byte. A 206 of a range not
    asked for is asked again for the whole file. An HTML page (a mirror's error page or a captive
    portal's, sent with 200) is never written. Raises `OSError` for network trouble, a cut answer
    or a mirror slower than `MIN_BYTES_PER_SECOND` over `timeout` seconds (the caller tries another
    mirror), and `DownloadError` when the file cannot be written.
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
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media_type == "text/html":  # no data set is one; an error page would replace the .part
            raise NotTheFile("the server sent an HTML page (text/html), not the file")
        if done and response.status == 206 and _content_range(response)[0] != done:
            # a range we did not ask for: ask again for the whole file
            response.close()
            remove_file(partial)
            fetch(url, partial, progress, timeout)
            return
        start = done if done and response.status == 206 else 0  # 200: the server sends everything
        _receive(response, partial, start, done, progress, timeout)


def _receive(response: Any, partial: Path, start: int, held: int, progress: Progress | None,
             timeout: float) -> None:  # fmt: skip
    """Write `response`'s body, which begins at byte `start` of the file, into `partial`, which
    holds `held` bytes: those the body also covers are compared and kept while they agree.

    Reads take what has arrived (`read1`), so progress moves with the bytes and a trickle is seen."""
    total = _total(response, start)
    read = getattr(response, "read1", response.read)
    position = start  # the file's offset of the body's next byte
    window_start, window_bytes = time.monotonic(), 0
    if progress:
        progress(position, total)
    with _open_part(partial) as file:
        file.seek(position)
        while True:
            try:
                chunk = read(CHUNK)
            except IncompleteRead:  # a chunked answer cut: http.client's words name no byte count
                raise ConnectionError(f"connection closed after {position} bytes, before the end of "
                                      "the answer") from None  # fmt: skip
            if not chunk:
                break
            try:
                held = _write_or_compare(file, chunk, position, held)
            except OSError as error:
                raise DownloadError(f"{partial}: cannot write ({error.strerror})") from None
            position += len(chunk)
            if progress:
                progress(position, total)
            window_bytes += len(chunk)
            elapsed = time.monotonic() - window_start
            if elapsed >= timeout:  # each read has its own timeout; a trickle never trips it
                if window_bytes < MIN_BYTES_PER_SECOND * elapsed:
                    raise TimeoutError(f"too slow: {window_bytes} bytes in the last {elapsed:.0f} s "
                                       f"(under {MIN_BYTES_PER_SECOND >> 10} KB/s)")  # fmt: skip
                window_start, window_bytes = time.monotonic(), 0
        try:
            file.flush()  # here, not in `close`, where a full disk would pass for a network error
        except OSError as error:
            raise DownloadError(f"{partial}: cannot write ({error.strerror})") from None
        if total is not None and position < total:
            raise ConnectionError(f"connection closed after {position} of {total} bytes")
        if position < held:  # the file is shorter than the .part, whose every byte it agreed with
            if total is None and not getattr(response, "chunked", False):
                # only the connection's close ended this answer: perhaps a cut, keep the bytes
                raise ConnectionError(f"connection closed after {position} bytes, before the {held} "
                                      "already downloaded")  # fmt: skip
            try:
                file.truncate(position)
            except OSError as error:
                raise DownloadError(f"{partial}: cannot write ({error.strerror})") from None


def _write_or_compare(file: IO[bytes], chunk: bytes, position: int, held: int) -> int:
    """Put `chunk` (the file's bytes from `position`, where `file` stands) into the `.part` that
    holds `held` bytes; return how many it holds now.

    Bytes the `.part` has are compared rather than written: while they agree nothing changes; at
    the first that differs, the `.part` (another file's) is cut there and written on from it."""
    agreed = 0
    if position < held:
        kept = file.read(min(len(chunk), held - position))
        agreed = len(kept) if chunk.startswith(kept) else _first_difference(kept, chunk)
        if agreed < len(kept):
            file.seek(position + agreed)
            file.truncate()
            held = position + agreed
    file.write(chunk[agreed:])
    return max(held, position + len(chunk))


def _first_difference(kept: bytes, chunk: bytes) -> int:
    """Index of the first byte where `kept` and `chunk` differ (they do, within `kept`)."""
    return next(index for index, (old, new) in enumerate(zip(kept, chunk, strict=False)) if old != new)


def _total(response: Any, start: int) -> int | None:
    """The whole file's size, or None when the answer does not say: Content-Length (after the
    `start` bytes a 206 skips), else a 206's `Content-Range: bytes A-B/TOTAL`, the only way a cut
    in an answer without a length can be seen before the MD5."""
    length = response.headers.get("Content-Length")
    if length and length.isascii() and length.isdigit():  # not "²"
        return start + int(length)
    return _content_range(response)[1] if response.status == 206 else None


def _reason(error: Exception) -> str:
    """One line saying why a URL failed: `HTTP 404 Not Found`, `[Errno 111] Connection refused`."""
    if isinstance(error, HTTPError):
        text = f"HTTP {error.code} {error.reason}"
    else:
        text = str(getattr(error, "reason", None) or error) or type(error).__name__
    return " ".join(text.split())


CONTENT_RANGE = re.compile(r"\s*bytes\s+(\d+)-\d*(?:/(\d+|\*))?\s*$")


def _content_range(response: Any) -> tuple[int | None, int | None]:
    """A 206's `Content-Range: bytes START-END/TOTAL`: its first byte and the whole file's size
    (None where it is missing, malformed, or `*`: unknown)."""
    match = CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if match is None:
        return None, None
    total = match.group(2)
    return int(match.group(1)), int(total) if total and total != "*" else None


def _open_part(path: Path) -> IO[bytes]:
    """`path` opened to read and write from any offset (created if missing), never through a
    symbolic link: a link at a `.part`'s name (planted in a shared folder) wrote the download
    outside the root."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    if path.is_symlink():  # O_NOFOLLOW refuses one too (ELOOP), should it be put there from now on
        raise DownloadError(f"{path}: a symbolic link, not a partial download; remove it")
    try:
        return os.fdopen(os.open(path, flags, 0o644), "r+b")
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
