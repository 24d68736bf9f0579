"""A stranger's pass over `report`, `export`, `serve` and `predict --tile` (round 32): each test here
is a defect that pass found, each failing before its fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from model_files import save_seeded_voc_model, write_run_files

from cli.main import main

HISTORY_HEADER = "epoch,train_loss,valid_loss,valid_pixel_accuracy,valid_miou,time"


@pytest.fixture(scope="module")
def run(voc_root, tmp_path_factory) -> Path:
    """A run folder as `fastseg train` leaves it (model.pth, split.json, config.json)."""
    folder = tmp_path_factory.mktemp("run")
    save_seeded_voc_model(folder / "model.pth")
    return write_run_files(folder, voc_root)


def report(run: Path, out: Path):
    return CliRunner().invoke(main, ["report", "--model", str(run), "--out", str(out), "--quiet",
                                     "--num-workers", "0", "--precision", "fp32"])  # fmt: skip


@pytest.mark.parametrize(
    "rows",
    [
        ["0,1,1,-1e308,1e308,00:01"],  # finite, but past float32: matplotlib's axis overflowed
        ["0,-1e308,1e308,-1,5,00:01"],  # LinAlgError: Singular matrix
        ["1.5,1,1,0.5,0.4,00:01"],  # IndexError: the best epoch, int(1.5), was looked up as 1
        ["0,1,1,0.5,0.4,00:01", "-3,1,1,0.5,0.5,00:01"],  # a negative epoch
    ],
    ids=["huge-scores", "huge-losses", "fractional-epoch", "negative-epoch"],
)
def test_a_history_with_impossible_numbers_is_a_sentence_on_the_page(run, tmp_path, rows):
    """A damaged history.csv does not stop a report whose scores are computed: its part of the page
    says it could not be read (report_page's promise). Numbers no training writes (beyond float32,
    an epoch that is no whole number of at least 0) ended the report with a traceback."""
    (run / "history.csv").write_text("\n".join([HISTORY_HEADER, *rows]) + "\n")
    try:
        result = report(run, tmp_path / "report")
    finally:
        (run / "history.csv").unlink()
    assert result.exit_code == 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    page = (tmp_path / "report" / "report.html").read_text()
    assert "history.csv could not be read" in page
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["images"] == 6


def test_serve_refuses_an_overlap_that_multiplies_a_requests_work(tmp_path):
    """`overlap=0.99` made every window start one pixel after the last: (W - tile + 1) x (H - tile + 1)
    forward passes for one request (a 1000² upload at tile=32: 940,000, hours of the one model
    every client shares). A served overlap is at most 0.75 (each pixel computed at most 16 times);
    0.75 itself is served."""
    import io
    import time

    import numpy as np
    import torch
    from fastapi.testclient import TestClient
    from PIL import Image

    from fastseg.inference.segmenter import Segmenter
    from fastseg.serving.app import create_app
    from fastseg.serving.settings import ServeSettings

    model = Segmenter.open(save_seeded_voc_model(tmp_path / "model.pth"), torch.device("cpu"))
    buffer, png = io.BytesIO(), {"content-type": "image/png"}
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 100, 3), np.uint8)).save(buffer, "PNG")
    with TestClient(create_app(model, ServeSettings()), base_url="http://localhost",
                    raise_server_exceptions=False) as client:  # fmt: skip
        while client.get("/readyz").status_code != 200:
            time.sleep(0.05)
        windows = []
        real = model.runtime.logits
        model.runtime.logits = lambda inputs: windows.append(len(inputs)) or real(inputs)
        for overlap, status in (("0.99", 422), ("0.7500001", 422), ("0.75", 200)):
            windows.clear()
            answer = client.post("/v1/segment", content=buffer.getvalue(), headers=png,
                                 params={"tile": 32, "overlap": overlap})  # fmt: skip
            assert answer.status_code == status, (overlap, answer.text)
            if status == 422:
                assert "overlap" in answer.json()["error"] and "0.75" in answer.json()["error"]
                assert not windows
            else:
                assert sum(windows) == 10 * 5  # starts every 8 px: 0..64 and 68 across, 0..24 and 28 down


def own_run(folder: Path, names: list[str]) -> Path:
    """A run folder whose model.pth knows `names`, trained (split.json, config.json) on an own data
    set of those classes at `folder/data`: 2 train, 2 val, 2 test images."""
    import torch
    from demo_folder import make_demo_folder

    from fastseg.classes import Classes
    from fastseg.model.checkpoint import save_model
    from fastseg.model.config import ModelConfig
    from fastseg.model.network import SegmentationModel

    make_demo_folder(folder / "data", names, counts={"train": 2, "val": 2, "test": 2}, max_size=40)
    run = folder / "run"
    run.mkdir()
    torch.manual_seed(0)
    config = ModelConfig(num_classes=len(names))
    model = SegmentationModel(config).eval()
    save_model(run / "model.pth", model, config, size=32, classes=Classes.create(names))
    ids = {subset: [f"images/{folder_name}/{folder_name}_{index:04d}.jpg" for index in range(2)]
           for subset, folder_name in (("train", "train"), ("valid", "val"), ("test", "test"))}  # fmt: skip
    (run / "split.json").write_text(json.dumps(ids))
    (run / "config.json").write_text(json.dumps({"train": {"data": str(folder / "data")}}))
    return run


@pytest.mark.parametrize("names", [["x", "y"], [f"k{index}" for index in range(20)]], ids=["fewer", "more"])
def test_export_int8_refuses_a_data_set_of_other_classes(tmp_path, names):
    """`export --int8 --data OTHER`, whose files have the run's names but whose classes are not the
    model's: with fewer classes the INT8 file was written, its "passed" check (which `predict
    --runtime auto` trusts) scored against classes the model does not have; with more, the check's
    loss ended in `IndexError: Target 11 is out of bounds`. As report does: one line, nothing written."""
    pytest.importorskip("onnxruntime")
    from demo_folder import make_demo_folder

    run = own_run(tmp_path / "own", ["background", "a", "b", "c", "d"])
    make_demo_folder(tmp_path / "other", names, counts={"train": 2, "val": 2, "test": 2}, max_size=40, seed=3)
    other = str(tmp_path / "other")
    result = CliRunner().invoke(main, ["export", "--model", str(run), "--int8", "--data", other, "--quiet",
                                       "--num-workers", "0", "--accept-int8-loss"])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert f"{len(names)} classes are not the model's 5" in result.output and "--data" in result.output
    assert not (run / "model.int8.onnx").exists()


def test_served_tiles_share_a_forward_pass_only_within_a_whole_image_batchs_pixels(tmp_path):
    """A batch of N tiled requests ran each image's windows N at a time: with tile=2048 (one window
    of 2048² took 2.9 GiB and 34 s on this CPU) eight requests of a 9000x1 image put six such
    windows in one forward, about 17 GiB for uploads of a few kB. Windows per forward now stay
    within the pixels of the largest whole-image batch (max_batch x the model's side²), at least
    one; the labels are the same."""
    import io

    import numpy as np
    import torch
    from PIL import Image

    from fastseg.inference.segmenter import Segmenter
    from fastseg.inference.tiling import Tiling
    from fastseg.serving.engine import Engine, decode
    from fastseg.serving.settings import ServeSettings

    model = Segmenter.open(save_seeded_voc_model(tmp_path / "model.pth", size=32), torch.device("cpu"))
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 200, 3), np.uint8)).save(buffer, "PNG")
    engine = Engine(model, ServeSettings(max_batch=2))  # 2 x 32² = 2048 pixels: one 64² window per pass
    try:
        tiling = Tiling(64, 0.25)  # windows start at 0, 48, 96 and 136 across
        items = [decode(engine.variant(False, tiling), buffer.getvalue(), False) for _ in range(3)]
        alone = engine._run_batch((False, tiling), items[:1])[0]
        passes = []
        real = model.runtime.logits
        model.runtime.logits = lambda inputs: passes.append(len(inputs)) or real(inputs)
        labels = engine._run_batch((False, tiling), items)
    finally:
        engine.pool.shutdown()
        engine.model_thread.shutdown()
    assert passes == [1] * 12
    for each in labels:
        np.testing.assert_array_equal(each, alone)


@pytest.mark.parametrize(
    "name", ["c{}", "class {} with a longer name", "{} " + "W" * 60], ids=["short", "long", "wide"]
)
def test_the_confusion_matrix_of_255_classes_is_a_picture_a_viewer_opens(tmp_path, name):
    """With 255 classes present (the most a data set may have) confusion_matrix.png was
    10880x9999 pixels: 108 Mpx, past the 89 Mpx at which Pillow warns of a decompression bomb, and
    half of a 24 s report. Past 30 classes no share is written in a cell, so a row needs only its
    tick label's height: the picture stays under Pillow's limit, and no two labels overlap."""
    import struct
    import warnings

    import torch
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    from fastseg.visualization.charts import confusion_figure
    from fastseg.visualization.figures import save_figure

    names = [name.format(index) for index in range(255)]
    matrix = torch.randint(0, 50, (255, 255), generator=torch.Generator().manual_seed(0))
    figure = confusion_figure(matrix, names)
    path = save_figure(figure, tmp_path / "confusion_matrix.png")
    width, height = struct.unpack(">II", path.read_bytes()[16:24])  # the PNG's IHDR
    assert width * height < Image.MAX_IMAGE_PIXELS, (width, height)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        Image.open(path).load()
    renderer = FigureCanvasAgg(figure).get_renderer()
    axis = figure.axes[0]
    for labels, ends in ((axis.get_yticklabels(), ("y0", "y1")), (axis.get_xticklabels(), ("x0", "x1"))):
        boxes = [label.get_window_extent(renderer) for label in labels if label.get_text()]
        assert len(boxes) == 255 and min(label.get_fontsize() for label in labels) >= 8
        spans = sorted((getattr(box, ends[0]), getattr(box, ends[1])) for box in boxes)
        gaps = [after[0] - before[1] for before, after in zip(spans, spans[1:], strict=False)]
        assert min(gaps) >= 0, f"labels overlap by {-min(gaps):.1f} px"


def test_export_refuses_an_out_that_fastseg_would_not_read_as_onnx(run, tmp_path):
    """`export --out model.bin` wrote 75 MB that predict, report and serve then took for a torch
    file ("not a tensors-only torch file"): they tell an ONNX model by its suffix. The export is
    refused in one line before any work, naming the suffix; `.ONNX` is an ONNX name, as predict
    reads it."""
    pytest.importorskip("onnx")

    def export(name: str):
        out = str(tmp_path / name)
        return CliRunner().invoke(main, ["export", "--model", str(run), "--out", out, "--quiet"])

    for name in ("model.bin", "model"):
        result = export(name)
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        assert ".onnx" in result.output and str(tmp_path / name) in result.output
        assert not (tmp_path / name).exists()
    result = export("m.ONNX")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.ONNX").stat().st_size > 0


@pytest.mark.parametrize("option", ["--max-upload-mb", "--max-wait-ms"])
def test_serve_refuses_a_nan_limit_before_it_starts(tmp_path, monkeypatch, option):
    """click's FloatRange lets `nan` through (no comparison with NaN is true): `--max-upload-mb nan`
    started a server whose every upload was a 500 (`int(nan)` in the body's limit), and
    `--max-wait-ms nan` was taken as 0 without a word. Refused in one line naming the option;
    nothing starts. ServeSettings, the library's entry, refuses them too."""
    pytest.importorskip("fastapi")
    import uvicorn

    started = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: started.append(kwargs))
    model = save_seeded_voc_model(tmp_path / "model.pth")
    for value in ("nan", "-nan"):
        result = CliRunner().invoke(main, ["serve", "--model", str(model), "--port", "0", option, value])
        assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.output
        assert option in result.output and "nan" in result.output and "Traceback" not in result.output
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and errors[0] == result.output.strip().splitlines()[-1], result.output
    assert not started
    from fastseg.errors import OptionError
    from fastseg.serving.settings import ServeSettings

    field = option.removeprefix("--").replace("-", "_")
    with pytest.raises(OptionError, match=f"{option} nan"):
        ServeSettings(**{field: float("nan")})


def test_a_report_or_export_where_nothing_can_be_written_is_one_line_before_the_work(run, tmp_path):
    """`report --out FILE/report` and `--out /proc/report` ended, after the whole evaluation, in a
    NotADirectoryError or PermissionError traceback (predict says "cannot create the output
    folder"); `export --out /proc/model.onnx` in a FileNotFoundError after tracing the graph. Now one
    line naming the place, before the work: no evaluation, no graph, nothing left behind."""
    pytest.importorskip("onnx")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    places = [a_file / "report"] + ([Path("/proc/fastseg-report")] if Path("/proc/self").is_dir() else [])
    for out in places:
        result = report(run, out)
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (out, result.output)
        assert str(out) in result.output and "batches" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert a_file.read_text() == "mine" and sorted(tmp_path.iterdir()) == [a_file]
    if Path("/proc/self").is_dir():
        result = CliRunner().invoke(
            main, ["export", "--model", str(run), "--out", "/proc/fastseg.onnx", "--quiet"]
        )
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        assert "/proc/fastseg.onnx" in result.output and len(result.output.strip().splitlines()) == 1


def test_a_report_that_replaces_one_written_meanwhile_says_so(run, tmp_path, monkeypatch):
    """Two reports into one new folder at once: both found it absent when they began, so the one
    that went in second replaced the first's report and said nothing of it ("it says when it
    replaces its own earlier report"). Whether it replaced one is now what the swap found."""
    import shutil

    import fastseg.inference.report as report_module

    earlier = tmp_path / "earlier"
    assert report(run, earlier).exit_code == 0
    out = tmp_path / "report"
    real = report_module.write_tables

    def meanwhile(*args, **kwargs):  # another report goes in while this one is being written
        if not out.exists():
            shutil.copytree(earlier, out)
        return real(*args, **kwargs)

    monkeypatch.setattr(report_module, "write_tables", meanwhile)
    result = report(run, out)
    assert result.exit_code == 0, result.output
    assert "(replaced the earlier report there)" in result.output
    result = report(run, tmp_path / "fresh")  # nothing there before or meanwhile: nothing replaced
    assert result.exit_code == 0 and "replaced" not in result.output
