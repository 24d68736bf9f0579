"""The sliding window (`--tile/--overlap`): tiles cover every pixel, blending puts each tile's
logits back where they came from, one tile equals the whole-image path, thin structures that a
letterbox erases survive, and predict and report take the flags."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from model_files import save_untrained_voc_model
from PIL import Image
from torch import nn

import fastseg.inference.segmented as segmented_module
from cli.main import main
from fastseg.imaging.geometry import IMAGE_FILL, LETTERBOX
from fastseg.imaging.normalise import IMAGENET_MEAN, IMAGENET_STD, normalise
from fastseg.inference.segmenter import Segmenter, segment
from fastseg.inference.sliding import blended_bands
from fastseg.inference.tiling import Tiling, make_tiling
from fastseg.model.checkpoint import LoadedModel
from fastseg.model.config import ModelConfig
from fastseg.model.network import SegmentationModel


def segmenter_of(network: nn.Module, classes: int, size: int = 64, tiling: Tiling | None = None) -> Segmenter:
    loaded = LoadedModel(network.eval(), size, LETTERBOX, [str(c) for c in range(classes)],
                         IMAGENET_MEAN, IMAGENET_STD, {})  # fmt: skip
    return Segmenter.with_torch(loaded, torch.device("cpu"), precision="fp32", tiling=tiling)


class Identity(nn.Module):
    """Logits = the normalised input itself (3 "classes"): a blend that puts any tile's values one
    pixel off, or weighs them wrongly, no longer gives back the image."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.clone()


def darkness_model() -> nn.Module:
    """Two classes from one 1x1 convolution: class 1 wins where a pixel is more than half dark
    (mean of R, G, B below 127.5), whatever its surroundings; a fixed rule, no training."""
    convolution = nn.Conv2d(3, 2, 1)
    with torch.no_grad():
        convolution.weight.zero_()
        convolution.bias.zero_()
        std, mean = torch.tensor(IMAGENET_STD), torch.tensor(IMAGENET_MEAN)
        # brightness = mean_c(x_c * std_c + mean_c); class 1 logit = 20 * (0.5 - brightness)
        convolution.weight[1, :, 0, 0] = -20 * std / 3
        convolution.bias[1] = 20 * (0.5 - mean.mean())
    return convolution


@pytest.mark.parametrize("length", [1, 31, 32, 33, 100, 257, 1000])
@pytest.mark.parametrize(("tile", "overlap"), [(32, 0.0), (32, 0.25), (64, 0.5), (48, 0.9)])
def test_tiles_cover_every_pixel_and_stay_inside_the_image(length, tile, overlap):
    tiling = Tiling(tile, overlap)
    starts = tiling.starts(length)
    covered = np.zeros(length, dtype=int)
    for start in starts:
        covered[start : start + tile] += 1
    assert covered.min() >= 1
    assert starts == sorted(set(starts)) and starts[0] == 0
    if length >= tile:  # no window reaches past the image; the last ends at its edge
        assert starts[-1] + tile == length
    assert all(after - before <= tiling.stride for before, after in zip(starts, starts[1:], strict=False))


@pytest.mark.parametrize(("tile", "overlap", "stride"), [(64, 0.25, 48), (64, 0.5, 32), (40, 0.0, 40)])
def test_the_window_is_positive_and_neighbours_sum_to_one(tile, overlap, stride):
    tiling = Tiling(tile, overlap)
    assert tiling.stride == stride
    ramp = tiling.ramp()
    assert ramp.min() > 0 and ramp.max() <= 1.0
    np.testing.assert_allclose(ramp, ramp[::-1])
    summed = np.zeros(tile + stride)
    summed[:tile] += ramp
    summed[stride:] += ramp
    np.testing.assert_allclose(summed[stride:tile], 1.0, rtol=1e-6)  # the overlap: a partition of one


@pytest.mark.parametrize(("height", "width"), [(70, 101), (20, 30), (64, 64), (33, 200)])
@pytest.mark.parametrize(("tile", "overlap"), [(32, 0.25), (48, 0.5), (64, 0.0), (32, 0.8)])
def test_blended_tiles_give_back_what_each_tile_saw(height, width, tile, overlap, monkeypatch):
    """With logits equal to the input, the blend at full size is the normalised picture itself,
    for every tile size, overlap and image smaller or larger than a tile; bands come in order,
    each row once, within the band budget."""
    monkeypatch.setattr(segmented_module, "BAND_VALUES", 3 * width * 5)  # 5 rows a band
    picture = np.random.default_rng(height * width).integers(0, 255, (height, width, 3), dtype=np.uint8)
    segmenter = segmenter_of(Identity(), 3)
    bands = list(blended_bands(segmenter, picture, Tiling(tile, overlap), batch_size=3))
    assert all(before.stop == after.start for (before, _), (after, _) in zip(bands, bands[1:], strict=False))
    assert bands[0][0].start == 0 and bands[-1][0].stop == height
    assert max(band.shape[1] for _, band in bands) <= 5
    blended = torch.cat([band for _, band in bands], dim=1)
    torch.testing.assert_close(blended, normalise(picture), rtol=0, atol=1e-5)


def test_rows_are_handed_out_before_later_rows_of_tiles_run():
    """Streaming, the bound on memory: the first band comes after the first row of tiles only,
    and no buffer holds more than a tile's height of rows."""
    calls = []

    class Counting(Identity):
        def forward(self, images):
            calls.append(len(images))
            return super().forward(images)

    picture = np.zeros((400, 100, 3), dtype=np.uint8)
    tiling = Tiling(32, 0.25)
    bands = blended_bands(segmenter_of(Counting(), 3), picture, tiling, batch_size=64)
    rows, band = next(bands)
    per_row = len(tiling.starts(100))
    assert sum(calls) == per_row and rows.start == 0 and band.shape[1] <= tiling.stride
    assert sum(1 for _ in bands) > 0 and sum(calls) == per_row * len(tiling.starts(400))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_untrained_voc_model(tmp_path_factory.mktemp("model") / "model.pth", 64, resize=LETTERBOX)


def predict(model_file, image, out, *options):
    arguments = ["--quiet", "--num-workers", "0", "--precision", "fp32", *options]
    result = CliRunner().invoke(main, ["predict", "--model", str(model_file), str(image), "--out", str(out),
                                       *arguments])  # fmt: skip
    assert result.exit_code == 0, result.output
    with Image.open(out / f"{image.stem}.png") as mask:
        return np.array(mask)


def test_both_strategies_hand_out_the_same_segmented_images(tmp_path):
    """The strategy is chosen once, from the tiling, and either one hands out the `Segmented`
    protocol: for a picture that one tile covers (the input the letterbox would make), the same
    index, size, classes, bands and labels; for an unreadable file, the same error and no model."""
    import dataclasses

    from fastseg.inference.sliding import SlidingWindow, TiledImage
    from fastseg.inference.whole_image import FittedImage, WholeImage

    picture = np.random.default_rng(3).integers(0, 255, (40, 64, 3), dtype=np.uint8)
    Image.fromarray(picture).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not a picture")
    whole = segmenter_of(darkness_model(), 2)
    tiled = dataclasses.replace(whole, tiling=Tiling(64, 0.25))
    assert isinstance(whole.strategy, WholeImage) and whole.dataset([]).fit
    assert tiled.strategy == SlidingWindow(Tiling(64, 0.25)) and not tiled.dataset([]).fit
    assert tiled.runtime is whole.runtime  # one network, two strategies
    results = {}
    for name, segmenter in (("whole", whole), ("tiled", tiled)):
        paths = [tmp_path / "a.png", tmp_path / "b.png"]
        results[name] = list(segment(segmenter, segmenter.dataset(paths), batch_size=2, num_workers=0))
    (fitted, unreadable), (tile, broken) = results["whole"], results["tiled"]
    assert isinstance(fitted, FittedImage) and isinstance(tile, TiledImage)
    described = [(result.index, result.size, result.num_classes) for result in (fitted, tile)]
    assert described == [(0, (40, 64), 2)] * 2
    blended, upsampled = (torch.cat([band for _, band in result.bands()], dim=1) for result in (tile, fitted))
    torch.testing.assert_close(blended, upsampled, rtol=0, atol=1e-5)
    labels = fitted.labels()
    assert labels.shape == (40, 64) and set(np.unique(labels)) == {0, 1}
    np.testing.assert_array_equal(tile.labels(), labels)
    assert unreadable.index == broken.index == 1 and unreadable.error == broken.error != ""


def test_a_segmenter_needs_its_runtime():
    """No runtime is made behind the caller's back: the torch runtime is asked for by name."""
    loaded = LoadedModel(darkness_model().eval(), 64, LETTERBOX, ["0", "1"], IMAGENET_MEAN, IMAGENET_STD, {})
    with pytest.raises(TypeError, match="Segmenter.with_torch"):
        Segmenter(loaded, torch.device("cpu"))


def test_one_tile_equals_the_whole_image_path(model_file, tmp_path):
    """A 64x40 image under a 64 tile is padded exactly as the 64² letterbox pads it: the same
    input, so the same labels, through `fastseg predict`."""
    picture = np.random.default_rng(1).integers(0, 255, (40, 64, 3), dtype=np.uint8)
    Image.fromarray(picture).save(tmp_path / "a.png")
    plain = predict(model_file, tmp_path / "a.png", tmp_path / "plain")
    tiled = predict(model_file, tmp_path / "a.png", tmp_path / "tiled", "--tile", "64", "--overlap", "0.5")
    assert plain.shape == (40, 64) and len(np.unique(plain)) > 1
    np.testing.assert_array_equal(tiled, plain)


def test_an_image_smaller_than_a_tile_is_the_model_on_its_padded_picture(model_file):
    """A 30x20 picture under a 64 tile: the model on the picture padded bottom-right with the
    letterbox colour to 32² (the window shrinks to the image, rounded up to the deepest stride:
    s34, tests/test_hostile_tiling_s34.py), cropped back, logits to float rounding and labels exactly."""
    from fastseg.model.checkpoint import load_model

    picture = np.random.default_rng(2).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    segmenter = Segmenter.with_torch(load_model(model_file), torch.device("cpu"), precision="fp32")
    padded = np.empty((32, 32, 3), dtype=np.uint8)
    padded[:] = IMAGE_FILL
    padded[:20, :30] = picture
    expected = segmenter.logits(normalise(padded)[None])[0, :, :20, :30]
    blended = torch.cat([band for _, band in blended_bands(segmenter, picture, Tiling(64, 0.25), 4)], dim=1)
    torch.testing.assert_close(blended, expected, rtol=0, atol=1e-5)
    assert torch.equal(blended.argmax(0), expected.argmax(0))


def test_thin_lines_lost_in_a_512_letterbox_survive_tiling(tmp_path):
    """One-pixel dark lines on a light 2048x1536 picture: fitted into 512² (a quarter of the
    size) they blur to a quarter of their darkness and the model sees none of them; tiles at the
    image's own resolution find every line pixel and nothing else."""
    picture = np.full((1536, 2048, 3), 230, dtype=np.uint8)
    picture[100::97, :] = 20  # horizontal lines, one pixel thick
    picture[:, 150::131] = 20  # and vertical ones
    Image.fromarray(picture).save(tmp_path / "lines.png")
    lines = picture[..., 0] == 20

    def labels(tiling):
        segmenter = segmenter_of(darkness_model(), 2, size=512, tiling=tiling)
        dataset = segmenter.dataset([tmp_path / "lines.png"])
        (result,) = segment(segmenter, dataset, batch_size=4, num_workers=0)
        return result.labels()

    plain, tiled = labels(None), labels(Tiling(512, 0.25))
    assert plain[lines].mean() < 0.05  # the letterbox erased them
    assert tiled[lines].all() and not tiled[~lines].any()


@pytest.mark.slow
def test_report_scores_the_sliding_windows_labels(voc_root):
    """The report's scoring (`report.evaluate`: per image and in total, from bands of blended
    logits) counts the same as the tiles' labels against the masks, by hand."""
    from fastseg.data.voc import find_voc
    from fastseg.imaging.masks import read_mask
    from fastseg.inference.report import evaluate
    from fastseg.metrics import ConfusionMatrix, scores_from_matrix

    folder = find_voc(voc_root)
    ids = folder.ids("val")[:3]
    torch.manual_seed(0)
    network = SegmentationModel(ModelConfig(num_classes=21))
    segmenter = segmenter_of(network, 21, size=32, tiling=Tiling(48, 0.5))
    total, per_image = evaluate(segmenter, folder, ids, None, batch_size=8, num_workers=0)
    by_hand = ConfusionMatrix(21)
    for result in segment(segmenter, segmenter.dataset([folder.image_path(i) for i in ids]), 8, 0):
        mask = torch.from_numpy(read_mask(folder.mask_path(ids[result.index])))
        counts = ConfusionMatrix.counts(torch.from_numpy(result.labels()), mask, 21)
        by_hand.add(counts)
        row = per_image.iloc[result.index]
        assert row["pixel_accuracy"] == pytest.approx(scores_from_matrix(counts).pixel_accuracy)
    assert torch.equal(total.matrix, by_hand.matrix) and total.matrix.sum() > 0
    assert np.isfinite(per_image["loss"]).all()


@pytest.mark.parametrize("command", ["predict", "report"])
def test_report_and_predict_refuse_bad_tiles_alike(model_file, tmp_path, command):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    target = [str(tmp_path / "a.png")] if command == "predict" else []
    target += ["--out", str(tmp_path / "out")]
    result = CliRunner().invoke(main, [command, "--model", str(model_file), *target, "--tile", "31"])
    assert result.exit_code == 2 and "--tile 31: at least 32" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--tile", "16"], "--tile 16: at least 32"),
        (["--tile", "100000"], "--tile 100000: at most 8192 pixels"),
        (["--tile", "64", "--overlap", "1"], "--overlap 1.0: a fraction"),
        (["--tile", "64", "--overlap", "-0.1"], "--overlap -0.1: a fraction"),
        (["--overlap", "0.5"], "--overlap needs --tile"),
        (["--tile", "64", "--size", "64"], "--size and --tile exclude each other"),
    ],
)
def test_bad_tile_options_are_one_usage_line(model_file, tmp_path, options, message):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    result = CliRunner().invoke(main, ["predict", "--model", str(model_file), str(tmp_path / "a.png"),
                                       "--out", str(tmp_path / "out"), *options])  # fmt: skip
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_no_tile_is_the_whole_image_path():
    assert make_tiling(0, None) is None and make_tiling(None, None, 64) is None
    assert make_tiling(64, None) == Tiling(64, 0.25)
