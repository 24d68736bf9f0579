"""What last session's hostile pass over `fastseg import` left: each failed before its fix."""

import os

from test_import import assert_imported, assert_refused, run_cli, write_image


def yolo_export(root):
    """One train and one val image, each with a triangle of class 0."""
    for split in ("train", "val"):
        write_image(root / "images" / split / f"{split}.jpg", 50, 40)
        (root / "labels" / split).mkdir(parents=True)
        (root / "labels" / split / f"{split}.txt").write_text("0 0.1 0.1 0.9 0.1 0.5 0.9\n", encoding="utf-8")
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [car]\n", encoding="utf-8")
    return root


def test_a_yolo_label_that_is_a_folder_is_a_problem_not_an_image_of_background(tmp_path):
    export = yolo_export(tmp_path / "yolo")
    label = export / "labels" / "train" / "train.txt"
    label.unlink()
    label.mkdir()
    result = run_cli("import", "yolo", export, "--out", tmp_path / "data", "--quiet")
    assert_refused(result, tmp_path / "data", ("train.txt", "a folder, not a regular file"))


def test_a_yolo_label_that_is_a_fifo_is_a_problem_and_does_not_block(tmp_path):
    export = yolo_export(tmp_path / "yolo")
    label = export / "labels" / "val" / "val.txt"
    label.unlink()
    os.mkfifo(label)
    result = run_cli("import", "yolo", export, "--out", tmp_path / "data", "--quiet")
    assert_refused(result, tmp_path / "data", ("val.txt", "a named pipe (FIFO), not a regular file"))


def test_the_summary_shows_an_out_folder_with_a_newline_on_one_line(tmp_path):
    export = yolo_export(tmp_path / "yolo")
    out = tmp_path / "da\nta"
    result = run_cli("import", "yolo", export, "--out", out, "--quiet")
    assert_imported(result, out)
    summary = next(line for line in result.output.splitlines() if "images (" in line)
    assert "da\\nta: 2 images (train 1, val 1), 2 classes" in summary


def test_a_planted_link_named_like_the_imports_build_folder_is_not_followed(tmp_path, monkeypatch):
    """`.OUT.import.PID.tmp` as a symlink (to a folder of the user's) was handed to rmtree, which
    refuses a link with a traceback; it is refused in one line, and what it points at is left
    alone."""
    export = yolo_export(tmp_path / "yolo")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine", encoding="utf-8")
    out = tmp_path / "data"
    (tmp_path / f".data.import.{os.getpid()}.tmp").symlink_to(precious)
    result = run_cli("import", "yolo", export, "--out", out, "--quiet")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1 and result.output.count("Error:") == 1, result.output
    assert "named like this import's build folder, but not a folder fastseg made" in result.output
    assert not out.exists()
    assert (precious / "keep.txt").read_text(encoding="utf-8") == "mine"
    assert sorted(path.name for path in precious.iterdir()) == ["keep.txt"]
