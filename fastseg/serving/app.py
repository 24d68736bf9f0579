"""The FastAPI application: routers per resource, every error as `{"error": "one line"}`.

`create_app(segmenter, settings)` takes a model already opened (the CLI opens it first, so a bad
model file is one line before any port is bound); the lifespan starts the batcher and runs one
warm-up image, after which /readyz says ready. Every refused request is logged in one line;
an unexpected failure is logged with its traceback and answered 500 with one line (never the
traceback), and the server goes on serving.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from fastseg import __version__
from fastseg.errors import shown
from fastseg.inference.segmenter import Segmenter
from fastseg.serving.dependencies import trusted_host
from fastseg.serving.engine import Engine
from fastseg.serving.errors import ServeError, one_line
from fastseg.serving.head import HeadAsGet, asked_method
from fastseg.serving.routes import docs, health, label_studio, model, page, segment
from fastseg.serving.settings import ServeSettings

log = logging.getLogger("fastseg.serve")


def create_app(segmenter: Segmenter, settings: ServeSettings | None = None, warm_up: bool = True) -> FastAPI:
    """The application serving `segmenter` under `settings`."""
    settings = settings or ServeSettings()
    engine = Engine(segmenter, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        starting = asyncio.create_task(engine.start(warm_up))  # /healthz answers while it warms up
        starting.add_done_callback(functools.partial(report_failed_start, engine))
        try:
            yield
        finally:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            await engine.stop()

    description = "Semantic segmentation with a fastseg model: the masks `fastseg predict` writes."
    # FastAPI's own /docs, /redoc and /openapi.json are off: they load from a CDN and skip the
    # app's dependencies; routes/docs.py serves /docs and /openapi.json offline, behind the Host
    # check (ReDoc stays off: it draws a logo from a CDN)
    app = FastAPI(title="fastseg", version=__version__, lifespan=lifespan, description=description,
                  dependencies=[Depends(trusted_host)], docs_url=None, redoc_url=None,
                  openapi_url=None)  # fmt: skip
    app.state.settings, app.state.engine = settings, engine
    for router in (segment.router, model.router, health.router, label_studio.router, page.router,
                   docs.router):  # fmt: skip
        app.include_router(router)
    app.add_middleware(HeadAsGet)  # HEAD on every GET route, as GET without the body

    @app.exception_handler(ServeError)
    async def refused(request: Request, error: ServeError) -> JSONResponse:
        return answer(request, error.status, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("query", "body"))
        return answer(request, 422, f"{where}: {first.get('msg')}" if where else str(first.get("msg")))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return answer(request, error.status_code, str(error.detail), dict(error.headers or {}))

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception) -> JSONResponse:
        log.error("%s %s -> 500", asked_method(request), shown(request.url.path), exc_info=error)
        return JSONResponse({"error": f"internal error ({type(error).__name__}); see the server's log"},
                            status_code=500)  # fmt: skip

    return app


def report_failed_start(engine: Engine, task: asyncio.Task) -> None:
    """A warm-up that fails leaves /readyz at 503; the log says why, in one line, and so do /readyz
    and every refused request (`Engine.failed`): they said "loading the model" for ever."""
    if not task.cancelled() and task.exception() is not None:
        error = task.exception()
        engine.failed = f"{type(error).__name__}: {one_line(str(error))}"
        log.error("the model's warm-up failed, the server will not become ready: %s", engine.failed)


def answer(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """`{"error": message}` with `status`, and one log line saying who was refused and why. The
    path and the message quote what the client sent: escaped in the log (`shown`), where an
    escape sequence would otherwise reach the operator's terminal (ESC [2J clears it)."""
    line = one_line(message)
    log.warning("%s %s -> %d %s", asked_method(request), shown(request.url.path), status, shown(line))
    return JSONResponse({"error": line}, status_code=status, headers=headers)
