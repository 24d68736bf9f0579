"""What predict does with inputs that hold no image: a file named on the command line is meant,
so it is tried whatever its suffix (segmented if it is an image, a failure naming it if not), and
inputs with no image at all are one line, exit 1. Both were "0 segmented, 0 failed", exit 0: a
typo'd name or an empty folder looked like a finished job."""

import io

from test_hostile_predict_download_s33 import csv_rows, model_file, noise, predict  # noqa: F401 (a fixture)


def test_a_named_file_that_is_not_an_image_is_a_failure_naming_it(model_file, tmp_path):  # noqa: F811
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture", encoding="utf-8")
    noise(tmp_path / "a.png")
    out = tmp_path / "out"
    result = predict(model_file, tmp_path / "a.png", notes, "--out", out)
    assert result.exit_code == 1, result.output
    assert "1 segmented, 1 failed" in result.output
    assert f"{notes}: " in result.output
    rows = {row["path"]: row["status"] for row in csv_rows(out / "predictions.csv")}
    assert rows == {str(tmp_path / "a.png"): "ok", str(notes): "failed"}


def test_a_named_image_whose_suffix_is_not_an_image_suffix_is_segmented(model_file, tmp_path):  # noqa: F811
    """A PNG saved as `scan.dat` or without a suffix: named, so read by its content."""
    for name in ("scan.dat", "scan"):
        buffer = io.BytesIO()
        noise(buffer)
        (tmp_path / name).write_bytes(buffer.getvalue())
    out = tmp_path / "out"
    result = predict(model_file, tmp_path / "scan.dat", "--out", out)
    assert result.exit_code == 0, result.output
    assert "1 segmented, 0 failed" in result.output and (out / "scan.png").is_file()
    result = predict(model_file, tmp_path / "scan", "--out", tmp_path / "out2")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out2" / "scan.png").is_file()


def test_inputs_without_any_image_are_one_line(model_file, tmp_path):  # noqa: F811
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("no pictures here", encoding="utf-8")
    out = tmp_path / "out"
    result = predict(model_file, empty, "--out", out)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and str(empty) in lines[0], result.output
    assert ".jpg" in lines[0] and not out.exists()


def test_a_disk_that_fills_midway_stops_the_run_at_once(model_file, tmp_path, fill_disk_at, monkeypatch):  # noqa: F811
    """Each image meeting the full disk was a failure of its own, and the model went on through
    every remaining image before the run's one line; now the first full-disk write ends the run,
    naming the file, and the masks written before stay whole."""
    from fastseg.model.network import SegmentationModel

    images = tmp_path / "in"
    images.mkdir()
    for index in range(24):
        noise(images / f"{index:02d}.png")
    forward, seen = SegmentationModel.forward, []

    def counted(self, batch):
        seen.append(len(batch))
        return forward(self, batch)

    monkeypatch.setattr(SegmentationModel, "forward", counted)
    fill_disk_at(None, when=2)  # the first mask is written, the second meets a full disk
    out = tmp_path / "out"
    result = predict(model_file, images, "--out", out, "--batch-size", "1")
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "No space left on device" in last, result.output
    assert "01.png" in last and "failed" not in result.output
    assert sum(seen) < 24, f"the model ran on all {sum(seen)} images after the disk was full"
    assert [path.name for path in out.iterdir() if not path.name.startswith(".")] == ["00.png"]
    assert not list(out.glob(".*.tmp"))
