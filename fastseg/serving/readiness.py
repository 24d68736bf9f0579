"""A `fastseg serve` that a script starts and waits for: a deployment's smoke test, the load
benchmark, the tests.

The server binds its port at once and answers /readyz 503 until the model is loaded and warmed
up (seconds to minutes), so a first request sent on start would fail or wait out the warm-up.
Plain `urllib` (no HTTP client beyond the standard library, no FastAPI): a client machine need
not have the serve extra.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from fastseg.errors import FastsegError, OptionError, quoted

POLL_SECONDS = 0.1
STOP_SECONDS = 30  # after SIGTERM; then SIGKILL


def became_ready(url: str, timeout: float, running: Callable[[], bool] = lambda: True) -> bool:
    """Whether the server at `url` (`http://HOST:PORT`) answered `GET /readyz` 200 within
    `timeout` seconds. False as soon as `running()` is false: a server process that has ended
    will not become ready, and its output says why sooner than a timeout would."""
    if not url.startswith(("http://", "https://")):
        raise OptionError(f"{quoted(url)}: a server's http:// or https:// address")
    if not timeout >= 0:  # NaN would never pass the deadline
        raise OptionError(f"timeout {timeout}: seconds, 0 or more")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:  # noqa: S310 - http(s), checked above
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):  # not listening yet, or 503 while loading
            pass
        if not running() or time.monotonic() > deadline:
            return False
        time.sleep(POLL_SECONDS)


@dataclass
class ServedProcess:
    """A running `fastseg serve`: its address, its process, and what it has written."""

    url: str
    process: subprocess.Popen
    log: IO[bytes]
    final: str = ""  # the whole output, kept when the server is stopped

    def output(self) -> str:
        """Its stdout and stderr so far, in the order written (read without moving the offset
        the child writes at); all of it once stopped."""
        if self.log.closed:
            return self.final
        size = os.fstat(self.log.fileno()).st_size
        return os.pread(self.log.fileno(), size, 0).decode("utf-8", errors="replace")


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (the OS's choice)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def served_process(model: Path | str, *options: str, timeout: float = 300) -> Iterator[ServedProcess]:
    """`fastseg serve MODEL OPTIONS` as a child process (this Python's fastseg) on a free port of
    127.0.0.1, given once /readyz is 200; stopped on exit (SIGTERM, then SIGKILL), and its
    output kept for `ServedProcess.output`. The output goes to a temporary file, not a pipe: a
    pipe nobody reads fills with log lines and stops the server mid-request.

    Raises `FastsegError` with the end of the server's output when it ends before it is ready
    or is not ready within `timeout` seconds."""
    port = free_port()
    command = [sys.executable, "-m", "fastseg", "serve", str(model), "--port", str(port), *options]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        served = ServedProcess(f"http://127.0.0.1:{port}", process, log)
        try:
            if not became_ready(served.url, timeout, lambda: process.poll() is None):
                stop(process)
                raise FastsegError(f"fastseg serve did not become ready: {served.output()[-2000:]}")
            yield served
        finally:
            stop(process)
            served.final = served.output()


def stop(process: subprocess.Popen) -> None:
    """SIGTERM (uvicorn's graceful shutdown), SIGKILL if it is still there after `STOP_SECONDS`."""
    process.terminate()
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
