"""What the C parsers of a /predict body see is bounded before they run: json and ElementTree
hold the GIL, so parsing in a thread of its own (Engine.parsed) still stalled the event loop for
as long as they took (review: 28 MB of `[[],[],...]` held /healthz 3.6 s, 27 MB of `<a/>` in a
labeling config 3 s)."""

from __future__ import annotations

import json
import threading

import pytest
from model_files import save_seeded_voc_model
from test_serve import served_client

from fastseg.serving.errors import ServeError
from fastseg.serving.routes import label_studio
from fastseg.serving.settings import MAX_CONFIG_TAGS, MAX_JSON_VALUES


@pytest.fixture
def parses(monkeypatch):
    """The JSON and XML parsers' calls, recorded."""
    calls = []
    real_json, real_xml = label_studio.parse_json, label_studio.ElementTree.fromstring
    monkeypatch.setattr(label_studio, "parse_json", lambda *a: calls.append("json") or real_json(*a))
    monkeypatch.setattr(label_studio.ElementTree, "fromstring",
                        lambda *a: calls.append("xml") or real_xml(*a))  # fmt: skip
    return calls


def test_a_body_of_too_many_json_values_is_a_413_before_the_parser(parses):
    body = b'{"tasks": [], "x": [' + b",".join([b"[]"] * 2_000_000) + b"]}"
    with pytest.raises(ServeError) as raised:
        label_studio.read_request(body)
    assert raised.value.status == 413 and "JSON values" in raised.value.message
    assert parses == []


def test_a_labeling_config_of_too_many_tags_is_a_413_before_the_parser(parses):
    config = "<View>" + "<a/>" * (MAX_CONFIG_TAGS + 1) + "</View>"
    body = json.dumps({"tasks": [], "label_config": config}).encode()
    with pytest.raises(ServeError) as raised:
        label_studio.read_request(body)
    assert raised.value.status == 413 and "label_config holds over" in raised.value.message
    assert parses == ["json"]


def test_a_real_request_is_far_inside_the_bounds(parses):
    labels = "".join(f'<Label value="class{i}"/>' for i in range(255))
    brush = f'<BrushLabels name="tag" toName="image">{labels}</BrushLabels>'
    config = f'<View><Image name="image" value="$image"/>{brush}</View>'
    tasks = [{"id": i, "data": {"image": f"http://localhost:8080/data/upload/{i}.jpg"}} for i in range(64)]
    body = json.dumps({"tasks": tasks, "label_config": config, "project": "1.1", "params": {}}).encode()
    assert body.count(b"{") + body.count(b"[") + body.count(b",") < MAX_JSON_VALUES // 20
    request, tags = label_studio.read_request(body)
    assert len(request.tasks) == 64 and len(tags.labels) == 255 and parses == ["json", "xml"]


def test_the_predict_response_is_written_off_the_event_loop(monkeypatch, tmp_path):
    """FastAPI validated and dumped /predict's response_model on the event loop (an async route):
    2 s and 100 MB of JSON for 64 large tasks, every other request waiting (review). It is
    written in the engine's pool now, and is the same JSON."""
    threads = []
    real = label_studio._response_json
    monkeypatch.setattr(label_studio, "_response_json",
                        lambda *a: threads.append(threading.current_thread().name) or real(*a))  # fmt: skip
    with served_client(save_seeded_voc_model(tmp_path / "model.pth")) as client:
        answer = client.post("/predict", json={"tasks": []})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.json()["results"] == [] and answer.json()["model_version"].startswith("fastseg-")
    assert len(threads) == 1 and threads[0].startswith("fastseg-serve")
