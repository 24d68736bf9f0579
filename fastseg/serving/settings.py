"""What a `fastseg serve` process is told: limits, batching, auth. No FastAPI here (the CLI reads
the defaults for `--help`)."""

from __future__ import annotations

import math
import urllib.parse
from dataclasses import dataclass

from fastseg.errors import OptionError, quoted

DEFAULT_HOST = "127.0.0.1"  # a laptop's model is not offered to the whole network unless asked
DEFAULT_PORT = 8000
MAX_TILE = 2048  # a large upload's windows are tile² each: bounded so one request cannot ask for GBs
# A served `overlap` multiplies a request's forward passes by up to (1 / (1 - overlap))²: at 0.99 a
# window started every pixel (940,000 passes for a 1000² upload at tile=32); 0.75 computes a pixel
# at most 16 times. `fastseg predict` on one's own machine keeps the whole range below 1.
MAX_OVERLAP = 0.75
# A tiled request's model work, counted in window pixels plus WINDOW_COST_PIXELS a window (its own
# cost in passes, copies and blending: a 32² window took about as long as 1,000 more pixels on a
# CPU). `tile=32&overlap=0.75` on a 5000² upload was 97,000 windows, the better part of an hour of
# the one model thread every request shares. 96 Mpx lets a 6000x4000 photo through at tile=512
# (23 Mpx) and 8192² at tile=2048 with no overlap (64 Mpx); `fastseg predict` on one's own machine
# has no such limit.
MAX_TILED_PIXELS = 96 * 2**20
WINDOW_COST_PIXELS = 1024
MAX_TASKS = 64  # Label Studio tasks in one /predict request
# Bounds on what the C parsers see, counted before they run: json and ElementTree hold the GIL, so
# parsing in a thread of its own still stalls the event loop for as long as they take
MAX_JSON_VALUES = 20_000  # `{`, `[` and `,` in a /predict body: 64 tasks hold a few hundred
MAX_CONFIG_TAGS = 10_000  # `<` in a labeling config: Label Studio's hold tens
LOCAL_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def check_label_studio_url(url: str | None, name: str = "label_studio_url") -> None:
    """`OptionError` unless `url` is an http:// or https:// address, the scheme in any case (RFC 3986,
    3.1: schemes are case-insensitive). Task images are fetched from Label Studio over HTTP: a
    file:// (or ftp://) address would let a task's `..` or absolute path read the server's own
    files. The one check, so `fastseg serve` (`name` its option) and the library agree."""
    if url is None or url == "":
        return
    scheme, separator, _ = url.partition("://") if isinstance(url, str) else ("", "", "")
    if not (separator and scheme.isascii() and scheme.lower() in ("http", "https")):
        raise OptionError(f"{name} {quoted(str(url))}: an http:// or https:// address")
    # no host (http://), a space or control character, or a port past 65535: every task image's
    # fetch would fail, one request at a time; said once here, at start
    try:  # urlsplit itself refuses a bracket left open (`http://[::1`) or not an address (`[zz]`)
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - reading it checks it: a ValueError past 65535 or for no number
        host = parts.hostname
    except ValueError:
        host = None
    if not host or not url.isprintable() or any(character.isspace() for character in url):
        raise OptionError(f"{name} {quoted(url)}: an http:// or https:// address naming Label Studio's host")


@dataclass(frozen=True)
class ServeSettings:
    """`max_batch` requests share one forward pass, gathered for at most `max_wait_ms`;
    `max_queue` requests may be in flight at once (decoding, waiting, running, encoding): one
    more is a 503 with Retry-After, so memory is bounded by `max_queue` x (upload + decoded image).
    `threads`: the pool that decodes and encodes, off the event loop."""

    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_upload_mb: float = 32.0
    max_queue: int = 64
    threads: int = 4
    token: str | None = None
    tta: bool = False
    label_studio_url: str | None = None
    label_studio_token: str | None = None
    # Host headers answered; None: any. Bound to 127.0.0.1, only local names: a web page cannot
    # reach the model through DNS rebinding (a name of its own that resolves to 127.0.0.1).
    allowed_hosts: tuple[str, ...] | None = None
    body_seconds: float = 60.0  # a body still arriving after this is 408: a trickle holds no slot

    def __post_init__(self) -> None:
        check_label_studio_url(self.label_studio_url)
        for name, least in (("max_upload_mb", 0.001), ("max_wait_ms", 0.0), ("body_seconds", 0.001)):
            value = getattr(self, name)  # click's FloatRange passes NaN: no comparison with it is true
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= least):
                option = "--" + name.replace("_", "-")
                raise OptionError(f"{option} {value}: a finite number of at least {least:g}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
