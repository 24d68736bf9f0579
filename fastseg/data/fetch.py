"""HTTP downloads that survive interruptions: a file brought up to the whole of a URL, asking only
for the bytes it lacks (a `Range` request), mirror after mirror.

Only the standard library is imported here, so `fastseg download` starts at once. The library
draws nothing: a caller that wants to show progress passes a factory of `ByteProgress` (the CLI's
bar is `cli.download.ByteBar`).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import os
import re
import socket
import string
import time
from collections.abc import Callable, Sequence
from email.message import Message
from http.client import HTTPConnection, HTTPException, HTTPResponse, HTTPSConnection, IncompleteRead
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.error import HTTPError
from urllib.parse import quote, urljoin, urlsplit
from urllib.request import (
    HTTPHandler,
    HTTPRedirectHandler,
    HTTPSHandler,
    OpenerDirector,
    Request,
    build_opener,
)

from fastseg import __version__
from fastseg.errors import DownloadError, clipped, quoted

CHUNK = 1 << 20  # bytes per read
TIMEOUT = 30.0  # seconds without a byte before a mirror counts as down
# A mirror sending less than this, averaged over a whole TIMEOUT, counts as down too: each read
# has its own timeout, so a byte every 29 s kept a 2 GB download waiting for ever.
MIN_BYTES_PER_SECOND = 1024
# The status line and headers must all arrive within this many seconds: each read has its own
# TIMEOUT, so a server sending them a byte at a time held the download for ever.
HEADERS_DEADLINE = 60.0
MAX_REDIRECTS = 10  # as urllib's own bound
URL_SHOWN = 80  # characters of a redirect's target in a line

Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None when unknown)
Log = Callable[[str], None]


class ByteProgress(Protocol):
    """What shows one request's progress: called with (bytes so far, total or None), then closed."""

    def __call__(self, done: int, total: int | None) -> None: ...

    def close(self) -> None: ...


ProgressFactory = Callable[[str], ByteProgress]  # file name -> the progress of one request for it


class NotTheFile(OSError):
    """An answer that is not the file asked for (an HTML page, bytes from another offset than
    asked, a redirect not followed): that mirror's failure, like a network error, so the next one
    is tried and the `.part` is left as it was."""


def fetch_any(
    urls: Sequence[str],
    partial: Path,
    root: Path,
    progress: ProgressFactory | None = None,
    log: Log | None = None,
    timeout: float = TIMEOUT,
    md5: str | None = None,
) -> None:
    """Try each URL in turn until `partial` holds the whole file; each mirror resumes the last one's bytes.

    Network failures move on to the next URL; if all fail, the one-line error tells the user how to
    proceed without a network. Disk errors (`DownloadError` from `fetch`) stop at once: another
    mirror would not help. `md5`, the whole file's, lets `fetch` judge a mirror whose whole file
    is shorter than the `.part`.
    """
    log = log or silent
    filename = partial.name.removesuffix(".part")
    failures = []
    for url in urls:
        log(f"downloading {url}")
        bar = progress(filename) if progress else None
        try:
            fetch(url, partial, progress=bar, timeout=timeout, md5=md5)
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


def fetch(url: str, partial: Path, progress: Progress | None = None, timeout: float = TIMEOUT,
          md5: str | None = None) -> None:  # fmt: skip
    """Bring `partial` up to the whole of `url`, asking only for the bytes it lacks (HTTP Range).

    A server that ignores Range (200) sends the file from byte 0: the bytes `partial` holds are
    compared with it and kept while they agree, so a mirror failing midway never shortens it, and
    the `.part` of another file is replaced from its first differing byte. A 206 of a range
    beginning before the one asked (or not saying which) is asked again for the whole file, the
    same way; one beginning after it leaves a gap, and fails. A whole file shorter than `partial`
    (every byte of it agreeing) cuts `partial` to it only where its MD5 is `md5` (or none is
    given): a mirror's stale or cut copy cost a good `.part`. An HTML page (a mirror's error page
    or a captive portal's, sent with 200) is never written. Raises `OSError` for network trouble,
    a cut answer, headers not all there within `HEADERS_DEADLINE`, a redirect not followed
    (`opener`) or a mirror slower than `MIN_BYTES_PER_SECOND` over `timeout` seconds (the caller
    tries another mirror), and `DownloadError` when the file cannot be written.
    """
    held = partial.stat().st_size if partial.is_file() and not partial.is_symlink() else 0
    _fetch_from(url, partial, held, held, progress, timeout, md5)


def _fetch_from(url: str, partial: Path, held: int, asked: int, progress: Progress | None,
                timeout: float, md5: str | None) -> None:  # fmt: skip
    """`fetch`, asking for the bytes from `asked` (0: the whole file, no Range) while `partial`
    holds `held` bytes."""
    # Some hosts refuse urllib's default agent; an honest named one is accepted.
    headers = {"User-Agent": f"fastseg/{__version__}"}
    if asked:
        headers["Range"] = f"bytes={asked}-"
    try:
        response = opener().open(Request(url, headers=headers), timeout=timeout)
    except HTTPError as error:
        if error.code == 416 and asked:  # Range Not Satisfiable: the part file may hold every byte
            _check_whole(error.headers, held)
            return
        raise
    with response:
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media_type == "text/html":  # no data set is one; an error page would replace the .part
            raise NotTheFile("the server sent an HTML page (text/html), not the file")
        # A 206 must say where its bytes begin (RFC 9110): they are written there, nowhere else.
        first = _content_range(response.headers)[0] if response.status == 206 else 0
        if first != asked and response.status == 206:
            if asked and (first is None or first < asked):  # ask again for the whole file
                response.close()
                _fetch_from(url, partial, held, 0, progress, timeout, md5)
                return
            raise NotTheFile(f"the server sent the bytes from {first}, not from {asked} as asked"
                             if first is not None else "a partial answer (HTTP 206) that does not say "
                             "which bytes it holds (no readable Content-Range)")  # fmt: skip
        _receive(response, partial, first, held, progress, timeout, md5)


def _check_whole(headers: Message, held: int) -> None:
    """A 416 answered to a resume from `held`: the `.part` is whole unless the answer's
    `Content-Range: bytes */TOTAL` names another size (then that mirror fails: a `.part` taken for
    whole fails its MD5 and is removed, with every good byte in it). Without one, the MD5 judges."""
    total = _content_range(headers)[1] if headers else None
    if total is not None and total != held:
        raise NotTheFile(f"HTTP 416: the server's file has {total} bytes, the partial download {held}")


def _receive(response: Any, partial: Path, start: int, held: int, progress: Progress | None,
             timeout: float, md5: str | None) -> None:  # fmt: skip
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
                stale = md5 is not None and _md5_of_first(file, position) != md5.lower()
            except OSError as error:
                raise DownloadError(f"{partial}: cannot read ({error.strerror})") from None
            if stale:
                raise NotTheFile(f"the server's whole file has {position} bytes, fewer than the {held} "
                                 "already downloaded, and not the MD5 expected; the partial download "
                                 "is kept")  # fmt: skip
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


def _md5_of_first(file: IO[bytes], size: int) -> str:
    """MD5 of `file`'s first `size` bytes (read back: only a shorter whole file asks for it)."""
    digest = hashlib.md5(usedforsecurity=False)  # a checksum, as `archive.file_md5`
    file.seek(0)
    while size > 0:
        block = file.read(min(CHUNK, size))
        if not block:
            break
        digest.update(block)
        size -= len(block)
    return digest.hexdigest()


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
    return _content_range(response.headers)[1] if response.status == 206 else None


def _reason(error: Exception) -> str:
    """One line saying why a URL failed: `HTTP 404 Not Found`, `[Errno 111] Connection refused`;
    cut short, since a server chooses its words (a reason phrase can be 64 kB long)."""
    if isinstance(error, HTTPError):
        text = f"HTTP {error.code} {error.reason}"
    else:
        text = str(getattr(error, "reason", None) or error) or type(error).__name__
    return clipped(" ".join(text.split()))


# `bytes START-END/TOTAL` (a 206's), `bytes */TOTAL` (a 416's: the file's size alone)
CONTENT_RANGE = re.compile(r"\s*bytes\s+(?:(\d+)-\d*|\*)(?:/(\d+|\*))?\s*$")


def _content_range(headers: Message) -> tuple[int | None, int | None]:
    """An answer's `Content-Range: bytes START-END/TOTAL` (or a 416's `bytes */TOTAL`): its first
    byte and the whole file's size (None where it is missing, malformed, or `*`: unknown)."""
    match = CONTENT_RANGE.match(headers.get("Content-Range", ""))
    if match is None:
        return None, None
    first, total = match.groups()
    return (int(first) if first else None), (int(total) if total and total != "*" else None)


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


class _HeadersBefore(io.RawIOBase):
    """A socket's reads that end with `TimeoutError` once `deadline` (a `time.monotonic`) passes,
    whatever trickles in; `deadline = None` lifts it (the body has its own bound, in `_receive`)."""

    def __init__(self, raw: io.RawIOBase, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self.raw, self.sock, self.deadline = raw, sock, deadline
        self.timeout = sock.gettimeout()  # each read's own, put back after every read

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.raw.fileno()

    def readinto(self, buffer: Any) -> int | None:
        if self.deadline is None:
            return self.raw.readinto(buffer)
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.late()
        self.sock.settimeout(left if self.timeout is None else min(self.timeout, left))
        try:
            return self.raw.readinto(buffer)
        except TimeoutError:
            if time.monotonic() < self.deadline:
                raise  # the read's own timeout
            raise self.late() from None
        finally:
            self.sock.settimeout(self.timeout)

    @staticmethod
    def late() -> TimeoutError:
        """The mirror's failure once the deadline has passed."""
        return TimeoutError(f"the server sent no complete headers in {HEADERS_DEADLINE:g} s")

    def close(self) -> None:
        self.raw.close()
        super().close()


class _TimedHeaders(HTTPResponse):
    """An answer whose status line and headers (and any `100 Continue`s before them) must all
    come within `HEADERS_DEADLINE` seconds of the request being sent (this object is made then)."""

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        self._headers_before = _HeadersBefore(self.fp.detach(), sock, time.monotonic() + HEADERS_DEADLINE)
        self.fp = io.BufferedReader(self._headers_before)

    def begin(self) -> None:
        super().begin()
        self._headers_before.deadline = None


class _HTTPConnection(HTTPConnection):
    response_class = _TimedHeaders


class _HTTPSConnection(HTTPSConnection):
    response_class = _TimedHeaders


class _HTTPHandler(HTTPHandler):
    def http_open(self, req: Request) -> HTTPResponse:
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(HTTPSHandler):
    def do_open(self, http_class: Any, req: Request, **kwargs: Any) -> HTTPResponse:
        return super().do_open(_HTTPSConnection, req, **kwargs)


class _Redirects(HTTPRedirectHandler):
    """Redirects followed only to http(s), never from https down to http (the user chose https:
    the bytes could be read or changed on the way), at most `MAX_REDIRECTS`, never in a loop. The
    redirect's own body is never read: urllib read it whole first, so a 302 whose body trickled or
    never ended held the download (and its memory). A refused one is `NotTheFile`: that mirror's
    failure. urllib followed ftp:// (in plain text, without Range) and refused file:// in its own
    words, quoting the whole Location however long."""

    def http_error_302(self, req: Request, fp: Any, code: int, msg: str, headers: Message) -> Any:
        location = headers.get("Location", headers.get("URI"))
        if location is None:
            return None  # urllib's answer: `HTTP 302 Found`, the mirror's failure
        fp.close()
        target = _redirect_target(req.full_url, location)
        visited = getattr(req, "visited", [req.full_url])
        if target in visited:
            raise NotTheFile(f"a redirect loop (back to {clipped(target, URL_SHOWN)})")
        if len(visited) > MAX_REDIRECTS:
            raise NotTheFile(f"more than {MAX_REDIRECTS} redirects")
        new = self.redirect_request(req, fp, code, msg, headers, target)
        new.visited = [*visited, target]
        return self.parent.open(new, timeout=req.timeout)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _redirect_target(source: str, location: str) -> str:
    """The URL a redirect from `source` to `location` leads to, or `NotTheFile` saying why it is
    not followed. Non-ASCII is percent-encoded as urllib does (headers are read as Latin-1)."""
    try:
        target = urljoin(source, quote(location, encoding="iso-8859-1", safe=string.punctuation))
        scheme = urlsplit(target).scheme.lower()
    except ValueError:
        raise NotTheFile(f"redirected to an address that is no URL ({quoted(location, URL_SHOWN)})") from None
    shown = clipped(target, URL_SHOWN)
    if scheme == "http" and urlsplit(source).scheme.lower() == "https":
        raise NotTheFile(f"redirected from https to {shown}, not followed (only to https)")
    if scheme not in ("http", "https"):
        raise NotTheFile(f"redirected to {shown}, not followed (only http and https are)")
    return target


@functools.cache
def opener() -> OpenerDirector:
    """What fetches: urllib's opener, with the bounds above on headers and redirects. A URL the
    user gives (file://, ftp://) is still opened by urllib's own handlers: that is the user's
    choice. Built at the first download, not at import, as urllib builds its own: the proxy
    variables (`https_proxy`, ...) are read then."""
    return build_opener(_HTTPHandler, _HTTPSHandler, _Redirects)


def silent(message: str) -> None:
    """The default `log`: the library reports through its return value, the CLI decides what to print."""
