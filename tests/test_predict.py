"""`fastseg predict` on awkward inputs: sizes, modes, EXIF, bad files, resume, no data loss."""

import csv
import io

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from model_files import randomise_batchnorm_statistics, save_untrained_voc_model
from PIL import Image

from cli.main import main
from fastseg.inference.precision import cpu_supports_bf16
from fastseg.inference.prediction_log import FIXED_FIELDS
from fastseg.inference.segmenter import Segmenter
from fastseg.model.checkpoint import load_model


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_untrained_voc_model(tmp_path_factory.mktemp("model") / "model.pth", 32)


def noise(width, height, mode="RGB"):
    rng = np.random.default_rng(width * 1000 + height)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).convert(mode)


def run(model_file, *arguments):
    return CliRunner().invoke(main, ["predict", "--model", str(model_file), "--quiet", "--num-workers", "0",
                                     *map(str, arguments)])  # fmt: skip


def read_csv(path):
    with path.open() as file:
        return {row["path"]: row for row in csv.DictReader(file)}


def test_outputs_have_each_inputs_size_and_mirror_the_tree(model_file, tmp_path):
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    noise(131, 97).save(source / "odd.jpg")
    noise(40, 33, "L").save(source / "sub" / "grey.png")
    noise(50, 60, "RGBA").save(source / "sub" / "alpha.png")
    noise(45, 35, "P").save(source / "palette.gif")
    noise(30, 40, "CMYK").save(source / "cmyk.jpg")
    Image.fromarray(np.full((20, 24), 40000, np.uint16)).save(source / "deep.tif")
    (source / "notes.txt").write_text("not an image, passed over")
    result = run(model_file, source, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "6 segmented, 0 failed" in result.output
    expected = {"odd.png": (131, 97), "sub/grey.png": (40, 33), "sub/alpha.png": (50, 60),
                "palette.png": (45, 35), "cmyk.png": (30, 40), "deep.png": (24, 20)}  # fmt: skip
    for name, size in expected.items():
        with Image.open(tmp_path / "out" / name) as mask:
            assert mask.mode == "P" and mask.size == size, name
            assert np.array(mask).max() <= 20
    rows = read_csv(tmp_path / "out" / "predictions.csv")
    odd = rows[str(source / "odd.jpg")]
    assert (odd["width"], odd["height"], odd["status"]) == ("131", "97", "ok")
    assert odd["runtime"] == ("torch bf16" if cpu_supports_bf16() else "torch fp32")
    fractions = [float(odd[name]) for name in list(odd)[len(FIXED_FIELDS) :]]
    assert sum(fractions) == pytest.approx(1.0, abs=1e-4)


def test_exif_orientation_is_applied(model_file, tmp_path):
    image = noise(40, 20)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    result = run(model_file, tmp_path / "rotated.jpg", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "rotated.png") as mask:
        assert mask.size == (20, 40)


def test_bad_files_are_reported_and_the_rest_done(model_file, tmp_path, monkeypatch):
    source = tmp_path / "in"
    source.mkdir()
    noise(30, 30).save(source / "good.jpg")  # 900 pixels: under the limit below
    buffer = io.BytesIO()
    noise(64, 64).save(buffer, format="JPEG")
    (source / "truncated.jpg").write_bytes(buffer.getvalue()[:300])
    (source / "empty.jpg").write_bytes(b"")
    (source / "text.jpg").write_text("I am not a JPEG")
    noise(60, 60).save(source / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 60x60 = 3600 > 2x: a "bomb" here
    result = run(model_file, source, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert "1 segmented, 4 failed" in result.output
    for name, reason in (("truncated.jpg", "truncated"), ("empty.jpg", "empty file"),
                         ("text.jpg", "not an image"), ("huge.png", "too large")):  # fmt: skip
        assert f"{source / name}: " in result.output and reason in result.output, name
    assert "Traceback" not in result.output
    assert (tmp_path / "out" / "good.png").is_file()
    assert read_csv(tmp_path / "out" / "predictions.csv")[str(source / "empty.jpg")]["status"] == "failed"


def test_skip_existing_leaves_finished_images(model_file, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    for index in range(3):
        noise(30 + index, 30).save(source / f"{index}.jpg")
    assert run(model_file, source, "--out", tmp_path / "out").exit_code == 0
    done = tmp_path / "out" / "1.png"
    done.write_bytes(b"marker: must survive")
    (tmp_path / "out" / "2.png").unlink()
    result = run(model_file, source, "--out", tmp_path / "out", "--skip-existing")
    assert result.exit_code == 0 and "1 segmented, 0 failed, 2 skipped" in result.output
    assert done.read_bytes() == b"marker: must survive"
    assert (tmp_path / "out" / "2.png").is_file()


def test_inputs_are_never_overwritten_even_with_out_in_place(model_file, tmp_path):
    noise(32, 32).save(tmp_path / "photo.png")
    noise(32, 32).save(tmp_path / "other.jpg")
    before = (tmp_path / "photo.png").read_bytes()
    result = run(model_file, tmp_path, "--out", tmp_path)
    assert result.exit_code == 1
    assert "would overwrite an input" in result.output
    assert (tmp_path / "photo.png").read_bytes() == before
    assert (tmp_path / "other.png").is_file()


def test_interrupted_write_leaves_no_partial_file(model_file, tmp_path, monkeypatch):
    noise(32, 32).save(tmp_path / "a.jpg")
    original_save = Image.Image.save

    def dying_save(self, fp, *args, **kwargs):
        if str(fp).endswith(".tmp"):
            original_save(self, fp, *args, **kwargs)
            raise KeyboardInterrupt  # the write finished into the temporary file, rename never happened
        return original_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        from fastseg.inference.predict import predict

        predict(model_file, [tmp_path / "a.jpg"], tmp_path / "out", num_workers=0)
    assert list((tmp_path / "out").iterdir()) == []


def test_tta_is_flip_equivariant(model_file):
    segmenter = Segmenter.with_torch(load_model(model_file), torch.device("cpu"), precision="fp32", tta=True)
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(segmenter.logits(images.flip(-1)), segmenter.logits(images).flip(-1))


def test_overlay_is_written_at_image_size(model_file, tmp_path):
    noise(41, 29).save(tmp_path / "a.jpg")
    assert run(model_file, tmp_path / "a.jpg", "--out", tmp_path / "out", "--overlay").exit_code == 0
    with Image.open(tmp_path / "out" / "a.overlay.jpg") as overlay:
        assert overlay.size == (41, 29) and overlay.mode == "RGB"


@pytest.mark.slow
def test_torchrun_shards_predict_and_merges_the_csv(model_file, tmp_path):
    """2 CPU processes (gloo): each image is done exactly once, one predictions.csv remains."""
    import subprocess
    import sys
    from pathlib import Path

    source = tmp_path / "in"
    source.mkdir()
    for index in range(7):
        noise(30 + index, 28).save(source / f"{index}.jpg")
    torchrun = Path(sys.executable).parent / "torchrun"
    command = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "fastseg", "predict",
               "--model", str(model_file), str(source), "--out", str(tmp_path / "out"), "--device", "cpu",
               "--quiet", "--num-workers", "0"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "7 segmented, 0 failed" in result.stdout
    rows = read_csv(tmp_path / "out" / "predictions.csv")
    assert sorted(rows) == sorted(str(source / f"{index}.jpg") for index in range(7))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [f"{index}.png" for index in range(7)] + ["predictions.csv"]
    )


def test_batchnorm_folding_keeps_the_logits(model_file):
    """Segmenter folds BatchNorm into convolutions for speed: outputs must not change."""
    # non-trivial statistics, so folding has something to get wrong
    reference = randomise_batchnorm_statistics(load_model(model_file).model.eval())
    images = torch.randn(2, 3, 40, 36)
    with torch.no_grad():
        expected = reference(images)
    loaded = load_model(model_file)
    loaded.model.load_state_dict(reference.state_dict())
    segmenter = Segmenter.with_torch(loaded, torch.device("cpu"), precision="fp32")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in segmenter.model.modules())
    torch.testing.assert_close(segmenter.logits(images), expected, rtol=1e-4, atol=1e-4)


def decoded_paths(monkeypatch) -> list:
    """Every path the loader decodes from now on (in this process: tests run with 0 workers)."""
    from fastseg.inference import files

    decoded, original = [], files.load_rgb
    monkeypatch.setattr(files, "load_rgb", lambda path: decoded.append(path) or original(path))
    return decoded


@pytest.mark.parametrize(
    ("parent", "reason"), [("file", "{parent} is not a folder"), ("locked", "Permission denied")]
)
def test_out_that_cannot_be_created_is_one_line_before_any_image_is_decoded(
    model_file, tmp_path, monkeypatch, parent, reason
):
    """--out under a file, or under a folder the user may not write into. Root ignores permission
    bits, so for the latter the refusal a user gets from mkdir is raised by hand."""
    from pathlib import Path

    noise(32, 32).save(tmp_path / "a.jpg")
    out = tmp_path / parent / "out"
    if parent == "file":
        (tmp_path / parent).write_text("a file, not a folder")
    else:
        original_mkdir = Path.mkdir

        def refused(self, *args, **kwargs):
            if self == out:
                raise PermissionError(13, "Permission denied", str(self))
            return original_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", refused)
    decoded = decoded_paths(monkeypatch)
    result = run(model_file, tmp_path / "a.jpg", "--out", out)
    assert result.exit_code == 1
    reason = reason.format(parent=tmp_path / parent)  # mkdir's "Not a directory" named no file
    assert result.output == f"Error: {out}: cannot create the output folder ({reason})\n"
    assert decoded == []


def test_read_only_out_is_one_line_before_any_image_is_decoded(model_file, tmp_path, monkeypatch):
    """An existing folder the user may not write into (simulated: root may write anywhere)."""
    import os

    noise(32, 32).save(tmp_path / "a.jpg")
    out = tmp_path / "out"
    out.mkdir()
    original_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if path == out else original_access(
        path, mode, **kw))  # fmt: skip
    decoded = decoded_paths(monkeypatch)
    result = run(model_file, tmp_path / "a.jpg", "--out", out)
    assert result.exit_code == 1
    assert result.output == f"Error: {out}: cannot write into the output folder (permission denied)\n"
    assert decoded == [] and list(out.iterdir()) == []


def test_output_folder_blocked_by_a_file_is_one_failure_and_the_rest_done(model_file, tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    (source / "a").mkdir(parents=True)
    for name in ("a/x.jpg", "b.jpg", "z.jpg"):
        noise(30, 31).save(source / name)
    out.mkdir()
    (out / "a").write_text("a file where the subfolder should go")
    result = run(model_file, source, "--out", out)
    assert result.exit_code == 1
    assert f"{source / 'a' / 'x.jpg'}: cannot write {out / 'a' / 'x.png'} (File exists: {out / 'a'})\n" in (
        result.output)  # fmt: skip
    assert "2 segmented, 1 failed" in result.output and "Traceback" not in result.output
    assert (out / "b.png").is_file() and (out / "z.png").is_file()
    rows = read_csv(out / "predictions.csv")
    statuses = [rows[str(source / name)]["status"] for name in ("a/x.jpg", "b.jpg", "z.jpg")]
    assert statuses == ["failed", "ok", "ok"]


def test_out_of_memory_on_one_image_is_one_failure_and_the_rest_done(model_file, tmp_path, monkeypatch):
    """A picture too big for the memory left, whether it runs out while decoding or in torch while
    upsampling, is a named failure like an unreadable file."""
    from fastseg.imaging import images

    source = tmp_path / "in"
    source.mkdir()
    for name, width in (("decode.jpg", 30), ("ok.jpg", 31), ("upsample.jpg", 57)):
        noise(width, 40).save(source / name)
    original_load = images.load_rgb
    original_labels = Segmenter.labels

    def load(path):
        if path.name == "decode.jpg":
            raise MemoryError
        return original_load(path)

    def labels(self, logits, height, width):
        if width == 57:
            raise RuntimeError(
                "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                "you tried to allocate 7421000000 bytes. Error code 12"
            )
        return original_labels(self, logits, height, width)

    monkeypatch.setattr("fastseg.inference.files.load_rgb", load)
    monkeypatch.setattr(Segmenter, "labels", labels)
    result = run(model_file, source, "--out", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert f"{source / 'decode.jpg'}: out of memory while decoding\n" in result.output
    assert (f"{source / 'upsample.jpg'}: out of memory at 57x40 ([enforce fail at alloc_cpu.cpp:117] data. "
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate 7421000000 bytes. Error code "
            "12)\n") in result.output  # fmt: skip
    assert "1 segmented, 2 failed" in result.output
    assert (tmp_path / "out" / "ok.png").is_file() and not (tmp_path / "out" / "upsample.png").exists()
    assert read_csv(tmp_path / "out" / "predictions.csv")[str(source / "upsample.jpg")]["status"] == "failed"


def test_a_bug_is_not_disguised_as_out_of_memory(model_file, tmp_path, monkeypatch):
    noise(30, 30).save(tmp_path / "a.jpg")
    monkeypatch.setattr(Segmenter, "labels", lambda *arguments: 1 / 0)
    result = run(model_file, tmp_path / "a.jpg", "--out", tmp_path / "out")
    assert isinstance(result.exception, ZeroDivisionError)


GROWTH = """
import sys
from pathlib import Path

from fastseg.inference.predict import predict


def status(key):
    with open("/proc/self/status") as file:
        return next(int(line.split()[1]) * 1024 for line in file if line.startswith(key + ":"))


def growth(image, out):
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from the RSS now
    before = status("VmRSS")
    predict(Path(model), [Path(image)], Path(out), num_workers=0, overlay=overlay)
    return status("VmHWM") - before


model, small, large, out, overlay = *sys.argv[1:5], sys.argv[5] == "--overlay"
growth(small, Path(out) / "warm-up")
print(growth(small, Path(out) / "small"), growth(large, Path(out) / "large"))
"""


@pytest.mark.slow
@pytest.mark.parametrize(("overlay", "bound"), [("", 12), ("--overlay", 20)])
def test_a_huge_image_costs_a_few_bytes_a_pixel_above_a_small_one(model_file, tmp_path, overlay, bound):
    """How far a whole `predict()` call (model load included) lifts the peak RSS of a process, for a
    4000x3000 photo above a 64x48 one, in bytes per pixel. The picture (4 bytes a pixel), its labels
    (1) and with --overlay the original kept (3) and the blend (7) may grow with the image; all 21
    class maps at full size (84), whole-image float temporaries or 64 MiB bands (32-40 measured
    before) may not. The baseline is the same process: RSS from other processes' noise cancels.
    Root may read /proc/self/clear_refs, as may any user for their own process."""
    import subprocess
    import sys

    noise(64, 48).save(tmp_path / "small.jpg")
    noise(4000, 3000).save(tmp_path / "large.jpg")
    arguments = [model_file, tmp_path / "small.jpg", tmp_path / "large.jpg", tmp_path / "out", overlay]
    command = [sys.executable, "-c", GROWTH, *map(str, arguments)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    small, large = map(int, result.stdout.split())
    assert (tmp_path / "out" / "large" / "large.png").is_file()
    assert (large - small) / (4000 * 3000) < bound


@pytest.mark.parametrize("band_values", [21 * 57, 21 * 57 * 7, 1 << 22])  # one row, 7 rows, all at once
def test_labels_come_from_bounded_bands_equal_to_the_whole_map(model_file, monkeypatch, band_values):
    """The full-size class scores of a 90x57 image exist a band of rows at a time, each within the
    budget, and give the values (and so the labels) of one `F.interpolate` over the whole map."""
    import torch.nn.functional as F

    import fastseg.inference.segmented as segmented_module

    monkeypatch.setattr(segmented_module, "BAND_VALUES", band_values)
    segmenter = Segmenter.with_torch(load_model(model_file), torch.device("cpu"), precision="fp32")
    logits = torch.randn(21, 32, 32, generator=torch.Generator().manual_seed(0))
    whole = F.interpolate(logits[None], size=(90, 57), mode="bilinear", align_corners=False)[0]
    bands = list(segmenter.bands(logits, 90, 57))
    assert bands[-1][0].stop == 90 and max(band.numel() for _, band in bands) <= band_values
    torch.testing.assert_close(torch.cat([band for _, band in bands], dim=1), whole, rtol=0, atol=2e-5)
    np.testing.assert_array_equal(segmenter.labels(logits, 90, 57), whole.argmax(0).numpy())


def test_skip_existing_with_overlay_redoes_an_image_whose_overlay_is_missing(model_file, tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    for index in range(3):
        noise(30 + index, 30).save(source / f"{index}.jpg")
    assert run(model_file, source, "--out", out, "--overlay").exit_code == 0
    (out / "1.overlay.jpg").unlink()
    result = run(model_file, source, "--out", out, "--overlay", "--skip-existing")
    assert result.exit_code == 0 and "1 segmented, 0 failed, 2 skipped" in result.output
    with Image.open(out / "1.overlay.jpg") as overlay:
        assert overlay.size == (31, 30)
    statuses = {name: row["status"] for name, row in read_csv(out / "predictions.csv").items()}
    assert statuses == {str(source / "0.jpg"): "skipped", str(source / "1.jpg"): "ok",
                        str(source / "2.jpg"): "skipped"}  # fmt: skip


def test_out_inside_the_input_folder_is_not_walked(model_file, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    noise(30, 30).save(source / "a.jpg")
    noise(31, 30).save(source / "b.png")
    for _ in range(3):
        result = run(model_file, source, "--out", source / "masks", "--overlay")
        assert result.exit_code == 0, result.output
        assert "2 segmented, 0 failed" in result.output
    assert sorted(path.relative_to(source).as_posix() for path in source.rglob("*")) == [
        "a.jpg", "b.png", "masks", "masks/a.overlay.jpg", "masks/a.png", "masks/b.overlay.jpg", "masks/b.png",
        "masks/predictions.csv"]  # fmt: skip
    rows = read_csv(source / "masks" / "predictions.csv")
    assert sorted(rows) == [str(source / "a.jpg"), str(source / "b.png")]


def test_the_same_file_given_twice_is_done_once(model_file, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    noise(30, 30).save(source / "x.jpg")
    noise(31, 30).save(source / "y.jpg")
    twice = [source, source / "x.jpg", source / ".." / "in" / "x.jpg", tmp_path / "link.jpg"]
    (tmp_path / "link.jpg").symlink_to(source / "y.jpg")  # a link to a file given via the folder
    result = run(model_file, *twice, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "2 segmented, 0 failed" in result.output
    rows = read_csv(tmp_path / "out" / "predictions.csv")
    assert sorted(rows) == [str(source / "x.jpg"), str(source / "y.jpg")]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["predictions.csv", "x.png", "y.png"]


def test_unreadable_file_says_permission_denied(model_file, tmp_path, monkeypatch):
    """Root reads any file, so the refusal a user gets is simulated where the file is opened."""
    from pathlib import Path

    noise(30, 30).save(tmp_path / "locked.jpg")
    noise(30, 30).save(tmp_path / "open.jpg")
    original_open = Path.open

    def refusing_open(self, *args, **kwargs):
        if self.name == "locked.jpg":
            raise PermissionError(13, "Permission denied", str(self))
        return original_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refusing_open)
    result = run(model_file, tmp_path / "locked.jpg", tmp_path / "open.jpg", "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert f"{tmp_path / 'locked.jpg'}: permission denied\n" in result.output
    assert "1 segmented, 1 failed" in result.output
    row = read_csv(tmp_path / "out" / "predictions.csv")[str(tmp_path / "locked.jpg")]
    assert (row["status"], row["error"]) == ("failed", "permission denied")


def test_resumed_run_keeps_sizes_and_class_fractions_of_skipped_images(model_file, tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    for index in range(3):
        noise(30 + index, 29).save(source / f"{index}.jpg")
    assert run(model_file, source, "--out", out).exit_code == 0
    first = read_csv(out / "predictions.csv")
    (out / "2.png").unlink()
    assert run(model_file, source, "--out", out, "--skip-existing").exit_code == 0
    second = read_csv(out / "predictions.csv")
    for index in (0, 1):  # carried over from the previous predictions.csv, seconds included
        path = str(source / f"{index}.jpg")
        assert second[path] == {**first[path], "status": "skipped"}
    (out / "predictions.csv").unlink()  # an interrupted run leaves none: the masks are read back
    assert run(model_file, source, "--out", out, "--skip-existing").exit_code == 0
    third = read_csv(out / "predictions.csv")
    for index in range(3):
        path = str(source / f"{index}.jpg")
        # read back from the mask: no time, no runtime
        assert third[path] == {**second[path], "status": "skipped", "seconds": "", "runtime": ""}, index
    (out / "1.png").write_bytes(b"not a PNG: a mask that cannot be read back is done again")
    (out / "predictions.csv").unlink()
    result = run(model_file, source, "--out", out, "--skip-existing")
    assert result.exit_code == 0 and "1 segmented, 0 failed, 2 skipped" in result.output
    with Image.open(out / "1.png") as mask:
        assert mask.size == (31, 29)


def test_predicting_in_place_twice_takes_no_earlier_output_for_an_input(model_file, tmp_path):
    """`predict DIR --out DIR --overlay` run twice made `a.overlay.overlay.jpg` and `a.overlay.png`
    from the first run's overlay (and refused its own masks as inputs): fastseg's own masks and
    overlays in the folder are outputs, not photos; the user's images are still inputs."""
    folder = tmp_path / "photos"
    folder.mkdir()
    noise(40, 30).save(folder / "a.jpg")
    noise(36, 28).save(folder / "b.png")  # the user's PNG: an input whose mask would overwrite it
    first = run(model_file, str(folder), "--out", str(folder), "--overlay")
    made = sorted(path.name for path in folder.iterdir())
    assert first.exit_code == 1 and "b.png would overwrite an input" in first.output
    assert made == ["a.jpg", "a.overlay.jpg", "a.png", "b.png", "predictions.csv"]
    second = run(model_file, str(folder), "--out", str(folder), "--overlay")
    assert second.exit_code == 1 and "b.png would overwrite an input" in second.output
    assert "1 segmented, 1 failed" in second.output, second.output
    assert sorted(path.name for path in folder.iterdir()) == made


def test_predict_never_replaces_a_users_file_at_an_output_path(model_file, tmp_path):
    """Issue #19 (2): `predict DIR --out DIR --overlay` replaced the user's own `a.overlay.jpg`
    beside `a.jpg` (only mask paths were checked against inputs); a user's PNG where a mask goes
    was replaced too. Now each is a problem for that image only, and --replace-foreign replaces a file that
    is not an input; fastseg's own earlier outputs are replaced as before."""
    folder = tmp_path / "photos"
    folder.mkdir()
    noise(40, 30).save(folder / "a.jpg")
    noise(40, 30).save(folder / "a.overlay.jpg")  # the user's own photo, also an input
    noise(40, 30).save(folder / "b.jpg")
    users_overlay = (folder / "a.overlay.jpg").read_bytes()
    result = run(model_file, str(folder), "--out", str(folder), "--overlay")
    assert result.exit_code == 1
    assert "a.overlay.jpg would overwrite an input" in result.output
    assert (folder / "a.overlay.jpg").read_bytes() == users_overlay
    assert (folder / "b.png").is_file() and (folder / "b.overlay.jpg").is_file()

    out = tmp_path / "out"
    out.mkdir()
    (out / "b.png").write_bytes(b"my own file")
    result = run(model_file, str(folder / "b.jpg"), "--out", str(out))
    assert result.exit_code == 1
    assert "did not write as a mask; choose another output or use --replace-foreign" in result.output
    assert (out / "b.png").read_bytes() == b"my own file"
    assert run(model_file, str(folder / "b.jpg"), "--out", str(out), "--replace-foreign").exit_code == 0
    assert run(model_file, str(folder / "b.jpg"), "--out", str(out), "--overlay").exit_code == 0  # ours now


def test_a_folder_where_a_mask_goes_is_never_offered_to_replace_foreign(model_file, tmp_path):
    """A folder named like a mask: --replace-foreign cannot replace it (nor should it delete a
    user's folder), so the line asks to remove it or choose another output; the image fails alone,
    the folder and what it holds are kept, with or without --replace-foreign."""
    noise(40, 30).save(tmp_path / "b.jpg")
    out = tmp_path / "out"
    (out / "b.png").mkdir(parents=True)
    (out / "b.png" / "kept.txt").write_text("mine")
    for options in ((), ("--replace-foreign",)):
        result = run(model_file, str(tmp_path / "b.jpg"), "--out", str(out), *options)
        assert result.exit_code == 1
        failure = [line for line in result.output.splitlines() if "b.png" in line and "b.jpg:" in line]
        assert len(failure) == 1 and "--replace-foreign" not in failure[0], result.output
        assert "Traceback" not in result.output
        assert (out / "b.png" / "kept.txt").read_text() == "mine"
    line = "an existing folder that fastseg did not write as a mask; choose another output or remove it first"
    assert line in run(model_file, str(tmp_path / "b.jpg"), "--out", str(out)).output


def test_predictions_csv_has_plain_newlines(model_file, tmp_path):
    """Issue #19 (7): the CSV had CRLF line endings (the csv module's default)."""
    noise(20, 20).save(tmp_path / "a.png")
    assert run(model_file, str(tmp_path / "a.png"), "--out", str(tmp_path / "out")).exit_code == 0
    data = (tmp_path / "out" / "predictions.csv").read_bytes()
    assert b"\r" not in data and data.count(b"\n") == 2


def test_an_unreadable_first_image_of_a_batch_fails_alone_with_overlays(model_file, tmp_path):
    """Issue #19 (5): `--overlay` with the first image of a batch unreadable was a KeyError
    ('original') and no predictions.csv."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"not an image")
    noise(30, 20).save(folder / "b.png")
    result = run(model_file, str(folder), "--out", str(tmp_path / "out"), "--overlay")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "1 segmented, 1 failed" in result.output
    assert (tmp_path / "out" / "b.overlay.jpg").is_file()
    rows = read_csv(tmp_path / "out" / "predictions.csv")
    assert sorted(row["status"] for row in rows.values()) == ["failed", "ok"]


def test_a_dead_predicts_temporary_csv_is_removed_by_the_next_run(model_file, tmp_path):
    """Issue #19 (5): kill -9 during predict left .predictions.csv.PID.tmp forever, though the
    README says the next run removes what a dead process left."""
    import subprocess
    import sys

    ended = [sys.executable, "-c", "import os; print(os.getpid())"]  # a process id no longer alive
    dead = subprocess.run(ended, capture_output=True, text=True)
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f".predictions.csv.{dead.stdout.strip()}.tmp"
    stale.write_text("path,width\n")
    noise(20, 20).save(tmp_path / "a.png")
    assert run(model_file, str(tmp_path / "a.png"), "--out", str(out)).exit_code == 0
    assert not stale.exists() and (out / "predictions.csv").is_file()


def test_a_full_disk_is_one_line_saying_what_was_kept(model_file, tmp_path, fill_disk_at):
    """Issue #19 (5): ENOSPC from the CSV writer was a traceback. Every write goes through
    fastseg.atomic; here every one of them meets a full disk."""
    fill_disk_at(None)
    noise(20, 20).save(tmp_path / "a.png")
    result = run(model_file, str(tmp_path / "a.png"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert "No space left on device" in last and "every file written before is whole" in last
    assert not list((tmp_path / "out").glob(".*.tmp"))


@pytest.mark.parametrize("command", ["predict", "export"])
def test_a_model_under_the_home_of_no_user_is_not_found_in_one_line(tmp_path, command):
    """`--model ~nosuchuser/run`: the CLI's own check says the path does not exist; the library
    (`resolve_model_path`, behind predict, export, report and serve) raised Path.expanduser's
    RuntimeError (found by a hostile pass). The path stays as written, as the shell leaves it."""
    from fastseg.errors import CheckpointError
    from fastseg.model.description import resolve_model_path

    with pytest.raises(CheckpointError, match=r"^~nosuchuser-fastseg/run/model.pth: model file not found"):
        resolve_model_path("~nosuchuser-fastseg/run/model.pth")
    noise(20, 20).save(tmp_path / "a.png")
    arguments = [str(tmp_path / "a.png"), "--out", str(tmp_path / "out")] if command == "predict" else []
    result = CliRunner().invoke(main, [command, "--model", "~nosuchuser-fastseg/run", *arguments])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Path '~nosuchuser-fastseg/run' does not exist." in result.output.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("workers", "said"),
    [("-7", "-7 is not in the range -1<=x<=1024"), ("100000", "100000 is not in the range -1<=x<=1024")],
)
def test_a_worker_count_out_of_range_is_refused_before_any_work(model_file, tmp_path, workers, said):
    """Found by a hostile pass: `--num-workers 100000` forked workers until the machine hung, and
    -7 was taken as -1 (auto) without a word. The range is train's (config.json's num_workers)."""
    noise(20, 20).save(tmp_path / "a.png")
    result = CliRunner().invoke(main, ["predict", "--model", str(model_file), str(tmp_path / "a.png"),
                                       "--out", str(tmp_path / "out"), "--num-workers", workers])  # fmt: skip
    assert result.exit_code == 2 and said in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_more_workers_than_four_a_core_is_refused_in_one_line(model_file, tmp_path, monkeypatch):
    """1024 is the option's range, but 1024 forked workers of ~450 MiB each outgrow most machines:
    more than 4 a core of this machine is one line, before anything is read or written."""
    from fastseg.launch import device

    monkeypatch.setattr(device, "available_cores", lambda: 2)
    assert [device.loader_workers(n) for n in (0, 3, 8)] == [0, 3, 8]
    noise(20, 20).save(tmp_path / "a.png")
    result = CliRunner().invoke(main, ["predict", "--model", str(model_file), str(tmp_path / "a.png"),
                                       "--out", str(tmp_path / "out"), "--num-workers", "9"])  # fmt: skip
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output  # a usage error
    assert result.output.strip().splitlines()[-1] == (
        "Error: --num-workers 9: at most 8 here (4 a core, 2 cores); each worker is a process of its own"
    )
    assert not list((tmp_path / "out").glob("*.png"))
