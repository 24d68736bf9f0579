"""`fastseg serve`: the masks `predict` writes, byte for byte (torch, ONNX, INT8), one JSON line for
every bad request and the next request served, dynamic batching with a bounded queue, health and
model description, COCO RLE read back by pycocotools, Label Studio's /predict in its own format.

The model is a seeded, untrained 32² network whose BatchNorm statistics are randomised, so its
masks hold several classes; servers run on 127.0.0.1 only (uvicorn in a thread, or `fastseg
serve` as a subprocess), on a free port.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from fastapi.testclient import TestClient
from model_files import save_seeded_voc_model, write_run_files
from PIL import Image

from cli.main import main
from fastseg.data.voc import VOC_CLASSES
from fastseg.errors import FastsegError, OptionError
from fastseg.importing.labelstudio import decode_brush
from fastseg.inference.segmenter import Segmenter
from fastseg.serving.app import create_app
from fastseg.serving.batching import Batcher, Busy
from fastseg.serving.encoding import brush_rle, coco_rle
from fastseg.serving.readiness import became_ready, free_port, served_process
from fastseg.serving.settings import ServeSettings

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return save_seeded_voc_model(tmp_path_factory.mktemp("model") / "model.pth")


def noise(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed + width * 1000 + height)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).convert(mode)


def encoded(image: Image.Image, format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Files of several sizes, modes and formats, one EXIF-rotated."""
    folder = tmp_path_factory.mktemp("images")
    noise(131, 97).save(folder / "odd.jpg")
    noise(40, 33, "L").save(folder / "grey.png")
    noise(50, 60, "RGBA").save(folder / "alpha.png")
    noise(45, 35, "P").save(folder / "palette.gif")
    noise(300, 200, seed=3).save(folder / "large.png")
    rotated = noise(40, 20, seed=5)
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(folder / "rotated.jpg", exif=exif)
    return folder


def predicted(model: Path, images: Path, out: Path, *options: str) -> Path:
    result = CliRunner().invoke(
        main,
        [
            "predict",
            "--model",
            str(model),
            str(images),
            "--out",
            str(out),
            "--quiet",
            "--num-workers",
            "0",
            *options,
        ],
    )
    assert result.exit_code == 0, result.output
    return out


def wait_ready(client, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the server never became ready"
        time.sleep(0.05)


@contextlib.contextmanager
def served_client(model: Path, **settings):
    app = create_app(Segmenter.open(model, CPU), ServeSettings(**settings))
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


@pytest.fixture(scope="module")
def client(model_file):
    with served_client(model_file, max_upload_mb=1) as client:
        yield client


@contextlib.contextmanager
def live_server(app, log_level: str = "warning"):
    """uvicorn serving `app` on 127.0.0.1 in a thread of this process (so a test can look inside
    the engine); stopped on exit."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        assert became_ready(url, 60, thread.is_alive), "server did not start"
        yield url
    finally:
        server.should_exit = True
        thread.join(30)


def test_became_ready_waits_for_readyz_and_gives_up_on_an_ended_server(model_file):
    """True once /readyz is 200; False at its timeout while /readyz is 503 (the model still
    loading) or nobody answers, at once for a server that ended; only http(s) addresses."""
    port = free_port()
    started = time.monotonic()
    assert not became_ready(f"http://127.0.0.1:{port}", 60, running=lambda: False)
    assert not became_ready(f"http://127.0.0.1:{port}", 0.3)
    assert time.monotonic() - started < 5
    with pytest.raises(OptionError, match="http:// or https://"):
        became_ready("file:///etc", 1)
    for timeout in (float("nan"), -1):
        with pytest.raises(OptionError, match="seconds, 0 or more"):
            became_ready(f"http://127.0.0.1:{port}", timeout)

    class Loading(BaseHTTPRequestHandler):  # a server whose warm-up never ends
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(503 if self.path == "/readyz" else 200)
            self.end_headers()

        def log_message(self, *args):
            pass

    loading = HTTPServer(("127.0.0.1", 0), Loading)
    threading.Thread(target=loading.serve_forever, daemon=True).start()
    try:
        assert not became_ready(f"http://127.0.0.1:{loading.server_address[1]}", 0.5)
    finally:
        loading.shutdown()
    with live_server(create_app(Segmenter.open(model_file, CPU), ServeSettings())) as url:
        assert became_ready(url, 1) and httpx.get(f"{url}/readyz").json()["ready"] is True
    started = time.monotonic()
    gone = served_process(model_file.parent / "gone.pth", timeout=120)
    with pytest.raises(FastsegError, match="did not become ready: (?s:.*)gone.pth' does not exist"), gone:
        pass
    assert time.monotonic() - started < 60  # the server's end, not the timeout


def masks_of(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.glob("*.png"))}


def assert_served_as_predicted(model: Path, images: Path, out: Path, **description: object) -> None:
    """Each image sent as `curl -F file=@...` would comes back as the mask `predict` wrote for it
    into `out`; /v1/model describes the model as `description` says (runtime, precision...)."""
    expected = masks_of(predicted(model, images, out))
    with served_client(model) as client:
        described = client.get("/v1/model").json()
        assert {key: described[key] for key in description} == description
        for path in sorted(images.iterdir()):
            response = client.post("/v1/segment", files={"file": (path.name, path.read_bytes())})
            assert response.content == expected[path.with_suffix(".png").name], path.name


def check_error(response, status: int, words: str) -> None:
    """A refused request: the status, `{"error": one line}` naming the problem, no traceback."""
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"]
    assert words in body["error"]
    assert "\n" not in body["error"] and "Traceback" not in response.text


# ---- the same masks as predict ----


@pytest.mark.slow
def test_served_masks_are_predicts_files_byte_for_byte_over_http(model_file, images, tmp_path):
    """`fastseg serve` as a user starts it; each image sent as `curl -F file=@...` would, one at a
    time and then all at once (so several share forward passes), comes back as the bytes predict
    wrote."""
    expected = masks_of(predicted(model_file, images, tmp_path / "out"))
    assert len(expected) == 6
    with served_process(model_file, timeout=120) as served:  # FastsegError with its output if not ready
        url = served.url
        files = sorted(path for path in images.iterdir())
        for path in files:
            response = httpx.post(f"{url}/v1/segment", files={"file": (path.name, path.read_bytes())})
            assert response.status_code == 200 and response.headers["content-type"] == "image/png"
            assert response.content == expected[Path(path.name).with_suffix(".png").name], path.name

        async def all_at_once() -> list[bytes]:
            async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                sent = [
                    http.post(
                        "/v1/segment",
                        content=path.read_bytes(),
                        headers={"content-type": "application/octet-stream"},
                    )
                    for path in files
                ]
                return [response.content for response in await asyncio.gather(*sent)]

        assert asyncio.run(all_at_once()) == [expected[path.with_suffix(".png").name] for path in files]
    assert "Traceback" not in served.output() and "fastseg serve:" in served.output()


@pytest.fixture(scope="module")
def onnx_run(tmp_path_factory, voc_root, model_file):
    """A run folder (model.pth, split.json, config.json naming the tiny data set) and its exports."""
    pytest.importorskip("onnxruntime")
    folder = tmp_path_factory.mktemp("run")
    (folder / "model.pth").write_bytes(model_file.read_bytes())
    write_run_files(folder, voc_root)
    result = CliRunner().invoke(main, ["export", str(folder)])
    assert result.exit_code == 0, result.output
    return folder


@pytest.mark.slow
def test_served_onnx_masks_are_predicts_files(onnx_run, images, tmp_path):
    model = onnx_run / "model.onnx"
    assert_served_as_predicted(model, images, tmp_path / "out", runtime="onnxruntime", precision="fp32")


@pytest.mark.slow
def test_served_int8_masks_are_predicts_files(onnx_run, images, tmp_path):
    model = tmp_path / "model.int8.onnx"
    result = CliRunner().invoke(
        main,
        [
            "export",
            str(onnx_run),
            "--int8",
            "--out",
            str(model),
            "--accept-int8-loss",
            "--calibration-images",
            "4",
            "--num-workers",
            "0",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert_served_as_predicted(model, images, tmp_path / "out", precision="int8")


@pytest.mark.slow
def test_tta_tiles_and_overlay_are_predicts_too(client, model_file, images, tmp_path):
    for options, query in (
        (["--tta"], "tta=1"),
        (["--tile", "32", "--overlap", "0.5"], "tile=32&overlap=0.5"),
    ):
        expected = masks_of(predicted(model_file, images, tmp_path / query.replace("&", "_"), *options))
        for path in sorted(images.iterdir()):
            response = client.post(f"/v1/segment?{query}", files={"file": (path.name, path.read_bytes())})
            assert response.content == expected[path.with_suffix(".png").name], (query, path.name)
    out = predicted(model_file, images / "odd.jpg", tmp_path / "overlay", "--overlay")
    response = client.post(
        "/v1/segment?overlay=1", files={"file": ("odd.jpg", (images / "odd.jpg").read_bytes())}
    )
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content == (out / "odd.overlay.jpg").read_bytes()


def test_json_gives_sizes_classes_shares_and_the_png(client, model_file, images):
    data = (images / "odd.jpg").read_bytes()
    png = client.post("/v1/segment", content=data, headers={"content-type": "image/jpeg"}).content
    body = client.post("/v1/segment?format=json", content=data, headers={"content-type": "image/jpeg"}).json()
    assert (body["width"], body["height"]) == (131, 97)
    assert base64.b64decode(body["mask_png_base64"]) == png
    labels = np.array(Image.open(io.BytesIO(png)))
    loaded = Segmenter.open(model_file, CPU).loaded
    assert [entry["name"] for entry in body["classes"]] == loaded.classes
    assert [tuple(entry["color"]) for entry in body["classes"]] == [tuple(c) for c in loaded.class_set.colors]
    counts = np.bincount(labels.ravel(), minlength=21)
    assert [entry["fraction"] for entry in body["classes"]] == pytest.approx(counts / labels.size, abs=1e-6)
    assert sum(1 for entry in body["classes"] if entry["fraction"] > 0) >= 2  # a mask worth checking


def test_coco_rle_decodes_with_pycocotools_to_each_class(client, images):
    pycocotools = pytest.importorskip("pycocotools.mask")
    data = (images / "large.png").read_bytes()
    labels = np.array(
        Image.open(
            io.BytesIO(
                client.post("/v1/segment", content=data, headers={"content-type": "image/png"}).content
            )
        )
    )
    body = client.post("/v1/segment?format=rle", content=data, headers={"content-type": "image/png"}).json()
    assert sorted(entry["index"] for entry in body["classes"]) == sorted(np.unique(labels).tolist())
    for entry in body["classes"]:
        rle = {"size": entry["rle"]["size"], "counts": entry["rle"]["counts"].encode()}
        decoded = pycocotools.decode(rle)
        assert decoded.shape == labels.shape
        assert np.array_equal(decoded, labels == entry["index"]), entry["name"]


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (64, 48)])
@pytest.mark.parametrize("share", [0.0, 0.03, 0.5, 1.0])
def test_coco_rle_equals_pycocotools_encoding(shape, share):
    pycocotools = pytest.importorskip("pycocotools.mask")
    labels = (np.random.default_rng(7).random(shape) < share).astype(np.uint8)
    counts = pycocotools.encode(np.asfortranarray(labels))["counts"].decode()
    assert coco_rle(labels, 1) == {"size": list(shape), "counts": counts}


# ---- bad input: a 4xx with one line, and the server goes on ----


def test_every_bad_request_is_one_json_line_and_the_next_is_served(client, images, monkeypatch, caplog):
    good = (images / "odd.jpg").read_bytes()
    truncated = encoded(noise(64, 64), "JPEG")[:300]
    multipart = {"content-type": "multipart/form-data; boundary=xyz"}
    cases = [
        (
            dict(content=b"I am not an image", headers={"content-type": "image/png"}),
            422,
            "not an image Pillow",
        ),
        (dict(content=truncated, headers={"content-type": "image/jpeg"}), 422, "truncated"),
        (dict(content=b"", headers={"content-type": "image/png"}), 422, "empty file"),
        (
            dict(content=b"x" * (1024 * 1024 + 1), headers={"content-type": "image/png"}),
            413,
            "--max-upload-mb",
        ),
        (dict(content=good, headers={"content-type": "text/plain"}), 415, "multipart/form-data"),
        (dict(content=good), 415, "content type none"),
        (dict(files={"photo": ("a.jpg", good)}), 422, "no 'file' field"),
        (dict(content=b"--xyz\r\nbroken", headers=multipart), 400, "closing boundary"),  # cut short
        (dict(content=good, headers={"content-type": "multipart/form-data"}), 400, "without a boundary"),
        (dict(content=good, headers={"content-type": "image/jpeg"}, params={"format": "xml"}), 422, "format"),
        (
            dict(
                content=good, headers={"content-type": "image/jpeg"}, params={"format": "json", "overlay": 1}
            ),
            422,
            "overlay=1 answers a JPEG",
        ),
        (dict(content=good, headers={"content-type": "image/jpeg"}, params={"tile": 8}), 422, "at least 32"),
        (dict(content=good, headers={"content-type": "image/jpeg"}, params={"tile": 10**9}), 422, "tile"),
        (
            dict(content=good, headers={"content-type": "image/jpeg"}, params={"tile": 64, "overlap": "nan"}),
            422,
            "overlap nan",
        ),
        (
            dict(content=good, headers={"content-type": "image/jpeg"}, params={"overlap": 0.5}),
            422,
            "needs tile",
        ),
        (dict(content=good, headers={"content-type": "image/jpeg"}, params={"tta": "maybe"}), 422, "tta"),
    ]
    for request, status, words in cases:
        caplog.clear()
        with caplog.at_level("WARNING", logger="fastseg.serve"):
            check_error(client.post("/v1/segment", **request), status, words)
        lines = [record.getMessage() for record in caplog.records if record.name == "fastseg.serve"]
        assert len(lines) == 1 and f"-> {status}" in lines[0] and "\n" not in lines[0], (words, lines)
        assert (
            client.post("/v1/segment", content=good, headers={"content-type": "image/jpeg"}).status_code
            == 200
        )
    check_error(client.get("/v1/nothing"), 404, "Not Found")
    check_error(client.get("/v1/segment"), 405, "Method Not Allowed")


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(client):
    def endless():
        yield b"\x89PNG" + b"\0" * 1000
        raise AssertionError("the body was read past the declared length check")

    headers = {"content-type": "image/png", "content-length": str(5 * 1024 * 1024)}
    check_error(client.post("/v1/segment", content=endless(), headers=headers), 413, "over the limit")


def test_a_chunked_body_is_cut_at_the_limit(client):
    sent = []

    def chunks():
        for _ in range(64):  # 4 MiB in 64 KiB chunks, no Content-Length
            sent.append(1)
            yield b"\0" * 65536

    check_error(
        client.post("/v1/segment", content=chunks(), headers={"content-type": "image/png"}),
        413,
        "over the limit",
    )


def test_decompression_bombs_and_images_over_the_pixel_limit_are_413(client, images, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    bomb = encoded(Image.new("RGB", (60, 60)))  # 3600 pixels > 2 x 1000: Pillow's error
    over = encoded(Image.new("RGB", (40, 40)))  # 1600 > 1000: Pillow's warning, an error here as in predict
    for data in (bomb, over):
        check_error(
            client.post("/v1/segment", content=data, headers={"content-type": "image/png"}),
            413,
            "too large to decode safely",
        )
    small = encoded(noise(30, 30))
    assert client.post("/v1/segment", content=small, headers={"content-type": "image/png"}).status_code == 200


def raising(error: BaseException):
    """A stand-in for a method or function that fails with `error`, whatever it is given."""

    def failing(*args, **kwargs):
        raise error

    return failing


def test_out_of_memory_is_that_requests_507_and_a_bug_a_500_line(client, images, monkeypatch):
    """Each failure is its one line, and the next request is served."""
    from fastseg.inference import files

    good = (images / "odd.jpg").read_bytes()
    allocator = "[enforce fail at alloc_cpu.cpp:116] DefaultCPUAllocator: can't allocate memory"
    bug = "shape mismatch deep inside\nTraceback (most recent call last): ..."
    failures = [
        (Segmenter, "labels", RuntimeError(allocator), 507, "out of memory at 131x97"),
        (Segmenter, "labels", RuntimeError(bug), 500, "internal error (RuntimeError)"),
        (files, "load_rgb", MemoryError(), 507, "out of memory while decoding"),
    ]
    jpeg = {"content-type": "image/jpeg"}
    for owner, name, error, status, words in failures:
        monkeypatch.setattr(owner, name, raising(error))
        check_error(client.post("/v1/segment", content=good, headers=jpeg), status, words)
        monkeypatch.undo()
        assert client.post("/v1/segment", content=good, headers=jpeg).status_code == 200


def test_no_file_is_written_for_a_large_upload(client, tmp_path, monkeypatch):
    """Starlette's form parser spools parts over 1 MB to temporary files; uploads here are parsed
    in memory. A 0.9 MB multipart upload with a path for a name leaves the temporary folder empty
    and opens no path."""
    import tempfile

    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    image = encoded(Image.fromarray(np.random.default_rng(1).integers(0, 255, (540, 540, 3), np.uint8)))
    assert 0.7e6 < len(image) < 1024 * 1024 - 1000
    response = client.post("/v1/segment", files={"file": ("../../../etc/passwd", image)})
    assert response.status_code == 200
    assert list(spool.iterdir()) == []


# ---- auth, limits, batching ----


def test_a_token_is_required_and_compared_whole(model_file, images):
    good = (images / "odd.jpg").read_bytes()
    with served_client(model_file, token="s3cret-é") as client:
        for headers in (
            {},
            {"authorization": "Bearer s3cret"},
            {"authorization": "Bearer s3cret-éx".encode()},
            {"authorization": "Basic !!!"},
            {"authorization": "Token s3cret-é".encode()},
        ):
            check_error(
                client.post("/v1/segment", content=good, headers={**headers, "content-type": "image/jpeg"}),
                401,
                "token",
            )
            check_error(client.get("/v1/model", headers=headers), 401, "token")
        bearer = {"authorization": "Bearer s3cret-é".encode()}
        ok = client.post("/v1/segment", content=good, headers={**bearer, "content-type": "image/jpeg"})
        assert ok.status_code == 200
        basic = {"authorization": "Basic " + base64.b64encode("label-studio:s3cret-é".encode()).decode()}
        assert client.get("/v1/model", headers=basic).status_code == 200
        assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
        assert client.get("/").status_code == 200  # the page asks for the token itself


def test_concurrent_requests_share_forward_passes(model_file, images):
    """16 requests at once with --max-batch 8: far fewer forward passes than requests, none over 8,
    and every answer the same bytes as that image alone."""
    app = create_app(Segmenter.open(model_file, CPU), ServeSettings(max_batch=8, max_wait_ms=200))
    files = sorted(images.iterdir())
    with live_server(app) as url:
        alone = {
            path.name: httpx.post(
                f"{url}/v1/segment", content=path.read_bytes(), headers={"content-type": "image/png"}
            ).content
            for path in files
        }
        batcher = app.state.engine.batcher
        before = sum(batcher.batch_sizes.values())

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                sent = [
                    http.post(
                        "/v1/segment",
                        content=files[number % len(files)].read_bytes(),
                        headers={"content-type": "image/png"},
                    )
                    for number in range(16)
                ]
                return await asyncio.gather(*sent)

        responses = asyncio.run(burst())
        assert [response.content for response in responses] == [
            alone[files[n % len(files)].name] for n in range(16)
        ]
        forwards = sum(batcher.batch_sizes.values()) - before
        assert forwards <= 6, batcher.batch_sizes
        assert max(batcher.batch_sizes) <= 8


def test_a_full_queue_is_503_with_retry_after_and_then_served(model_file, images):
    segmenter = Segmenter.open(model_file, CPU)
    app = create_app(segmenter, ServeSettings(max_queue=2, max_batch=1, max_wait_ms=0))
    runtime_logits = segmenter.runtime.logits

    def slow(batch):
        time.sleep(0.4)
        return runtime_logits(batch)

    good = (images / "odd.jpg").read_bytes()
    with live_server(app) as url:
        segmenter.runtime.logits = slow

        async def crowd() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                return await asyncio.gather(
                    *[
                        http.post("/v1/segment", content=good, headers={"content-type": "image/jpeg"})
                        for _ in range(6)
                    ]
                )

        responses = asyncio.run(crowd())
        statuses = sorted(response.status_code for response in responses)
        assert statuses.count(200) >= 2 and statuses.count(503) >= 1 and set(statuses) <= {200, 503}
        busy = next(response for response in responses if response.status_code == 503)
        assert busy.headers["retry-after"] == "1" and "busy" in busy.json()["error"]
        segmenter.runtime.logits = runtime_logits
        assert (
            httpx.post(f"{url}/v1/segment", content=good, headers={"content-type": "image/jpeg"}).status_code
            == 200
        )
        assert app.state.engine.in_flight == 0


def test_the_batcher_gathers_bounds_and_separates_keys():
    from concurrent.futures import ThreadPoolExecutor

    seen = []

    def run_batch(key, items):
        seen.append((key, list(items)))
        return [item * 10 for item in items]

    async def scenario():
        batcher = Batcher(run_batch, ThreadPoolExecutor(1), max_batch=3, max_wait=0.05, max_queue=7)
        worker = asyncio.create_task(batcher.run())
        jobs = [batcher.submit(number, "a" if number % 2 else "b") for number in range(7)]
        results = await asyncio.gather(*jobs)
        with pytest.raises(Busy):
            await asyncio.gather(*[batcher.submit(number) for number in range(9)])
        worker.cancel()
        return results

    assert asyncio.run(scenario()) == [number * 10 for number in range(7)]
    first = seen[:3]
    assert all(len(items) <= 3 and {key} == {("a" if n % 2 else "b") for n in items} for key, items in first)
    assert sorted(n for _, items in first for n in items) == list(range(7))


def test_ready_only_after_the_warm_up_and_health_meanwhile(model_file, images):
    segmenter = Segmenter.open(model_file, CPU)
    release = threading.Event()
    runtime_logits = segmenter.runtime.logits

    def held(batch):
        release.wait(30)
        return runtime_logits(batch)

    segmenter.runtime.logits = held
    app = create_app(segmenter, ServeSettings())
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert (
            ready.status_code == 503
            and ready.json()["ready"] is False
            and ready.headers["retry-after"] == "1"
        )
        check_error(
            client.post(
                "/v1/segment",
                content=(images / "odd.jpg").read_bytes(),
                headers={"content-type": "image/jpeg"},
            ),
            503,
            "still loading",
        )
        release.set()
        wait_ready(client)
        assert client.get("/readyz").json() == {"ready": True, "status": "ready"}


def test_the_model_description(client, model_file):
    from fastseg import __version__

    body = client.get("/v1/model").json()
    loaded = Segmenter.open(model_file, CPU).loaded
    assert [entry["name"] for entry in body["classes"]] == loaded.classes
    assert [entry["index"] for entry in body["classes"]] == list(range(21))
    assert (body["void"], body["input_size"], body["resize"], body["runtime"]) == (255, 32, "squish", "torch")
    assert body["precision"] in ("bf16", "fp32") and body["fastseg_version"] == __version__
    assert client.get("/openapi.json").json()["paths"]["/v1/segment"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200


# ---- Label Studio ----


def label_config(names: list[str]) -> str:
    """A Label Studio labeling config for brush segmentation (as its docs' BrushLabels example)."""
    labels = "".join(f'<Label value="{name}" background="#ff0000"/>' for name in names)
    brush = f'<BrushLabels name="brush" toName="photo">{labels}</BrushLabels>'
    return f'<View><Image name="photo" value="$img" zoom="true"/>{brush}</View>'


def packed(*fields: str) -> list[int]:
    """Bit fields, in order, as the bytes of a stream padded with zero bits."""
    bits = "".join(fields)
    bits += "0" * (-len(bits) % 8)
    return list(int(bits, 2).to_bytes(len(bits) // 8, "big"))


# thi-ng/rle-pack's header as Label Studio writes brushes: the value count (32 bits), the word size
# less one (5 bits: 8-bit words), the four run-length field widths less one (3, 4, 8, 16 bits)
HEADER = ("00111", "0010", "0011", "0111", "1111")


def test_brush_rle_is_label_studios_format_bit_for_bit():
    """The format's reference, written by hand from rle-pack's layout (independent of both of
    fastseg's implementations): a 1x3 mask [on, on, off] is 12 RGBA values, a run of 8 x 255 and
    a run of 4 x 0, each a repeat chunk (flag 1, width index 0: a 3-bit length less one, the word).
    The server writes exactly this; the importer's decoder, which the tests below read the
    server's masks with, reads it back, and reads a literal chunk (flag 0: that many words) too."""
    stream = packed(f"{12:032b}", *HEADER, "1", "00", "111", "11111111", "1", "00", "011", "00000000")
    assert brush_rle(np.array([[True, True, False]])) == stream
    assert decode_brush(stream, 1, 3).tolist() == [[255, 255, 0]]
    literal = packed(f"{4:032b}", *HEADER, "0", "00", "011", "10000000", "00000000", "00000000", "11111111")
    assert decode_brush(literal, 1, 1).tolist() == [[255]]


def test_label_studio_predict_answers_brushlabels_rle_in_its_format(client, images):
    data = (images / "large.png").read_bytes()
    labels = np.array(
        Image.open(
            io.BytesIO(
                client.post("/v1/segment", content=data, headers={"content-type": "image/png"}).content
            )
        )
    )
    present = sorted(np.unique(labels).tolist())
    assert len(present) >= 2
    names = list(VOC_CLASSES)
    left_out = VOC_CLASSES[present[-1]]
    names.remove(left_out)  # a class the project does not label: not pre-annotated
    request = {  # what Label Studio sends an ML backend (label_studio_ml/api.py `_predict`)
        "tasks": [
            {
                "id": 17,
                "data": {"img": "data:image/png;base64," + base64.b64encode(data).decode()},
                "annotations": [],
                "predictions": [],
            }
        ],
        "label_config": label_config(names),
        "project": "3.1700000000",
        "params": {"login": None, "password": None, "context": None},
    }
    response = client.post("/predict", json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"].startswith("fastseg-") and len(body["results"]) == 1
    regions = body["results"][0]["result"]
    assert [region["value"]["brushlabels"] for region in regions] == [[VOC_CLASSES[i]] for i in present[:-1]]
    for region in regions:
        assert (region["from_name"], region["to_name"], region["type"]) == ("brush", "photo", "brushlabels")
        assert (region["original_width"], region["original_height"], region["image_rotation"]) == (
            300,
            200,
            0,
        )
        assert region["value"]["format"] == "rle"
        decoded = decode_brush(region["value"]["rle"], 200, 300)
        expected = labels == VOC_CLASSES.index(region["value"]["brushlabels"][0])
        assert np.array_equal(decoded > 0, expected)
        assert set(np.unique(decoded).tolist()) <= {0, 255}
    assert client.post("/setup", json={"project": "3", "schema": label_config(["cat"])}).json()[
        "model_version"
    ]
    assert client.get("/health").json()["status"] == "UP"


def test_brush_rle_long_runs_and_edges():
    for mask in (
        np.zeros((300, 300), bool),
        np.ones((300, 300), bool),
        np.eye(5, dtype=bool),
        np.zeros((0, 4), bool),
    ):
        assert np.array_equal(decode_brush(brush_rle(mask), *mask.shape) > 0, mask)


class LabelStudioFiles(BaseHTTPRequestHandler):
    """A stand-in for Label Studio's file endpoint: serves one image to the right token."""

    image = b""
    asked: list[str] = []  # every path requested, in order

    def do_GET(self):  # noqa: N802 - http.server's name
        self.asked.append(self.path)
        if self.headers.get("authorization") != "Token ls-key":
            self.send_response(401)
            self.end_headers()
        elif self.path == "/data/upload/1/photo.png":
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.end_headers()
            self.wfile.write(self.image)
        elif self.path == "/away":
            self.send_response(302)
            self.send_header("location", "http://example.invalid/secret")
            self.end_headers()
        else:
            self.send_response(404)
            self.end_headers()

    def log_message(self, *args):
        pass


def test_label_studio_images_are_fetched_from_label_studio_only(model_file, images):
    LabelStudioFiles.image = (images / "odd.jpg").read_bytes()
    files = HTTPServer(("127.0.0.1", 0), LabelStudioFiles)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    studio = f"http://127.0.0.1:{files.server_address[1]}"

    def ask(client, image):
        return client.post("/predict", json={"tasks": [{"id": 1, "data": {"image": image}}]})

    try:
        with served_client(model_file) as client:
            check_error(ask(client, "/data/upload/1/photo.png"), 422, "--label-studio-url")
            check_error(ask(client, "/etc/passwd"), 422, "--label-studio-url")
        with served_client(model_file, label_studio_url=studio, label_studio_token="ls-key") as client:
            body = ask(client, "/data/upload/1/photo.png").json()
            assert body["results"][0]["result"][0]["original_width"] == 131
            assert ask(client, f"{studio}/data/upload/1/photo.png").status_code == 200
            check_error(
                ask(client, "http://169.254.169.254/latest/meta-data"), 422, "not on --label-studio-url"
            )
            check_error(ask(client, "file:///etc/passwd"), 422, "not on --label-studio-url")
            check_error(ask(client, "/away"), 422, "answered 302")
            check_error(ask(client, "/data/upload/1/missing.png"), 422, "answered 404")
            check_error(ask(client, 12), 422, "no image URL")
        with served_client(model_file, label_studio_url=studio, label_studio_token="wrong") as client:
            check_error(ask(client, "/data/upload/1/photo.png"), 422, "answered 401")
    finally:
        files.shutdown()


def test_a_task_never_reads_a_local_file(model_file, images, tmp_path):
    """No task reaches a file on the server's disk: not by `..` out of Label Studio's media, an
    absolute path, a link out of the media folder, nor a file:// URL (any spelling) — with or
    without --label-studio-url, and with a file:// one given to the library (the command refuses
    it). Each is a 4xx with one JSON line; the secret picture is never segmented, its path never
    echoed whole. Fetches that do go out reach Label Studio's host only."""
    secret = tmp_path / "secret" / "photo.png"
    secret.parent.mkdir()
    secret.write_bytes((images / "odd.jpg").read_bytes())
    media = tmp_path / "media" / "data" / "upload" / "1"
    media.mkdir(parents=True)
    (media / "link.png").symlink_to(secret)
    escapes = [
        "../../../../secret/photo.png",
        "/data/upload/1/../../../../secret/photo.png",
        str(secret),
        str(media / "link.png"),
        "data/upload/1/link.png",
        secret.as_uri(),
        f"file://localhost{secret}",
        f"FILE://{secret}",
        f" file://{secret}",
        f"file:{secret}",
    ]
    LabelStudioFiles.image, LabelStudioFiles.asked = b"", []
    files = HTTPServer(("127.0.0.1", 0), LabelStudioFiles)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    studio = f"http://127.0.0.1:{files.server_address[1]}"
    for local in ((tmp_path / "media").as_uri() + "/", f"ftp://{tmp_path}/", "/data", " http://x"):
        with pytest.raises(OptionError, match="an http:// or https:// address"):
            ServeSettings(label_studio_url=local)
    try:
        for url in (None, studio):
            with served_client(model_file, label_studio_url=url, label_studio_token="ls-key") as client:
                for image in escapes:
                    response = client.post("/predict", json={"tasks": [{"id": 1, "data": {"image": image}}]})
                    assert 400 <= response.status_code < 500, (url, image, response.text)
                    assert list(response.json()) == ["error"] and "\n" not in response.json()["error"]
                    assert "original_width" not in response.text and str(secret) not in response.text
    finally:
        files.shutdown()
    assert LabelStudioFiles.asked and all(path.startswith("/") for path in LabelStudioFiles.asked)


def test_label_studio_bad_requests_are_one_line(client, images):
    image = "data:image/png;base64," + base64.b64encode((images / "grey.png").read_bytes()).decode()
    bomb = '<!DOCTYPE v [<!ENTITY a "aaaa">]><View><BrushLabels name="t" toName="i"/></View>'
    cases = [
        (dict(content=b"{not json", headers={"content-type": "application/json"}), 400, "not JSON"),
        (dict(json={"tasks": "all"}), 422, "tasks"),
        (dict(json={"tasks": [{"data": {"image": image}}] * 65}), 413, "at most 64"),
        (dict(json={"tasks": [{"data": {"image": image}}], "label_config": "<View"}), 422, "not XML"),
        (dict(json={"tasks": [{"data": {"image": image}}], "label_config": bomb}), 422, "DOCTYPE"),
        (
            dict(
                json={"tasks": [{"data": {"image": image}}], "label_config": "<View><Image name='i'/></View>"}
            ),
            422,
            "no <BrushLabels",
        ),
        (
            dict(
                json={
                    "tasks": [{"data": {"image": image}}],
                    "label_config": '<View><BrushLabels name="t" toName="i"><Label value="Car"/>'
                    "</BrushLabels></View>",
                }
            ),
            422,
            "none of the model's classes",
        ),
        (dict(json={"tasks": [{"id": 9, "data": {"image": "data:image/png;base64,@@"}}]}), 422, "task 9: "),
        (
            dict(json={"tasks": [{"id": 9, "data": {"image": "data:image/png;base64,aGVsbG8="}}]}),
            422,
            "task 9: not a usable image",
        ),
    ]
    for request, status, words in cases:
        check_error(client.post("/predict", **request), status, words)
    assert client.post("/predict", json={"tasks": [{"data": {"image": image}}]}).status_code == 200


# ---- the command ----


def test_the_command_warns_on_an_open_host_without_a_token(model_file, monkeypatch):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append(options))
    result = CliRunner().invoke(
        main, ["serve", "--model", str(model_file), "--host", "0.0.0.0", "--port", "0"]
    )
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "without --token" in warnings[0]
    assert calls == [{"host": "0.0.0.0", "port": 0, "log_level": "info", "access_log": False}]
    result = CliRunner().invoke(main, ["serve", str(model_file), "--token", "t", "--port", "0"])
    assert result.exit_code == 0 and "warning" not in result.output
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["port"] == 0  # the default host: local only


def test_the_command_says_in_one_line_what_is_wrong(model_file, tmp_path, monkeypatch):
    import importlib.util

    (tmp_path / "junk.pth").write_bytes(b"not a model")
    result = CliRunner().invoke(main, ["serve", str(tmp_path / "junk.pth")])
    assert result.exit_code == 1 and "not a readable fastseg model" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 2 and "Missing option '--model'" in result.output
    result = CliRunner().invoke(main, ["serve", str(model_file), "--model", str(tmp_path / "junk.pth")])
    assert result.exit_code == 2 and "two different models" in result.output
    for token in ("", " padded ", "tab\there"):
        result = CliRunner().invoke(main, ["serve", str(model_file), "--token", token])
        assert result.exit_code == 2 and "--token: a non-empty printable value" in result.output, repr(token)
    result = CliRunner().invoke(main, ["serve", str(model_file), "--label-studio-url", "ftp://x"])
    assert result.exit_code == 2 and "http:// or https://" in result.output
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a)
    )
    result = CliRunner().invoke(main, ["serve", str(model_file)])
    assert result.exit_code == 1 and result.output.startswith("Error: fastseg serve needs fastapi: ")
    assert "-m pip install -e " in result.output and "[serve]" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_serve_help_imports_no_torch():
    code = (
        "import sys; from cli.main import main; sys.argv = ['fastseg', 'serve', '--help']\n"
        "try: main()\nexcept SystemExit: pass\nprint('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=True,
    )
    assert "--max-batch" in result.stdout and result.stdout.strip().endswith("False")


def test_a_warm_up_that_fails_is_one_log_line_and_never_ready(model_file, caplog):
    segmenter = Segmenter.open(model_file, CPU)

    def broken(batch):
        raise ValueError("the graph wants 4 channels\nmore detail")

    segmenter.runtime.logits = broken
    app = create_app(segmenter, ServeSettings())
    with (
        caplog.at_level("ERROR", logger="fastseg.serve"),
        TestClient(app, raise_server_exceptions=False) as client,
    ):
        deadline = time.monotonic() + 30
        while not any("warm-up failed" in record.getMessage() for record in caplog.records):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert client.get("/readyz").status_code == 503 and client.get("/healthz").status_code == 200
    lines = [record.getMessage() for record in caplog.records if "warm-up failed" in record.getMessage()]
    assert lines == ["the model's warm-up failed, the server will not become ready: ValueError: "
                     "the graph wants 4 channels"]  # fmt: skip


def test_deeply_nested_json_is_a_400_line(client):
    """15,000 levels (past the parser's recursion limit, within the 20,000 values a body may hold)
    are a 400; 100,000 are refused before any parsing, as too many values (413)."""
    check_error(client.post("/predict", content=b"[" * 15_000, headers={"content-type": "application/json"}),
                400, "not JSON")  # fmt: skip
    check_error(client.post("/predict", content=b"[" * 100_000, headers={"content-type": "application/json"}),
                413, "JSON values")  # fmt: skip


def test_serving_imports_no_training_and_no_fastai():
    """The serving package sits with inference: no fastai, no training, no export (ARCHITECTURE.md)."""
    import ast

    package = ROOT / "fastseg" / "serving"
    imported = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.append(node.module)
    assert "fastseg.inference.segmenter" in imported  # the walk sees the imports
    forbidden = ("fastai", "fastcore", "fasttransform", "fastprogress", "fastseg.training", "fastseg.export")
    assert [name for name in imported if name.startswith(forbidden)] == []
    code = "import sys, fastseg.serving.app; print(sorted(m for m in sys.modules if m.startswith('fastai')))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "[]"


def test_a_local_server_answers_local_host_names_only(model_file, images):
    """Against DNS rebinding: a page on evil.example resolving to 127.0.0.1 is refused."""
    good = (images / "odd.jpg").read_bytes()
    with served_client(model_file, allowed_hosts=("127.0.0.1", "localhost", "::1", "[::1]")) as client:
        for host in ("127.0.0.1:8000", "localhost", "[::1]:8000", "LOCALHOST:1"):
            assert client.get("/healthz", headers={"host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", ""):
            check_error(client.get("/", headers={"host": host}), 421, "is not served here")
            headers = {"host": host, "content-type": "image/jpeg"}
            check_error(client.post("/v1/segment", content=good, headers=headers), 421, "is not served here")
        ok = client.post(
            "/v1/segment", content=good, headers={"host": "localhost", "content-type": "image/jpeg"}
        )
        assert ok.status_code == 200


def test_a_trickled_body_is_408_and_frees_its_slot(model_file, images):
    """A client that sends its body slower than `body_seconds` is cut off and holds no slot."""
    good = (images / "odd.jpg").read_bytes()
    app = create_app(Segmenter.open(model_file, CPU), ServeSettings(body_seconds=0.5, max_queue=1))
    with live_server(app) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
            head = (f"POST /v1/segment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
                    f"Content-Length: {len(good)}\r\n\r\n")  # fmt: skip
            connection.sendall(head.encode() + good[:100])
            time.sleep(1.5)
            with contextlib.suppress(OSError):
                connection.sendall(good[100:])
            answer = connection.recv(65536).decode("latin-1")
        assert answer.startswith("HTTP/1.1 408"), answer[:200]
        assert json.loads(answer.split("\r\n\r\n", 1)[1]) == {"error": "the body took over 0.5 s to arrive"}
        assert app.state.engine.in_flight == 0
        ok = httpx.post(f"{url}/v1/segment", content=good, headers={"content-type": "image/jpeg"})
        assert ok.status_code == 200


def test_a_port_in_use_is_one_line_before_the_model_loads(model_file, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("uvicorn started"))
    monkeypatch.setattr(Segmenter, "open", lambda *a, **k: pytest.fail("the model was loaded"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", str(model_file), "--port", str(port)])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: cannot listen on 127.0.0.1:{port} (Address already in use)"
    result = CliRunner().invoke(main, ["serve", str(model_file), "--host", "no.such.host.invalid"])
    assert result.exit_code == 1 and result.output.startswith(
        "Error: cannot listen on no.such.host.invalid:8000"
    )


def test_a_lone_request_does_not_wait_for_a_batch(model_file, images):
    """The batcher waits up to --max-wait-ms only while other requests are being decoded."""
    good = (images / "odd.jpg").read_bytes()
    with served_client(model_file, max_wait_ms=3000) as client:
        started = time.perf_counter()
        for _ in range(3):
            assert (
                client.post("/v1/segment", content=good, headers={"content-type": "image/jpeg"}).status_code
                == 200
            )
        assert time.perf_counter() - started < 3.0  # three waits would take 9 s


def test_a_letterbox_models_masks_are_predicts_files(images, tmp_path):
    """Letterboxed inputs (aspect kept, padding cropped off the logits) take the same path."""
    model = save_seeded_voc_model(tmp_path / "model.pth", size=48, resize="letterbox")
    assert_served_as_predicted(model, images, tmp_path / "out", resize="letterbox")


# ---- API docs, offline ----


def same_origin_assets(html: str) -> list[str]:
    """Every `<script src>` and `<link href>` of a page: each must be a path on this server."""
    import re

    scripts = re.findall(r"<script[^>]*\bsrc=\"([^\"]*)\"", html)
    urls = scripts + re.findall(r"<link[^>]*\bhref=\"([^\"]*)\"", html)
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
    return urls


def test_the_api_docs_load_nothing_from_another_origin(client):
    """/docs works offline: every file it names is served here, whole, with its type."""
    expected_types = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    response = client.get("/docs")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "http" not in response.text  # no absolute URL at all
    assert "url: '/openapi.json'" in response.text and '"validatorUrl": null' in response.text
    urls = same_origin_assets(response.text)
    assert {Path(url).suffix for url in urls} == {".js", ".css", ".png"}, urls
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].startswith(expected_types[Path(url).suffix]), url
        assert len(asset.content) > 1000, url
    assert b"SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").content
    check_error(client.get("/redoc"), 404, "Not Found")  # off: ReDoc draws its logo from a CDN
    spec = client.get("/openapi.json")
    assert spec.status_code == 200 and spec.headers["content-type"] == "application/json"
    assert "post" in spec.json()["paths"]["/v1/segment"] and "/v1/model" in spec.json()["paths"]
    assert not any(path.startswith(("/docs", "/redoc", "/openapi")) for path in spec.json()["paths"])


def test_only_the_docs_files_are_served_from_their_folder(client):
    """No path from a request is opened: only the names of the table answer."""
    names = ("core.py", "..%2F__init__.py", "%2e%2e", "redoc.standalone.js", "swagger-ui.css.map", "x" * 5000)
    for name in (*names, "<b>x</b>"):
        response = client.get(f"/docs/assets/{name}")
        assert response.status_code == 404, name
        assert list(response.json()) == ["error"] and "\n" not in response.json()["error"]
    assert client.get("/docs/assets/../core.py").status_code == 404
    assert client.get("/docs/oauth2-redirect").status_code == 404  # no OAuth here


def test_the_docs_pass_the_host_check_and_the_spec_asks_for_the_token(model_file):
    """Every docs URL is refused to a foreign Host (DNS rebinding). With --token the spec asks for
    it as /v1/model does, the page challenges with HTTP Basic (a browser asks, then sends it with
    the spec's request), and the assets are served to anyone (the same public files everywhere)."""
    assets = ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/favicon.png")
    urls = ("/docs", "/openapi.json", *assets)
    with served_client(model_file, allowed_hosts=("127.0.0.1", "localhost"), token="s3cret-é") as client:
        basic = {"authorization": "Basic " + base64.b64encode("me:s3cret-é".encode()).decode()}
        for url in urls:
            check_error(client.get(url, headers={**basic, "host": "evil.example"}), 421, "is not served here")
            assert client.get(url, headers=basic).status_code == 200, url
        response = client.get("/docs")
        check_error(response, 401, "the token as password")
        assert response.headers["www-authenticate"].startswith('Basic realm="fastseg"')
        wrong = {"authorization": "Basic " + base64.b64encode(b"me:s3cret").decode()}
        check_error(client.get("/openapi.json", headers=wrong), 401, "token")
        check_error(client.get("/openapi.json"), 401, "token")
        bearer = {"authorization": "Bearer s3cret-é".encode()}
        assert client.get("/openapi.json", headers=bearer).json()["info"]["title"] == "fastseg"
        assert client.get("/docs/assets/swagger-ui.css").status_code == 200


def get_urls(routes) -> list[str]:
    """Every GET route among `routes` (an app's, or an included router's), its path parameters
    filled in (each docs file by name)."""
    from fastapi.routing import APIRoute

    from fastseg.serving.routes.docs import ASSETS

    urls = []
    for route in routes:
        if hasattr(route, "original_router"):  # FastAPI >= 0.165 keeps an included router whole
            urls += get_urls(route.original_router.routes)
        elif isinstance(route, APIRoute) and "GET" in route.methods:
            names = ASSETS if "{name}" in route.path else [None]
            urls += [route.path.replace("{name}", name) if name else route.path for name in names]
    return urls


def test_head_answers_every_get_route_as_get_does_without_a_body(client, model_file):
    """HEAD on /docs, its files and every other GET route was 405: it answers GET's status and
    headers (the length of the body it leaves out), in the app and over a real socket; a POST-only
    route still answers HEAD 405 with its Allow header, and a foreign Host is refused all the same."""
    urls = get_urls(client.app.routes)
    assert {"/", "/docs", "/docs/assets/swagger-ui-bundle.js", "/openapi.json", "/healthz", "/readyz",
            "/v1/model", "/health"} <= set(urls)  # fmt: skip
    for url in urls:
        get, head = client.get(url), client.head(url)
        assert get.status_code == 200, url
        assert (head.status_code, head.content) == (200, b""), url
        assert head.headers["content-type"] == get.headers["content-type"], url
        assert head.headers["content-length"] == str(len(get.content)), url
    refused = client.head("/v1/segment")
    assert refused.status_code == 405 and refused.headers["allow"] == "POST"
    with served_client(model_file, allowed_hosts=("localhost",)) as local:
        assert local.head("/docs", headers={"host": "evil.example"}).status_code == 421
    with live_server(create_app(Segmenter.open(model_file, CPU), ServeSettings())) as url:
        for path in ("/docs", "/docs/assets/swagger-ui.css", "/readyz", "/"):
            head = httpx.head(url + path)
            assert head.status_code == 200 and head.content == b"", path
            assert head.headers["content-length"] == str(len(httpx.get(url + path).content)), path


def test_serve_without_the_docs_files_is_one_line_naming_the_extra(model_file, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "fastapi_offline" else real(name, *a)
    )
    result = CliRunner().invoke(main, ["serve", str(model_file)])
    assert result.exit_code == 1 and result.output.startswith("Error: fastseg serve needs fastapi_offline: ")
    assert "[serve]" in result.output and len(result.output.strip().splitlines()) == 1


# ---- a stranger's second hostile pass ----


@pytest.mark.parametrize(
    "body",
    [
        b'{"tasks": [{"id": ' + b"1" * 5000 + b', "data": {}}]}',
        b'{"tasks": [], "project": ' + b"9" * 5000 + b"}",
        b'{"tasks": [], "tasks": []}',
        b'{"tasks": [], "project": \xff}',
    ],
)
def test_a_predict_body_no_strict_json_reader_takes_is_a_400_line(client, images, body):
    """A 5,000-digit number was a ValueError json.loads raises outside JSONDecodeError: a 500."""
    check_error(client.post("/predict", content=body, headers={"content-type": "application/json"}),
                400, "not JSON")  # fmt: skip
    assert client.post("/v1/segment", files={"file": (images / "odd.jpg").read_bytes()}).status_code == 200


def test_a_multipart_body_with_two_files_or_cut_short_is_refused(client, images):
    """Two `file` fields: the first was answered and the second dropped silently; a body without its
    closing boundary (a client that stopped early) was answered as if whole."""
    photo = (images / "odd.jpg").read_bytes()
    two = client.post("/v1/segment", files=[("file", ("a.jpg", photo)), ("file", ("b.jpg", photo))])
    check_error(two, 422, "2 'file' fields")
    cut = b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n' + photo
    multipart = {"content-type": "multipart/form-data; boundary=XX"}
    check_error(client.post("/v1/segment", content=cut, headers=multipart), 400, "closing boundary")
    whole = cut + b"\r\n--XX--\r\n"
    answer = client.post("/v1/segment", content=whole, headers=multipart)
    assert answer.status_code == 200 and answer.content[:8] == b"\x89PNG\r\n\x1a\n"


# ---- F's round: small defects ----


@pytest.mark.parametrize(
    "url",
    [
        "HTTP://127.0.0.1:9",
        "Https://studio.example",
        "http://x",
        "ftp://x",
        " http://x",
        "/data",
        "FILE:///etc",
    ],
)
def test_the_command_and_the_library_agree_on_label_studio_urls_in_any_case(model_file, monkeypatch, url):
    """URL schemes are case-insensitive (RFC 3986, 3.1): `HTTP://host` was refused by the command
    and taken by the library. One check decides for both: the same verdict, and a refusal is the
    one usage line naming the option."""
    import uvicorn

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append(app.state.settings))
    try:
        ServeSettings(label_studio_url=url)
        library_takes = True
    except OptionError as error:
        library_takes = False
        assert "an http:// or https:// address" in str(error)
    result = CliRunner().invoke(main, ["serve", str(model_file), "--port", "0", "--label-studio-url", url])
    assert (result.exit_code == 0) == library_takes == url.lower().startswith(("http://", "https://"))
    if library_takes:
        assert [settings.label_studio_url for settings in served] == [url], result.output
    else:
        assert result.exit_code == 2 and not served
        errors = [line for line in result.output.splitlines() if line.startswith("Error")]
        assert errors == [f"Error: --label-studio-url {url!r}: an http:// or https:// address"]


def test_task_images_are_fetched_from_an_upper_case_label_studio_url(model_file, images):
    LabelStudioFiles.image = (images / "odd.jpg").read_bytes()
    files = HTTPServer(("127.0.0.1", 0), LabelStudioFiles)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    studio = f"HTTP://127.0.0.1:{files.server_address[1]}"
    try:
        with served_client(model_file, label_studio_url=studio, label_studio_token="ls-key") as client:
            for image in ("/data/upload/1/photo.png", f"http://127.0.0.1:{files.server_address[1]}"
                          "/data/upload/1/photo.png"):  # fmt: skip
                answer = client.post("/predict", json={"tasks": [{"id": 1, "data": {"image": image}}]})
                assert answer.json()["results"][0]["result"][0]["original_width"] == 131, image
    finally:
        files.shutdown()


def test_a_refused_head_request_is_logged_as_head(model_file, caplog, monkeypatch):
    """HeadAsGet hands HEAD to the routes as GET: the server's own line for a refused HEAD said GET.
    It says HEAD (a GET is still logged as GET), for a 404, a 405, a foreign Host (421) and a 500."""

    def logged(ask, path, **options):
        caplog.clear()
        with caplog.at_level("WARNING", logger="fastseg.serve"):
            status = ask(path, **options).status_code
        lines = [record.getMessage() for record in caplog.records if record.name == "fastseg.serve"]
        return status, lines

    with served_client(model_file, allowed_hosts=("localhost",)) as client:
        assert logged(client.head, "/v1/nothing") == (404, ["HEAD /v1/nothing -> 404 Not Found"])
        assert logged(client.get, "/v1/nothing") == (404, ["GET /v1/nothing -> 404 Not Found"])
        status, lines = logged(client.head, "/v1/segment")
        assert status == 405 and lines == ["HEAD /v1/segment -> 405 Method Not Allowed"]
        status, lines = logged(client.head, "/healthz", headers={"host": "evil.example"})
        assert status == 421 and len(lines) == 1 and lines[0].startswith("HEAD /healthz -> 421 "), lines
        import fastseg.serving.routes.model as model_route

        monkeypatch.setattr(model_route, "model_info", lambda served: 1 / 0)  # a bug inside a route: 500
        for ask, method in ((client.head, "HEAD"), (client.get, "GET")):
            status, lines = logged(ask, "/v1/model")
            assert status == 500 and lines == [f"{method} /v1/model -> 500"], lines

    # over a real socket, uvicorn's access line (`fastseg serve --access-log`) says HEAD as well
    access = logging.getLogger("uvicorn.access")  # uvicorn's own handlers, not propagated: add ours
    with live_server(create_app(Segmenter.open(model_file, CPU), ServeSettings()), "info") as url:
        access.addHandler(caplog.handler)
        try:
            caplog.clear()
            with caplog.at_level("INFO", logger="uvicorn.access"):
                assert httpx.head(url + "/v1/nothing").status_code == 404
                assert httpx.head(url + "/healthz").status_code == 200
                deadline = time.monotonic() + 10
                while len(caplog.records) < 3 and time.monotonic() < deadline:  # the refusal's, 2 access
                    time.sleep(0.05)
        finally:
            access.removeHandler(caplog.handler)
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0] == "HEAD /v1/nothing -> 404 Not Found", lines
    assert '"HEAD /v1/nothing HTTP/1.1" 404' in lines[1] and '"HEAD /healthz HTTP/1.1" 200' in lines[2], lines


@pytest.mark.parametrize("url", [123, b"http://x", ["http://x"]])
def test_a_label_studio_url_that_is_no_text_is_an_option_error(url):
    """The library's settings took `url.lower()` of whatever came: an AttributeError for a number."""
    with pytest.raises(OptionError, match="an http:// or https:// address"):
        ServeSettings(label_studio_url=url)
