"""A tiled request's model work is bounded in `fastseg serve`: the overlap limit bounded each
pixel's passes but not the windows a large upload makes at a small tile, and every request waits
behind one in the model thread (`tile=32&overlap=0.75` on an 800² upload held it over a minute on
2 CPU cores; on a 5000² one, most of an hour)."""

from __future__ import annotations

import io

import pytest
from model_files import save_seeded_voc_model
from PIL import Image
from test_serve import served_client

from fastseg.inference.tiling import Tiling
from fastseg.serving.engine import Engine
from fastseg.serving.errors import ServeError
from fastseg.serving.settings import MAX_TILED_PIXELS


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_seeded_voc_model(tmp_path_factory.mktemp("model") / "model.pth")


def png(width: int, height: int) -> bytes:
    """A flat PNG: a few kB whatever its size, as a hostile upload would be."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_tiled_request_past_the_budget_is_a_413_before_any_window_runs(model_file, monkeypatch):
    runs = []
    with served_client(model_file) as client:  # ready: its warm-up ran the model
        monkeypatch.setattr(Engine, "_run_batch", lambda self, key, items: runs.append(key) or [])
        answer = client.post("/v1/segment?tile=32&overlap=0.75", content=png(3000, 3000),
                             headers={"content-type": "image/png"})  # fmt: skip
    assert answer.status_code == 413, answer.text
    error = answer.json()["error"]
    windows = len(Tiling(32, 0.75).starts(3000)) ** 2  # a window every 8 px: 372 a side
    assert "tile=32 overlap=0.75 on 3000x3000" in error and f"{windows:,} windows" in error, error
    assert "larger tile or less overlap" in error and "\n" not in error
    assert runs == []


def test_a_tiled_request_within_the_budget_is_served(model_file):
    with served_client(model_file) as client:
        answer = client.post("/v1/segment?tile=64&overlap=0.5", content=png(200, 150),
                             headers={"content-type": "image/png"})  # fmt: skip
    assert answer.status_code == 200 and answer.content.startswith(b"\x89PNG")
    assert Image.open(io.BytesIO(answer.content)).size == (200, 150)


@pytest.mark.parametrize(
    ("tile", "overlap", "width", "height", "allowed"),
    [
        (512, 0.25, 6000, 4000, True),  # a large photo at a sensible tile: 88 windows, 23 Mpx
        (2048, 0.0, 8192, 8192, True),  # serve's largest tile, no overlap: 16 windows of 4 Mpx
        (32, 0.75, 800, 800, True),  # 9,409 windows of 32²: 19 Mpx
        (32, 0.0, 9000, 9000, False),  # 79,524 windows
        (256, 0.75, 4000, 4000, False),  # 3,721 windows of 256²: 236 Mpx
    ],
)
def test_the_budget_counts_windows_and_their_pixels(tile, overlap, width, height, allowed):
    tiling = Tiling(tile, overlap)
    windows = len(tiling.starts(width)) * len(tiling.starts(height))
    if allowed:
        Engine._check_tiled_work(tiling, width, height)
        assert windows * tile * tile <= MAX_TILED_PIXELS
    else:
        with pytest.raises(ServeError) as raised:
            Engine._check_tiled_work(tiling, width, height)
        assert raised.value.status == 413 and f"{windows:,} windows" in str(raised.value)
