"""Session 37's hostile pass over `fastseg serve`, as a stranger's client would attack it. Each test
failed before its fix.

- `--host a..b` (an empty label) or a 300-letter name: a UnicodeError traceback from the IDNA codec
  instead of the one `cannot listen` line; a NUL in --host reached the terminal raw;
- a multipart body of 300,000 tiny parts (15 MB, under the upload limit) held the event loop for
  seconds (every other request and /healthz waited) and ~250 MB per request: the parts are
  capped, as Starlette's own form parser caps them (413);
- a /predict body (JSON, the labeling config's XML) and a multipart body were parsed on the event
  loop: a 14 MB list of tasks held it for 4 s; they are parsed off it, one body at a time, and a
  list of tasks over the limit is refused before each task is validated;
- the start line announced `--host ::1` as http://::1:8000 and `--port 0` as http://127.0.0.1:0;
- `--label-studio-url http://` (no host, a space, a NUL, port 99999) was taken at start and every
  task image failed later, one request at a time;
- an escape sequence in a refused request's path or header reached the server's log raw.
"""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from model_files import save_seeded_voc_model
from PIL import Image
from test_serve import live_server

from cli.main import main
from fastseg.errors import OptionError
from fastseg.inference.segmenter import Segmenter
from fastseg.serving import dependencies
from fastseg.serving.app import create_app
from fastseg.serving.routes import label_studio
from fastseg.serving.settings import ServeSettings

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return save_seeded_voc_model(tmp_path_factory.mktemp("model") / "model.pth")


@pytest.fixture(scope="module")
def picture() -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def check_error(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and words in body["error"], body
    assert "\n" not in body["error"] and "Traceback" not in response.text


# ---- start-up ----


@pytest.mark.parametrize("host", ["a..b", "x" * 300, ".", "bad\x00host"])
def test_a_host_that_names_nothing_is_one_line(model_file, monkeypatch, host):
    """The IDNA codec refuses an empty or 64+ letter label with a UnicodeError (not an OSError):
    it was a traceback. Every --host that cannot be bound is the one `cannot listen` line, its
    name escaped (a NUL in it does not reach the terminal), before the model is loaded."""
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("uvicorn started"))
    monkeypatch.setattr(Segmenter, "open", lambda *a, **k: pytest.fail("the model was loaded"))
    result = CliRunner().invoke(main, ["serve", str(model_file), "--host", host, "--port", "0"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot listen on "), result.output
    assert "\x00" not in result.output and "Traceback" not in result.output


# ---- bodies ----


def many_parts(count: int, image: bytes) -> bytes:
    field = b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\nv\r\n'
    file = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
    return field * count + file + image + b"\r\n--b--\r\n"


def test_a_multipart_body_of_many_parts_is_refused(model_file, picture):
    """300,000 parts took seconds of the event loop and ~250 MB to parse; a body of more parts
    than Starlette's own form parser takes (1,000) is a 413 line, and a few extra fields still
    pass beside the file."""
    app = create_app(Segmenter.open(model_file, CPU), ServeSettings())
    multipart = {"content-type": "multipart/form-data; boundary=b"}
    with live_server(app) as url:
        started = time.monotonic()
        answer = httpx.post(f"{url}/v1/segment", content=many_parts(5000, picture), headers=multipart)
        check_error(answer, 413, "over 1000 parts")
        assert time.monotonic() - started < 10
        answer = httpx.post(f"{url}/v1/segment", content=many_parts(20, picture), headers=multipart)
        assert answer.status_code == 200 and answer.content.startswith(b"\x89PNG")
        assert app.state.engine.in_flight == 0


PARSING = threading.Event()  # set while a slowed parse runs


def slowed(function, seconds: float):
    """`function`, taking `seconds` more (time.sleep: it holds whichever thread runs it), with
    `PARSING` set meanwhile, so the test measures while a parse is under way, not after."""

    def slow(*arguments, **options):
        PARSING.set()
        try:
            time.sleep(seconds)
            return function(*arguments, **options)
        finally:
            PARSING.clear()

    return slow


def health_seconds(url: str, request) -> float:
    """How long /healthz takes to answer while `request()` (another client's) is being parsed."""
    PARSING.clear()
    worker = threading.Thread(target=request)
    worker.start()
    assert PARSING.wait(30), "the other request's parse never started"
    started = time.monotonic()
    assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200
    took = time.monotonic() - started
    assert PARSING.is_set(), "the parse ended before /healthz answered: nothing was measured"
    worker.join(60)
    return took


@pytest.mark.slow
def test_request_bodies_are_parsed_off_the_event_loop(model_file, picture, monkeypatch):
    """A /predict JSON body (and its labeling config) and a multipart body were parsed on the event
    loop: while one slow parse ran, /healthz and every other request waited. Each parse is made
    3 s slower here; /healthz answers meanwhile, and both requests are still served."""
    monkeypatch.setattr(label_studio, "parse_json", slowed(label_studio.parse_json, 3))
    monkeypatch.setattr(dependencies, "multipart_file", slowed(dependencies.multipart_file, 3))
    app = create_app(Segmenter.open(model_file, CPU), ServeSettings())
    answers = []
    data_url = "data:image/png;base64," + base64.b64encode(picture).decode()
    with live_server(app) as url:

        def predict():
            answers.append(httpx.post(f"{url}/predict", json={"tasks": [{"data": {"image": data_url}}]},
                                      timeout=60))  # fmt: skip

        def segment():
            answers.append(httpx.post(f"{url}/v1/segment", files={"file": ("a.png", picture)}, timeout=60))

        assert health_seconds(url, predict) < 1.5
        assert health_seconds(url, segment) < 1.5
    assert [answer.status_code for answer in answers] == [200, 200], [answer.text for answer in answers]
    assert answers[0].json()["results"][0]["result"] and answers[1].content.startswith(b"\x89PNG")


def test_a_list_of_tasks_over_the_limit_is_refused_before_validation(model_file, monkeypatch):
    """Validating each of a million tasks took seconds and a GB; the count is checked first."""
    validated = []
    real = label_studio.LabelStudioRequest.model_validate
    monkeypatch.setattr(label_studio.LabelStudioRequest, "model_validate",
                        lambda value: validated.append(1) or real(value))  # fmt: skip
    app = create_app(Segmenter.open(model_file, CPU), ServeSettings())
    with live_server(app) as url:
        answer = httpx.post(f"{url}/predict", json={"tasks": [{"data": {}}] * 1_000})
    check_error(answer, 413, "1000 tasks in one request; at most 64")
    assert validated == []


@pytest.mark.parametrize(
    ("host", "port", "said"),
    [
        ("::1", "FREE", "on http://[::1]:FREE (page at /"),  # a port free now, not a fixed one
        ("127.0.0.1", "0", "on a free port of 127.0.0.1 (uvicorn's next lines name it; page at /"),
        ("::1", "0", "on a free port of [::1] (uvicorn's next lines name it; page at /"),
    ],
)
def test_the_address_line_names_an_address_one_can_open(model_file, monkeypatch, host, port, said):
    """`--host ::1` was announced as http://::1:8000 (no brackets: not a URL a browser opens), and
    `--port 0` as http://127.0.0.1:0, where nothing listens (the OS picks the port as uvicorn binds)."""
    import uvicorn

    if port == "FREE":
        try:
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
                probe.bind((host, 0))
                port = str(probe.getsockname()[1])
        except OSError:
            pytest.skip(f"no {host} on this machine")
        said = said.replace("FREE", port)
    ran = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: ran.append(options))
    result = CliRunner().invoke(main, ["serve", str(model_file), "--host", host, "--port", port])
    if result.exit_code == 1 and "cannot listen" in result.output:
        pytest.skip(f"no {host} on this machine: {result.output.strip()}")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("fastseg serve: ")]
    assert len(lines) == 1 and said in lines[0], result.output
    assert ran == [{"host": host, "port": int(port), "log_level": "info", "access_log": False}]


@pytest.mark.parametrize(
    "url", ["http://", "https:///data", "http://\x00x", "http://a b", "http://x:99999", "http://[::1", "http://[zz]/"]
)
def test_a_label_studio_url_naming_no_host_is_refused_at_start(model_file, monkeypatch, url):
    """`--label-studio-url http://` (no host, a NUL, a space, port 99999) was taken at start-up and
    every task image then failed, one request at a time. It is the one usage line at start."""
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("uvicorn started"))
    with pytest.raises(OptionError, match="naming Label Studio's host"):
        ServeSettings(label_studio_url=url)
    result = CliRunner().invoke(main, ["serve", str(model_file), "--port", "0", "--label-studio-url", url])
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    assert errors[0].startswith("Error: --label-studio-url ") and "\x00" not in result.output
    assert ServeSettings(label_studio_url="http://studio.example:8080/").label_studio_url


def test_a_clients_words_reach_the_servers_log_escaped(model_file, caplog):
    """A refused request's log line quoted the client's path and words as sent: an escape
    sequence in them (ESC [2J clears the operator's terminal) reached the server's log raw."""
    from fastapi.testclient import TestClient

    app = create_app(Segmenter.open(model_file, CPU), ServeSettings(), warm_up=False)
    client = TestClient(app, base_url="http://localhost", raise_server_exceptions=False)
    with client, caplog.at_level("WARNING", logger="fastseg.serve"):
        check_error(client.get("/a%1b[2Jb"), 404, "Not Found")
        answer = client.post("/v1/segment", content=b"x", headers={"content-type": "text/\x1b[31mred"})
        check_error(answer, 415, "content type text/\x1b[31mred")
    refused = [record for record in caplog.records if record.name == "fastseg.serve" and record.levelno >= 30]
    lines = [record.getMessage() for record in refused]
    assert len(lines) == 2, lines
    assert lines[0] == "GET /a\\x1b[2Jb -> 404 Not Found"
    assert lines[1].startswith("POST /v1/segment -> 415 content type text/\\x1b[31mred: ")
    assert not any("\x1b" in line for line in lines)
