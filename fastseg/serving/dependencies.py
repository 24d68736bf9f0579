"""FastAPI dependencies: the engine, token auth, admission (the bounded number of requests in
flight) and the request body read under `--max-upload-mb`, all in memory."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import ClientDisconnect

from fastseg.errors import clipped, quoted
from fastseg.serving.engine import Engine
from fastseg.serving.errors import ServeError
from fastseg.serving.settings import ServeSettings

RAW_TYPES = ("image/", "application/octet-stream")
FILE_FIELD = "file"
# Starlette's own form parser takes at most 1,000 fields and 1,000 files: each part costs a Python
# callback and objects, and 300,000 tiny parts (15 MB) took seconds and ~250 MB to parse
MAX_PARTS = 1000


def settings(request: Request) -> ServeSettings:
    return request.app.state.settings


def engine(request: Request) -> Engine:
    return request.app.state.engine


Served = Annotated[Engine, Depends(engine)]
Settings = Annotated[ServeSettings, Depends(settings)]


def ready_engine(served: Served) -> Engine:
    """The engine once the model is loaded and warmed up; before, 503 with Retry-After."""
    if not served.ready and served.failed:  # why is in the server's log: not a client's to read
        raise ServeError(503, "the model's warm-up failed: the server will not become ready (see its log)")
    if not served.ready:
        raise ServeError(503, "the model is still loading; retry shortly", {"Retry-After": "1"})
    return served


def trusted_host(request: Request, config: Settings) -> None:
    """With `allowed_hosts`, a request naming another host is refused (421)."""
    if config.allowed_hosts is None:
        return
    host = request.headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if name.lower() not in config.allowed_hosts:
        raise ServeError(
            421, f"host {quoted(host, 80)} is not served here (fastseg serve --host names the address)"
        )


def presented_token(request: Request) -> str | None:
    """`Authorization: Bearer TOKEN`, or HTTP Basic whose password is the token (Label Studio's
    ML backend connection offers basic auth)."""
    try:  # HTTP headers arrive as latin-1 text; a token is any UTF-8
        header = request.headers.get("authorization", "").encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return None
    return None


def authorised(request: Request, config: Settings) -> None:
    """With `--token`, every API call presents it; compared in constant time (bytes: any UTF-8)."""
    if config.token is None:
        return
    given = presented_token(request)
    if given is None or not hmac.compare_digest(given.encode("utf-8"), config.token.encode("utf-8")):
        raise ServeError(401, "missing or wrong token: send Authorization: Bearer TOKEN",
                         {"WWW-Authenticate": "Bearer"})  # fmt: skip


async def admitted(served: Served) -> AsyncIterator[None]:
    """At most `--max-queue` requests decoding, waiting, running or encoding at once; one more
    is told to come back (503, Retry-After) before its body is read."""
    if served.in_flight >= served.settings.max_queue:
        raise ServeError(
            503, f"busy: {served.in_flight} requests in flight; retry shortly", {"Retry-After": "1"}
        )
    served.in_flight += 1
    try:
        yield
    finally:
        served.in_flight -= 1


async def body(request: Request, config: Settings) -> bytes:
    """The whole body, refused with 413 as soon as it passes `--max-upload-mb` (a declared
    Content-Length is checked before anything is read)."""
    limit = config.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ServeError(400, f"Content-Length {quoted(declared, 40)} is not a number")
        if int(declared) > limit:
            raise ServeError(
                413, f"body of {int(declared)} bytes is over the limit of {limit} (--max-upload-mb)"
            )

    async def read() -> bytes:
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise ServeError(413, f"body over the limit of {limit} bytes (--max-upload-mb)")
            chunks.append(chunk)
        return b"".join(chunks)

    try:  # asyncio.wait_for, not asyncio.timeout: that is Python 3.11+, and 3.10 is supported
        return await asyncio.wait_for(read(), config.body_seconds)
    except ClientDisconnect:
        raise ServeError(400, "the client went away before the body was sent") from None
    except (TimeoutError, asyncio.TimeoutError):  # one type from 3.11; two on 3.10
        raise ServeError(408, f"the body took over {config.body_seconds:g} s to arrive") from None


Ready = Annotated[Engine, Depends(ready_engine)]
Body = Annotated[bytes, Depends(body)]


@dataclass
class Upload:
    data: bytes
    filename: str


async def upload(request: Request, raw: Body, served: Served) -> Upload:
    """The image of a `/v1/segment` request: the multipart field `file` (parsed off the event
    loop), or the body itself when sent as `image/*` or `application/octet-stream`; anything
    else is 415."""
    content_type = request.headers.get("content-type", "")
    kind = content_type.split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        return await served.parsed(multipart_file, raw, content_type)
    if kind.startswith(RAW_TYPES):
        return Upload(raw, "")
    shown = clipped(kind, 60) or "none"
    raise ServeError(415, f"content type {shown}: send multipart/form-data with a '{FILE_FIELD}' field, "
                          "or the image itself as image/*")  # fmt: skip


def multipart_file(raw: bytes, content_type: str) -> Upload:
    """The `file` field of a multipart body, parsed in memory by python-multipart's streaming
    parser (Starlette's form parser spools large parts to temporary files: none is written here)."""
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise ServeError(400, "multipart/form-data without a boundary")
    parts: list[dict] = []
    header: list[bytes] = [b"", b""]

    def on_part_begin() -> None:
        if len(parts) == MAX_PARTS:
            raise ServeError(413, f"over {MAX_PARTS} parts in the multipart body: send the image "
                                  f"in one '{FILE_FIELD}' field")  # fmt: skip
        parts.append({"headers": {}, "data": []})

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def on_header_end() -> None:
        parts[-1]["headers"][header[0].strip().lower()] = header[1].strip()
        header[0], header[1] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1]["data"].append(data[start:end])

    ended: list[bool] = []

    def on_end() -> None:
        ended.append(True)

    callbacks = {"on_part_begin": on_part_begin, "on_header_field": on_header_field,
                 "on_header_value": on_header_value, "on_header_end": on_header_end,
                 "on_part_data": on_part_data, "on_end": on_end}  # fmt: skip
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        parser.write(raw)
        parser.finalize()
    except (MultipartParseError, ValueError) as error:
        raise ServeError(400, f"malformed multipart body ({error})") from None
    if not ended:  # the parser takes a body cut short without complaint: its last part may be too
        raise ServeError(400, "malformed multipart body (it ends before its closing boundary)")
    files = []
    for part in parts:
        _, disposition = parse_options_header(part["headers"].get(b"content-disposition", b""))
        if disposition.get(b"name") == FILE_FIELD.encode():
            filename = disposition.get(b"filename", b"").decode("utf-8", "replace")
            files.append(Upload(b"".join(part["data"]), filename))
    if len(files) > 1:  # which one was meant? answering for either could mislabel the other
        raise ServeError(422, f"{len(files)} '{FILE_FIELD}' fields in the multipart body: send one image "
                              "per request")  # fmt: skip
    if not files:
        raise ServeError(422, f"no '{FILE_FIELD}' field in the multipart body "
                              f"(curl -F {FILE_FIELD}=@photo.jpg)")  # fmt: skip
    return files[0]
