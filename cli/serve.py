"""`fastseg serve`."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from cli.errors import user_errors
from cli.options import RequiredInHelp, positional_alias
from cli.output import say
from fastseg.errors import clipped, shown
from fastseg.inference.precision import PRECISIONS
from fastseg.launch.device import DEVICES
from fastseg.serving.settings import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    LOCAL_NAMES,
    ServeSettings,
    check_label_studio_url,
)

DEFAULTS = ServeSettings()
MODEL_PATH = click.Path(path_type=Path, exists=True)


def require_serve_extra() -> None:
    """FastAPI, uvicorn, python-multipart and fastapi-offline (the docs' files), or one line naming
    the extra."""
    import importlib.util

    missing = [
        name
        for name in ("fastapi", "uvicorn", "python_multipart", "fastapi_offline")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        from fastseg.extras import install_hint

        raise click.ClickException(f"fastseg serve needs {', '.join(missing)}: {install_hint('serve')}")


def check_address(host: str, port: int) -> None:
    """Bind and release `host:port` before the model is loaded: a port in use is one line now,
    not uvicorn's error after a model load and a warm-up. A name the IDNA codec refuses (an empty
    label, `a..b`, or one over 63 letters) is a UnicodeError, not an OSError: the same one line."""
    import socket

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except (OSError, UnicodeError) as error:
        reason = (
            "not a host name: a part between dots is empty or over 63 letters"
            if isinstance(error, UnicodeError)
            else error.strerror or error
        )
        line = f"cannot listen on {clipped(host, 100)}:{port} ({reason})"
        raise click.ClickException(shown(line)) from None


def announced(model: Path, host: str, port: int) -> str:
    """The line saying where the server listens, as a browser opens it: an IPv6 address in
    brackets (RFC 3986, 3.2.2); with port 0 the OS picks the port as uvicorn binds, so uvicorn's
    line names it (an address ending in :0 is one where nothing listens)."""
    name = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if port == 0:
        where = f"on a free port of {name} (uvicorn's next lines name it; "
    else:
        where = f"on http://{name}:{port} ("
    return f"fastseg serve: {model} {where}page at /, API docs at /docs)"


@click.command(context_settings={"show_default": True})
@click.option("--model", cls=RequiredInHelp, type=MODEL_PATH,
              help="A run folder, its model.pth, or an .onnx file (fp32 or INT8).")  # fmt: skip
@click.option(
    "--host", default=DEFAULT_HOST, help="Address to bind; 0.0.0.0 offers the model to the network."
)
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT)
@click.option("--max-batch", type=click.IntRange(1, 256), default=DEFAULTS.max_batch,
              help="Concurrent images run in one forward pass.")  # fmt: skip
@click.option("--max-wait-ms", type=click.FloatRange(0, 10_000), default=DEFAULTS.max_wait_ms,
              help="How long the first image of a batch waits for others.")  # fmt: skip
@click.option("--max-upload-mb", type=click.FloatRange(0.001, 4096), default=DEFAULTS.max_upload_mb,
              help="Largest request body; a larger one is refused (413).")  # fmt: skip
@click.option("--max-queue", type=click.IntRange(1, 100_000), default=DEFAULTS.max_queue,
              help="Requests in flight at once; one more is told to retry (503, Retry-After).")  # fmt: skip
@click.option("--threads", type=click.IntRange(1, 256), default=DEFAULTS.threads,
              help="Threads that decode and encode images, off the event loop.")  # fmt: skip
@click.option("--token", envvar="FASTSEG_SERVE_TOKEN", default=None, show_envvar=True,
              help="Require `Authorization: Bearer TOKEN` (the variable keeps it out of ps).")  # fmt: skip
@click.option("--device", type=click.Choice(DEVICES), default="auto")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto",
              help="auto: bf16 on GPUs and on CPUs with native bf16, else fp32 (as predict).")  # fmt: skip
@click.option("--access-log", is_flag=True, help="Log every request (refused ones are always logged).")
@click.option("--tta", is_flag=True, help="Flip test-time augmentation unless a request says tta=0.")
@click.option(
    "--label-studio-url", default=None, help="Label Studio's address: task images are fetched from it only."
)
@click.option("--label-studio-token", envvar="LABEL_STUDIO_API_KEY", default=None, show_envvar=True,
              help="Label Studio's access token, to fetch task images.")  # fmt: skip
@positional_alias("model", MODEL_PATH, "model")  # `fastseg serve MODEL` works too (unlisted)
@user_errors
def command(model: Path, host: str, port: int, device: str, precision: str, access_log: bool,
            **options) -> None:  # fmt: skip
    """Serve the model over HTTP: POST /v1/segment (predict's masks), GET /v1/model, /healthz,
    /readyz, Label Studio's /predict, a page at / and the API docs at /docs."""
    token = options["token"]
    if token is not None and (not token or token != token.strip() or not token.isprintable()):
        raise click.UsageError("--token: a non-empty printable value without surrounding spaces")
    require_serve_extra()
    check_label_studio_url(options["label_studio_url"], "--label-studio-url")  # the library's own check
    import uvicorn
    from uvicorn.logging import DefaultFormatter

    from fastseg.inference.segmenter import Segmenter
    from fastseg.launch.device import resolve_device
    from fastseg.serving.app import create_app

    check_address(host, port)
    local = host in LOCAL_NAMES
    settings = ServeSettings(**options, allowed_hosts=LOCAL_NAMES if local else None)
    segmenter = Segmenter.open(
        model, resolve_device(device), precision, settings.tta, requested_device=device
    )
    if not local and not settings.token:
        warning = f"warning: serving on {host} without --token: anyone who can reach it can use the model"
        say(warning, err=True)
    say(announced(model, host, port), err=True)
    log = logging.getLogger("fastseg.serve")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(DefaultFormatter("%(levelprefix)s %(message)s", use_colors=False))  # uvicorn's
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    uvicorn.run(
        create_app(segmenter, settings), host=host, port=port, log_level="info", access_log=access_log
    )
