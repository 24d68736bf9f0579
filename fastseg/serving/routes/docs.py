"""`GET /docs` (Swagger UI) and `/openapi.json`, with no CDN: the machine may be offline.

FastAPI's own docs pages load Swagger UI and ReDoc from a CDN, so offline they are blank. Swagger
UI's files come here from the `fastapi-offline` package (the same files FastAPI's CDN URLs name, kept
current by its maintainer), served under /docs/assets/ as FastAPI's guide "Self-hosting
JavaScript and CSS for docs" does with `get_swagger_ui_html`. They are routes of this app, not a
StaticFiles mount (fastapi-offline's `FastAPIOffline` mounts one), because a mount skips the app's
dependencies: here every docs URL passes the Host check (DNS rebinding), and only the names
below are ever opened, never a path from a request. ReDoc (/redoc) is off: its bundle draws a
"by Redocly" logo from Redocly's CDN, which no option removes, and Swagger UI says the same.

The token: /openapi.json asks for it as /v1/model does (it describes this server: its version and
every endpoint), and so does the page that loads it, with an HTTP Basic challenge: the browser
asks once (any user name, the token as password) and sends it with the spec's request and with
"Try it out", which `authorised` accepts. The assets need no token: they are the same public
files in every install, as the page at / is.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response

from fastseg.errors import quoted
from fastseg.serving.dependencies import Settings, authorised
from fastseg.serving.errors import ServeError

router = APIRouter(include_in_schema=False)
OPENAPI_URL = "/openapi.json"
ASSET_URL = "/docs/assets"
ASSETS = {  # name in fastapi-offline's package data -> content type
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}
SECURITY_HEADERS = {
    # same-origin files only (the page's one inline script and the styles Swagger UI sets inline);
    # images from data:/blob: URLs (Swagger UI shows a returned PNG from one)
    "Content-Security-Policy": "default-src 'none'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


def docs_authorised(request: Request, config: Settings) -> None:
    """`authorised`, but a refusal challenges with HTTP Basic, which makes a browser ask."""
    try:
        authorised(request, config)
    except ServeError as error:
        raise ServeError(
            error.status,
            "missing or wrong token: give any user name and the token as password "
            "(or send Authorization: Bearer TOKEN)",
            {"WWW-Authenticate": 'Basic realm="fastseg", charset="UTF-8"'},
        ) from None


@cache
def asset(name: str) -> bytes:
    """One of fastapi-offline's files, read once (about 1.7 MB for the three)."""
    return resources.files("fastapi_offline").joinpath("static", name).read_bytes()


@router.get(OPENAPI_URL, dependencies=[Depends(authorised)])
def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs", dependencies=[Depends(docs_authorised)])
def swagger_ui(request: Request) -> HTMLResponse:
    page = get_swagger_ui_html(
        openapi_url=OPENAPI_URL,
        title=f"{request.app.title} - API docs",
        swagger_js_url=f"{ASSET_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSET_URL}/swagger-ui.css",
        swagger_favicon_url=f"{ASSET_URL}/favicon.png",
        swagger_ui_parameters={"validatorUrl": None},  # else a badge image from swagger.io
    )
    return HTMLResponse(page.body, headers=SECURITY_HEADERS)


@router.get(ASSET_URL + "/{name}")
def docs_asset(name: str) -> Response:
    if name not in ASSETS:
        raise ServeError(404, f"no docs file {quoted(name, 80)}")
    headers = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
    return Response(asset(name), media_type=ASSETS[name], headers=headers)
