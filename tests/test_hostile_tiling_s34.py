"""Hostile pass s34 over the sliding window (`--tile/--overlap`) in predict, report and serve.

- A window larger than the image ran the model on the whole tile (a 1x1 upload under
  `tile=2048`: one 2048² forward, 5 GB peak and 47 s on this machine's CPU): the window now
  shrinks to the image, rounded up to the deepest map's stride (32), never above the tile; the
  masks are those of the smallest tile that covers the image (the pre-change masks wherever the
  tile did not pad past that).
- `--tile 32 --overlap 0.99` started a window every pixel (a 500x375 image: 161,000 windows, no
  word): combinations running each pixel through the model more than 64 times are one usage
  line naming both options, the window count and the largest overlap that works.
- Hostile values of both options (types, NaN, infinities, huge, repeated) in predict, report and
  serve's query: one line each, nothing written; odd and huge tiles that are accepted blend right.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from model_files import save_seeded_voc_model, save_untrained_voc_model, write_run_files
from PIL import Image
from test_hostile_training_s32 import usage_error_line
from test_serve import check_error, encoded, noise, served_client
from test_tiling import Identity, segmenter_of

from cli.main import main
from fastseg.errors import OptionError
from fastseg.imaging.geometry import IMAGE_FILL, LETTERBOX
from fastseg.imaging.normalise import normalise
from fastseg.inference.runtime import TorchRuntime
from fastseg.inference.segmenter import Segmenter
from fastseg.inference.sliding import blended_bands
from fastseg.inference.tiling import Tiling, make_tiling

CPU = torch.device("cpu")
MAX_PASSES = 64  # each pixel through the model at most this many times (tiling.MAX_PASSES)


@pytest.fixture
def forwards(monkeypatch):
    """The `(H, W)` of every input the torch runtime is given; an input larger than `limit[0]`
    on a side, or more than `limit[1]` forward passes, fails at once (before the fix such a
    run took a minute and gigabytes, or hours)."""
    shapes = Forwards()
    real = TorchRuntime.logits

    def logits(self, images):
        height, width = images.shape[-2:]
        shapes.append((int(height), int(width)))
        assert max(height, width) <= shapes.limit[0], f"a {height}x{width} forward pass"
        assert len(shapes) <= shapes.limit[1], f"more than {shapes.limit[1]} forward passes"
        return real(self, images)

    monkeypatch.setattr(TorchRuntime, "logits", logits)
    return shapes


class Forwards(list):
    """The shapes seen, and `limit`: [largest side, most passes]."""

    def __init__(self) -> None:
        super().__init__()
        self.limit = [512, 400]


def invoke(*arguments: object):
    return CliRunner().invoke(main, [str(argument) for argument in arguments])




@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_untrained_voc_model(tmp_path_factory.mktemp("model") / "model.pth", 64, resize=LETTERBOX)


@pytest.fixture(scope="module")
def run_folder(voc_root, tmp_path_factory):
    """A run folder report takes: model.pth (the untrained 64² model), split.json, config.json."""
    run = tmp_path_factory.mktemp("run")
    save_untrained_voc_model(run / "model.pth", 64, resize=LETTERBOX)
    return write_run_files(run, voc_root)


def model_for(command: str, model_file, run_folder):
    """predict takes the model file; report, a run folder."""
    return model_file if command == "predict" else run_folder


def blend(segmenter: Segmenter, picture: np.ndarray, tiling: Tiling) -> torch.Tensor:
    """The blended logits `(C, H, W)` of `picture`, whole."""
    return torch.cat([band for _, band in blended_bands(segmenter, picture, tiling, batch_size=4)], dim=1)


def picture_of(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(height * 1000 + width).integers(0, 255, (height, width, 3), dtype=np.uint8)


# ---- 1. a window larger than the image costs no more than the image ----


@pytest.mark.parametrize(
    ("height", "width", "tile", "window"),
    [
        (1, 1, 2048, (32, 32)),  # rounded up to the deepest stride, never below MIN_TILE
        (20, 30, 2048, (32, 32)),
        (40, 64, 2048, (64, 64)),
        (40, 64, 48, (48, 48)),  # never above the tile, a multiple of 32 or not
        (20, 300, 256, (32, 256)),  # each side on its own: a strip is not padded to a square
        (300, 20, 256, (256, 32)),
        (70, 90, 8192, (96, 96)),
    ],
)
def test_a_window_larger_than_the_image_shrinks_to_it(forwards, height, width, tile, window):
    """Every forward pass is `window`, and the blend still gives back each pixel's own logits."""
    picture = picture_of(height, width)
    blended = blend(segmenter_of(Identity(), 3), picture, Tiling(tile, 0.25))
    assert set(forwards) == {window}
    torch.testing.assert_close(blended, normalise(picture), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("height", "width", "smallest"), [(40, 64, 64), (20, 30, 32), (1, 1, 32), (64, 64, 64), (33, 70, 96)]
)
def test_one_window_images_keep_the_masks_of_their_smallest_tile(
    model_file, forwards, height, width, smallest
):
    """The masks of an image one window covers: under `--tile 2048` those under the smallest
    tile that covers it (what the sliding window gave before wherever the tile padded no further:
    recorded from the pre-change code for 40x64, 20x30, 1x1 and 64x64 under such tiles, equal),
    which is the model on the picture padded bottom-right with the letterbox colour to `smallest`."""
    from fastseg.model.checkpoint import load_model

    picture = picture_of(height, width)
    segmenter = Segmenter.with_torch(load_model(model_file), CPU, precision="fp32")

    def labels(tile: int) -> np.ndarray:
        return blend(segmenter, picture, Tiling(tile, 0.25)).argmax(0).numpy()

    padded = np.empty((smallest, smallest, 3), dtype=np.uint8)
    padded[:] = IMAGE_FILL
    padded[:height, :width] = picture
    by_hand = segmenter.logits(normalise(padded)[None])[0, :, :height, :width].argmax(0).numpy()
    np.testing.assert_array_equal(labels(smallest), by_hand)
    np.testing.assert_array_equal(labels(2048), by_hand)


def test_predict_with_a_huge_tile_on_a_tiny_image(model_file, forwards, tmp_path):
    """`fastseg predict --tile 2048` on a 1x1 and a 20x30 image: one 32² pass each, and the masks
    `--tile 32` writes."""
    forwards.limit[0] = 32
    for name, (height, width) in {"one": (1, 1), "small": (20, 30)}.items():
        Image.fromarray(picture_of(height, width)).save(tmp_path / f"{name}.png")
    masks = {}
    for tile in (2048, 32):
        out = tmp_path / f"out{tile}"
        images = [tmp_path / "one.png", tmp_path / "small.png"]
        result = invoke("predict", "--model", model_file, *images, "--out", out, "--quiet",
                        "--num-workers", 0, "--precision", "fp32", "--tile", tile)  # fmt: skip
        assert result.exit_code == 0, result.output
        masks[tile] = [np.array(Image.open(out / f"{name}.png")) for name in ("one", "small")]
    assert [mask.shape for mask in masks[2048]] == [(1, 1), (20, 30)]
    assert all(np.array_equal(a, b) for a, b in zip(masks[2048], masks[32], strict=True))
    assert set(forwards) == {(32, 32)}


@pytest.mark.slow
def test_report_with_a_huge_tile_runs_windows_of_its_images_size(run_folder, forwards, tmp_path):
    """`fastseg report --tile 2048` on the 32-64 px VOC images: no pass above 64², and the same
    scores as `--tile 64` (each image in one window either way)."""
    forwards.limit[0] = 64
    tables = {}
    for tile in (2048, 64):
        out = tmp_path / f"report{tile}"
        result = invoke("report", "--model", run_folder, "--out", out, "--quiet", "--num-workers", 0,
                        "--precision", "fp32", "--tile", tile)  # fmt: skip
        assert result.exit_code == 0, result.output
        tables[tile] = (out / "per_image.csv").read_text()
    assert tables[2048] == tables[64] and forwards


def test_serve_a_tiny_upload_under_tile_2048(forwards, tmp_path):
    """The 2.9 GiB request: a 1x1 upload with `tile=2048` runs one 32² window, and its mask is
    the one `tile=32` serves."""
    forwards.limit[0] = 32
    model = save_seeded_voc_model(tmp_path / "model.pth")
    image = encoded(Image.fromarray(picture_of(1, 1)))
    with served_client(model) as client:
        masks = []
        for tile in (2048, 32):
            response = client.post("/v1/segment", content=image, headers={"content-type": "image/png"},
                                   params={"tile": tile})  # fmt: skip
            assert response.status_code == 200, response.text
            masks.append(response.content)
    assert masks[0] == masks[1]
    assert np.array(Image.open(io.BytesIO(masks[0]))).shape == (1, 1)


# ---- 2. endless windows are refused, in one line, before any work ----


@pytest.mark.parametrize("command", ["predict", "report"])
@pytest.mark.parametrize(
    ("tile", "overlap", "words"),
    [
        (32, 0.99, "a window every 1 px, 1,000,000 windows a megapixel"),
        (512, 0.999999, "a window every 1 px, 1,000,000 windows a megapixel"),
        (64, 0.9, "a window every 6 px, 27,778 windows a megapixel"),
    ],
)
def test_too_many_windows_are_one_usage_line(
    model_file, run_folder, forwards, tmp_path, alarm, command, tile, overlap, words
):
    Image.fromarray(picture_of(375, 500)).save(tmp_path / "a.png")
    target = [tmp_path / "a.png"] if command == "predict" else []
    model = model_for(command, model_file, run_folder)
    result = invoke(command, "--model", model, *target, "--out", tmp_path / "out", "--num-workers", 0,
                    "--tile", tile, "--overlap", overlap)  # fmt: skip
    line = usage_error_line(result)
    assert f"--tile {tile} --overlap {overlap}" in line and words in line, line
    assert f"at most {MAX_PASSES}" in line and "--overlap 0.875 or less" in line, line
    assert not (tmp_path / "out").exists() and not forwards


def test_the_largest_overlap_allowed_still_runs(model_file, forwards, tmp_path):
    """`--tile 32 --overlap 0.875`: a window every 4 px, each pixel 64 times, accepted and right."""
    Image.fromarray(picture_of(40, 40)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    result = invoke("predict", "--model", model_file, tmp_path / "a.png", "--out", out, "--quiet",
                    "--num-workers", 0, "--tile", 32, "--overlap", 0.875)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert np.array(Image.open(out / "a.png")).shape == (40, 40)


def test_the_overlap_suggested_is_accepted_for_every_tile():
    """The refusal's `--overlap X or less` works for every tile it can name: X itself passes,
    and it is not needlessly strict (at least 0.84, within 0.01 of the true largest)."""
    for tile in range(32, 8193):
        with pytest.raises(OptionError) as refused:
            make_tiling(tile, 0.99)
        suggested = float(str(refused.value).rsplit("--overlap ", 1)[1].split()[0])
        tiling = make_tiling(tile, suggested)
        assert tiling is not None and tiling.passes <= MAX_PASSES and suggested >= 0.84, (tile, suggested)
        assert make_tiling(tile, suggested - 0.01).passes <= MAX_PASSES


# ---- 3. hostile values: one line each, or a right answer ----


HOSTILE = [
    (["--tile", "1"], "--tile 1: at least 32"),
    (["--tile", "31"], "--tile 31: at least 32"),
    (["--tile", "-5"], "--tile -5: at least 32"),
    (["--tile", str(10**9)], "--tile 1000000000: at most 8192"),
    (["--tile", str(2**70)], "at most 8192"),
    (["--tile", "abc"], "'--tile': 'abc' is not a valid integer"),
    (["--tile", "1e3"], "'--tile': '1e3' is not a valid integer"),
    (["--tile", ""], "'--tile': '' is not a valid integer"),
    (["--tile", "64", "--tile", "abc"], "'--tile': 'abc'"),
    (["--tile", "64", "--overlap", "nan"], "--overlap nan: a fraction"),
    (["--tile", "64", "--overlap", "inf"], "--overlap inf: a fraction"),
    (["--tile", "64", "--overlap", "1e999"], "--overlap inf: a fraction"),
    (["--tile", "64", "--overlap", "-inf"], "--overlap -inf: a fraction"),
    (["--tile", "64", "--overlap", "-0.1"], "--overlap -0.1: a fraction"),
    (["--tile", "64", "--overlap", "1"], "--overlap 1.0: a fraction"),
    (["--tile", "64", "--overlap", "abc"], "'--overlap': 'abc' is not a valid float"),
    (["--tile", "0", "--overlap", "nan"], "--overlap needs --tile"),
    (["--tile", "64", "--overlap", "0.5", "--overlap", "0.995"], "--tile 64 --overlap 0.995"),
]


@pytest.mark.parametrize("command", ["predict", "report"])
@pytest.mark.parametrize(("options", "words"), HOSTILE)
def test_hostile_tile_options_are_one_line(
    model_file, run_folder, forwards, tmp_path, command, options, words
):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    target = [tmp_path / "a.png"] if command == "predict" else []
    model = model_for(command, model_file, run_folder)
    result = invoke(command, "--model", model, *target, "--out", tmp_path / "out", *options)
    assert words in usage_error_line(result)
    assert not (tmp_path / "out").exists() and not forwards


@pytest.mark.parametrize("tile", [33, 50, 100, 8192])
@pytest.mark.parametrize("overlap", [0.0, -0.0, 0.5, 0.8])
def test_odd_and_huge_tiles_blend_right(forwards, tile, overlap):
    """Tiles that are no multiple of 32, or far larger than the image, on a 70x290 picture: each
    pixel's own logits back (the identity network), every pass no larger than the image needs."""
    picture = picture_of(70, 290)
    blended = blend(segmenter_of(Identity(), 3), picture, make_tiling(tile, overlap))
    torch.testing.assert_close(blended, normalise(picture), rtol=0, atol=1e-5)
    assert all(height <= min(tile, 96) and width <= min(tile, 320) for height, width in forwards)


def test_serve_refuses_hostile_tiles_in_one_line_and_serves_the_next(forwards, tmp_path):
    model = save_seeded_voc_model(tmp_path / "model.pth")
    good = encoded(noise(40, 30), "JPEG")
    cases = [
        ({"tile": "abc"}, "tile"),
        ({"tile": -1}, "tile"),
        ({"tile": 2049}, "tile"),
        ({"tile": "1e3"}, "tile"),
        ({"tile": "64.5"}, "tile"),
        ({"tile": 64, "overlap": "abc"}, "overlap"),
        ({"tile": 64, "overlap": "inf"}, "overlap inf"),
        ({"tile": 64, "overlap": "-0.5"}, "overlap -0.5"),
        ({"tile": 64, "overlap": 1}, "overlap 1.0"),
        ({"tile": 32, "overlap": 0.99}, "overlap 0.99: at most 0.75 here"),
        ({"tile": 64, "overlap": 0.8}, "overlap 0.8: at most 0.75 here"),
        ([("tile", "64"), ("tile", "abc")], "tile"),
    ]
    with served_client(model) as client:
        for params, words in cases:
            response = client.post("/v1/segment", content=good, headers={"content-type": "image/jpeg"},
                                   params=params)  # fmt: skip
            check_error(response, 422, words)
            served = client.post("/v1/segment", content=good, headers={"content-type": "image/jpeg"},
                                 params={"tile": 32, "overlap": 0.75})  # fmt: skip
            assert served.status_code == 200, served.text
    assert forwards and max(max(shape) for shape in forwards) <= 32
    with pytest.raises(OptionError, match="overlap 0.99"):
        make_tiling(32, 0.99)
    assert make_tiling(32, 0.75) == Tiling(32, 0.75)
