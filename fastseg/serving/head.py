"""HEAD answered as GET without the body, on every GET route.

Starlette's plain `Route` adds HEAD beside GET, FastAPI's `APIRoute` does not: HEAD on /docs, its
files, /healthz or /v1/model was 405 (a link checker, `curl -I` or a proxy's probe asks HEAD).
Adding HEAD to each route would also add a "head" operation per path to the OpenAPI spec, and a
route added later could forget it; this wrapper is one place for all. HTTP (RFC 9110, 9.3.2): the
same status and headers as GET, Content-Length included, and no body.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ASKED = "fastseg.asked_method"  # scope key: the method the client sent, where the app sees another


def asked_method(request: HTTPConnection) -> str:
    """The method the client sent, for the server's own log lines: HEAD for a HEAD that the
    routes see as GET (a line saying GET would send whoever reads the log after the wrong request)."""
    return request.scope.get(ASKED) or request.scope.get("method", "")


class HeadAsGet:
    """ASGI middleware: a HEAD request reaches the app as a GET; what it sends back loses its body.

    The scope is copied, not changed: the server keeps seeing HEAD (uvicorn then sends no body
    either, and its access line says HEAD); the copy keeps HEAD under `ASKED` for the app's own
    log lines. A route without GET still answers 405, with its Allow header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET", ASKED: "HEAD"}, receive, without_body)
