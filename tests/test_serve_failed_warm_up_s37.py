"""A model whose warm-up fails (here an ONNX graph giving 3 class maps for 2 named classes, found
only when it runs) leaves `fastseg serve` up but never ready: /readyz and every refused request
said "loading the model" / "still loading; retry shortly" for ever, with Retry-After. They now
say the warm-up failed, without Retry-After and without the server's file paths (the log names
them)."""

from __future__ import annotations

import io
import time

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from test_hostile_export_s37 import tiled_onnx

from fastseg.inference.segmenter import Segmenter
from fastseg.serving.app import create_app
from fastseg.serving.settings import ServeSettings


def test_a_failed_warm_up_is_said_by_readyz_and_each_request(tmp_path, caplog):
    pytest.importorskip("onnxruntime")
    model = tiled_onnx(tmp_path / "tiled.onnx", ["a", "b"])
    app = create_app(Segmenter.open(model, torch.device("cpu")), ServeSettings())
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 30
        while not app.state.engine.failed:
            assert time.monotonic() < deadline, "the warm-up neither failed nor ended"
            time.sleep(0.05)
        ready = client.get("/readyz")
        picture = io.BytesIO()
        Image.new("RGB", (40, 30)).save(picture, format="PNG")
        answer = client.post("/v1/segment", content=picture.getvalue(), headers={"content-type": "image/png"})
    assert ready.status_code == 503 and "Retry-After" not in ready.headers
    assert ready.json() == {"ready": False, "status": "the model's warm-up failed (see the server's log)"}
    assert answer.status_code == 503 and "Retry-After" not in answer.headers
    assert answer.json()["error"].startswith("the model's warm-up failed")
    assert str(tmp_path) not in answer.text
    assert any("3 maps a pixel" in record.getMessage() for record in caplog.records)
