"""Every command's output folder that cannot be made is one line naming it and why, never a
traceback: show-data, demo and import ended in FileNotFoundError / NotADirectoryError tracebacks
for an --out under a file or in /proc, and report said "File exists" of `/dev/null/x`."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from demo_folder import make_demo_folder
from PIL import Image
from test_import_leftovers_s33 import yolo_export

from cli.main import main
from fastseg.classes import Classes
from fastseg.model.checkpoint import save_model
from fastseg.model.config import ModelConfig
from fastseg.model.network import SegmentationModel
from fastseg.paths import create_folder, make_folders, why_not_created


@pytest.fixture
def setting(tmp_path):
    """A tiny data set, an untrained model.pth of its 3 classes, a YOLO export, and a file."""
    torch.manual_seed(0)
    data = make_demo_folder(tmp_path / "data", ["bg", "a", "b"], counts={"train": 2, "val": 2})
    run = tmp_path / "run"
    run.mkdir()
    config = ModelConfig(num_classes=3)
    save_model(run / "model.pth", SegmentationModel(config).eval(), config, 32,
               classes=Classes.create(["bg", "a", "b"], None, 255))  # fmt: skip
    (tmp_path / "a-file").write_text("mine\n")
    return {"data": data, "run": run, "yolo": yolo_export(tmp_path / "yolo"), "file": tmp_path / "a-file"}


COMMANDS = {
    "show-data": lambda s, out: ["show-data", "--data", s["data"], "--size", "32", "--out", out],
    "demo": lambda s, out: ["demo", "--out", out],
    "import": lambda s, out: ["import", "yolo", s["yolo"], "--out", out, "--quiet"],
    "predict": lambda s, out: ["predict", "--model", s["run"], s["data"].parent / "images", "--out", out],
    "report": lambda s, out: ["report", "--model", s["run"], "--data", s["data"], "--out", out],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_out_under_a_file_is_one_line_naming_the_file(setting, command):
    out = setting["file"] / "out"
    result = CliRunner().invoke(main, [str(part) for part in COMMANDS[command](setting, out)])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # a traceback's exception is another
    [line] = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert f"{setting['file'].name} is not a folder" in line and "out" in line, line
    assert setting["file"].read_text() == "mine\n"  # the user's file untouched


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
@pytest.mark.parametrize("command", ["show-data", "demo", "import"])
def test_an_out_in_proc_is_one_line_with_the_systems_reason(setting, command):
    result = CliRunner().invoke(main, [str(part) for part in COMMANDS[command](setting, "/proc/fastseg-out")])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    [line] = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert line.startswith("Error: /proc/fastseg-out: cannot create the") and "No such file" in line, line


def test_create_folder_makes_every_missing_level_and_accepts_an_existing_one(tmp_path):
    create_folder(tmp_path / "a" / "b" / "c")
    create_folder(tmp_path / "a" / "b" / "c")
    assert (tmp_path / "a" / "b" / "c").is_dir()


def test_why_not_created_names_the_first_file_on_the_way_down(tmp_path):
    (tmp_path / "f").write_text("")
    error = NotADirectoryError(20, "Not a directory")
    assert why_not_created(tmp_path / "f" / "g" / "h", error) == f"{tmp_path / 'f'} is not a folder"
    exists = FileExistsError(17, "File exists")
    assert why_not_created(tmp_path / "f", exists) == f"{tmp_path / 'f'} is not a folder"
    assert why_not_created(tmp_path / "nothing" / "x", error) == "Not a directory"


LONG = "x" * 300  # past the 255 bytes a name may hold
NAMED = {
    "predict --out": lambda s, name: ["predict", "--model", s["run"], s["data"].parent, "--out", name],
    "report --out": lambda s, name: ["report", "--model", s["run"], "--data", s["data"], "--out", name],
    "show-data --out": lambda s, name: ["show-data", "--data", s["data"], "--size", "32", "--out", name],
    "demo --out": lambda s, name: ["demo", "--out", name],
    "check-data --data": lambda s, name: ["check-data", "--data", name],
    "train --data": lambda s, name: ["train", "--data", name, "--out", s["file"].parent / "new-run"],
    "runs": lambda s, name: ["runs", name],
}


@pytest.mark.parametrize("command", sorted(NAMED))
def test_a_name_past_the_systems_limit_is_one_line_on_every_command(setting, command, monkeypatch):
    """A 300-byte name was an OSError traceback (ENAMETOOLONG) in all but train's and lr-find's
    --out: `cli.errors` now says it in one line, the name cut, whatever command meets it."""
    monkeypatch.chdir(setting["file"].parent)
    result = CliRunner().invoke(main, [str(part) for part in NAMED[command](setting, LONG)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    [line] = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "File name too long" in line and "255 bytes" in line and len(line) < 300, line


@pytest.mark.parametrize("command", ["predict --out", "show-data --out", "demo --out"])
@pytest.mark.parametrize(
    ("link", "reason"), [("loop", "a symbolic link loop"), ("broken", "a broken symbolic link")]
)
def test_an_out_that_is_a_link_going_nowhere_says_which(setting, command, link, reason, monkeypatch):
    """A link loop at predict's --out was a RuntimeError traceback (Path.resolve); show-data, demo
    and report said mkdir's "File exists" of a loop or a broken link."""
    folder = setting["file"].parent
    monkeypatch.chdir(folder)
    if link == "loop":
        os.symlink("loop2", "loop")
        os.symlink("loop", "loop2")
    else:
        os.symlink("nowhere", "broken")
    result = CliRunner().invoke(main, [str(part) for part in NAMED[command](setting, link)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    [line] = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert line.endswith(f"({link} is {reason})"), line


def test_one_images_mirrored_name_past_the_path_limit_fails_that_image_only(setting, tmp_path, monkeypatch):
    """An image whose mirrored output path passes 4,096 bytes stopped the whole predict (one line
    after this session's name errors, a traceback before): it is now that image's failed row, and
    the others are segmented (review)."""
    monkeypatch.chdir(tmp_path)  # relative names: the deep input stays under the limit itself
    source = Path("in")
    deep = source.joinpath(*["d" * 250] * 16)  # 4,016 bytes of folders
    make_folders(deep)
    picture = Image.fromarray(np.zeros((20, 30, 3), np.uint8))
    for image in (source / "a.png", source / "b.png", deep / "c.png"):
        picture.save(image)
    out = tmp_path / ("o" * 200)
    command = ["predict", "--model", setting["run"], source, "--out", out, "--quiet", "--num-workers", "0"]
    result = CliRunner().invoke(main, [str(part) for part in command])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert "2 segmented, 1 failed" in result.output, result.output
    assert (out / "a.png").is_file() and (out / "b.png").is_file()
    rows = (out / "predictions.csv").read_text().splitlines()
    [failed] = [row for row in rows if "c.png" in row]
    assert "File name too long" in failed


def test_a_long_name_in_the_one_line_keeps_its_head_and_tail(tmp_path):
    from cli.errors import name_message

    name = "/head/" + "m" * 400 + "/tail.png"
    line = name_message(OSError(36, "File name too long", name))
    assert line.startswith("/head/") and "...m" in line and "/tail.png: File name too long" in line
    assert len(line) < 250


def test_lr_find_does_not_say_it_recorded_a_split(setting):
    """lr-find splits as train does but writes no split.json: it said "recorded in split.json"
    (helper E's note). The bad image stops it right after the line, before any sweep."""
    data = setting["data"]  # train and val only: val is halved for a test split
    next((data.parent / "images" / "train").iterdir()).write_bytes(b"not a picture")
    result = CliRunner().invoke(main, ["lr-find", "--data", str(data), "--out", str(data.parent / "found")])
    assert result.exit_code == 1
    [line] = [line for line in result.output.splitlines() if "val is halved" in line]
    assert line.endswith("test images") and "split.json" not in line, line
