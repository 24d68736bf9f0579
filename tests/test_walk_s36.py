"""Session 36: `fastseg.paths.walk`, the one walk of a folder's tree, against `Path.rglob("*")`,
which Python 3.11 wrote as a recursion: a tree about 1,000 folders deep was a RecursionError
traceback wherever a command listed a folder (predict's inputs, check-data's splits, runs)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model_files import save_untrained_voc_model
from PIL import Image

from cli.main import main
from fastseg.errors import FastsegError
from fastseg.paths import make_folders, walk

DEPTH = 1100  # past Python's default recursion limit of 1,000

# a tree: each entry (a folder's index, a kind) adds one file, folder, link to a folder, broken
# link or link to an ancestor (a loop) inside an earlier folder
ENTRIES = st.lists(st.tuples(st.integers(0, 50), st.sampled_from(["file", "folder", "up", "broken", "side"])),
                   max_size=25)  # fmt: skip


def build(root: Path, entries) -> None:
    folders = [root]
    for number, (index, kind) in enumerate(entries):
        parent = folders[index % len(folders)]
        path = parent / f"e{number}"
        if kind == "file":
            path.write_bytes(b"x")
        elif kind == "folder":
            path.mkdir()
            folders.append(path)
        elif kind == "up":
            path.symlink_to(root, target_is_directory=True)
        elif kind == "broken":
            path.symlink_to(root / "nothing")
        else:
            path.symlink_to(folders[-1], target_is_directory=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=ENTRIES)
def test_walk_lists_what_rglob_lists(tmp_path_factory, entries):
    root = tmp_path_factory.mktemp("tree")
    build(root, entries)
    walked = list(walk(root))
    assert len(walked) == len(set(walked))  # each once: a loop of links is never entered
    assert walked == list(root.rglob("*"))  # and in its order: two callers show the first found


def test_walk_passes_over_a_folder_it_may_not_read_and_names_it_when_asked(tmp_path, monkeypatch):
    (tmp_path / "closed").mkdir()
    (tmp_path / "closed" / "a.png").write_bytes(b"x")
    (tmp_path / "open").mkdir()
    (tmp_path / "open" / "b.png").write_bytes(b"x")
    closed_to_this_user(monkeypatch)
    unreadable = []
    listed = set(walk(tmp_path, unreadable))
    assert listed == {tmp_path / "closed", tmp_path / "open", tmp_path / "open" / "b.png"}
    assert unreadable == [tmp_path / "closed"]
    assert set(walk(tmp_path)) == set(walk(tmp_path, []))  # as `rglob`: passed over, not an error


def test_walk_of_no_folder_is_empty(tmp_path):
    (tmp_path / "file").write_bytes(b"x")
    assert list(walk(tmp_path / "missing")) == list(walk(tmp_path / "file")) == []


def chain(top: Path, levels: int, name: str = "d") -> Path:
    """`top/name/name/.../name` (`levels` folders), made by stepping down (a path that long cannot
    be named whole); returns the deepest, as a path."""
    top.mkdir()
    here = os.getcwd()
    os.chdir(top)
    try:
        for _ in range(levels):
            os.mkdir(name)
            os.chdir(name)
    finally:
        os.chdir(here)
    return top / Path(*[name] * levels)


@pytest.fixture
def deep(tmp_path):
    """`tmp_path/in/d/d/.../d` (`DEPTH` folders), removed bottom-up afterwards: pytest's own
    removal recurses too."""
    top = tmp_path / "in"
    chain(top, DEPTH)
    yield top
    remove_deep(top)


def remove_deep(top: Path, name: str = "d") -> None:
    """Remove `top`'s chain of `name` folders (and the files in them) from the bottom up, without
    recursion and without naming a path past the system's limit."""
    if not top.is_dir():
        return
    here = os.getcwd()
    os.chdir(top)
    try:
        depth = 0
        while os.path.isdir(name):
            os.chdir(name)
            depth += 1
        for entry in os.listdir("."):
            os.remove(entry)
        for _ in range(depth):
            os.chdir("..")
            for entry in os.listdir(name):
                if entry != name:
                    os.remove(os.path.join(name, entry))
            os.rmdir(name)
    finally:
        os.chdir(here)


def test_a_tree_deeper_than_the_recursion_limit_is_walked(deep):
    assert sum(1 for _ in walk(deep)) == DEPTH


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_untrained_voc_model(tmp_path_factory.mktemp("model") / "model.pth", 32)


def test_predict_on_a_tree_deeper_than_the_recursion_limit_writes_the_deepest_mask(
    deep, model_file, tmp_path
):
    """`predict` listed its inputs with `rglob`: a RecursionError traceback. The one image at the
    bottom is found, and its mask written at the same depth under `--out`."""
    image = deep / Path(*["d"] * DEPTH) / "a.png"
    Image.fromarray(np.full((16, 20, 3), 90, dtype=np.uint8)).save(image)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["predict", "--model", str(model_file), "--quiet", "--num-workers", "0",
                                       str(deep), "--out", str(out)])  # fmt: skip
    try:
        assert result.exit_code == 0, result.output
        mask = out / Path(*["d"] * DEPTH) / "a.png"
        assert np.asarray(Image.open(mask)).shape == (16, 20)
    finally:
        remove_deep(out)


def outcome(make, path):
    try:
        make(path)
    except OSError as error:
        return type(error).__name__
    return "made" if path.is_dir() else "nothing"


@pytest.mark.parametrize("exist_ok", [True, False])
@pytest.mark.parametrize(
    "case", ["new/a/b", "there", "there/a/b", "file", "file/a", "there/file/a", "link_to_there/a"]
)
def test_make_folders_does_what_mkdir_parents_does(tmp_path, case, exist_ok):
    """The same folders and the same error class as `Path.mkdir(parents=True, exist_ok=...)`."""
    results = []
    for side in ("pathlib", "ours"):
        root = tmp_path / side
        (root / "there").mkdir(parents=True)
        (root / "file").write_bytes(b"x")
        (root / "there" / "file").write_bytes(b"x")
        (root / "link_to_there").symlink_to(root / "there")
        make = (lambda path: path.mkdir(parents=True, exist_ok=exist_ok)) if side == "pathlib" else (
            lambda path: make_folders(path, exist_ok=exist_ok))  # fmt: skip
        results.append((outcome(make, root / case), sorted(p.relative_to(root) for p in walk(root))))
    assert results[0] == results[1]


def test_make_folders_makes_a_chain_deeper_than_the_recursion_limit(tmp_path):
    top = tmp_path / "top"
    make_folders(top / Path(*["d"] * DEPTH))
    try:
        assert sum(1 for _ in walk(top)) == DEPTH
    finally:
        remove_deep(top)


LONG_NAME, LONG_LEVELS = "d" * 10, 420  # 4,620 bytes below the top: past Linux's 4,096


@pytest.fixture
def too_long(tmp_path):
    """A chain of folders whose deepest ones no path can name, an image at its bottom."""
    top = tmp_path / "long"
    chain(top, LONG_LEVELS, LONG_NAME)
    here = os.getcwd()
    os.chdir(top)
    try:
        for _ in range(LONG_LEVELS):
            os.chdir(LONG_NAME)
        Image.fromarray(np.full((16, 20, 3), 90, dtype=np.uint8)).save("a.png")
    finally:
        os.chdir(here)
    yield top
    remove_deep(top, LONG_NAME)


def test_a_folder_no_path_can_name_is_an_error_naming_it_not_passed_over(too_long):
    """The review found `walk` passed over every folder it could not list: the image at the
    bottom was left out without a word (`rglob` raised the OSError, a traceback). A folder this
    user may not read is still passed over, as `rglob` does."""
    with pytest.raises(FastsegError, match=r"dddddddddd: cannot be listed \(File name too long\)$"):
        list(walk(too_long))


def test_predict_over_a_folder_no_path_can_name_is_one_line(too_long, model_file, tmp_path):
    result = CliRunner().invoke(main, ["predict", "--model", str(model_file), "--quiet", "--num-workers", "0",
                                       str(too_long), "--out", str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 1 and result.exception is not None and isinstance(result.exception, SystemExit)
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {too_long}/") and "File name too long" in lines[0]


def test_a_run_whose_config_json_is_a_link_to_nothing_is_a_damaged_row(tmp_path):
    """`rglob("config.json")` listed only names that exist, so a run folder whose config.json is
    a link to nothing was left out of `fastseg runs` without a word; `walk` lists the link, and
    beside the run's other files it is a damaged row naming the problem."""
    run = tmp_path / "r1"
    run.mkdir()
    (run / "history.csv").write_text("epoch,train_loss\n0,1.0\n")
    (run / "config.json").symlink_to(tmp_path / "gone.json")
    result = CliRunner().invoke(main, ["runs", str(tmp_path)])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("r1 "))
    assert "damaged" in row and "No such file or directory" in row


def closed_to_this_user(monkeypatch, name: str = "closed") -> None:
    """Folders named `name` unreadable to `walk`, as a folder of mode 0 is to a user (the suite
    runs as root in CI, who reads every folder)."""
    real = os.scandir

    def scandir(path):
        if Path(path).name == name:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr("fastseg.paths.os.scandir", scandir)


def test_predict_names_a_folder_it_may_not_read_as_a_failure(model_file, tmp_path, monkeypatch):
    """`rglob` passed over an unreadable subfolder, and so did `walk`: its images were left out and
    the run said "1 segmented, 0 failed", exit 0. The folder is a failed row now, named on stderr
    and in predictions.csv, and the run exits 1; the images it could read are done."""
    source = tmp_path / "in"
    (source / "closed").mkdir(parents=True)
    Image.fromarray(np.full((16, 20, 3), 90, dtype=np.uint8)).save(source / "a.png")
    Image.fromarray(np.full((16, 20, 3), 90, dtype=np.uint8)).save(source / "closed" / "b.png")
    closed_to_this_user(monkeypatch)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["predict", "--model", str(model_file), "--quiet", "--num-workers", "0",
                                       str(source), "--out", str(out)])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert (out / "a.png").is_file() and not (out / "closed").exists()
    reason = "a folder this user may not read (permission denied): its images are left out"
    assert f"{source / 'closed'}: {reason}" in result.output.splitlines()
    assert "1 segmented, 1 failed" in result.output
    assert str(source / "closed") in (out / "predictions.csv").read_text()


def test_predict_on_a_folder_it_may_not_read_says_so(model_file, tmp_path, monkeypatch):
    """Not "no image files": the folder was never read."""
    (tmp_path / "closed").mkdir()
    closed_to_this_user(monkeypatch)
    result = CliRunner().invoke(main, ["predict", "--model", str(model_file), "--quiet", "--num-workers", "0",
                                       str(tmp_path / "closed"), "--out", str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 1
    expected = f"Error: {tmp_path / 'closed'}: a folder this user may not read (permission denied)\n"
    assert result.output == expected


def test_an_import_names_a_folder_of_the_export_it_may_not_read(tmp_path, monkeypatch):
    """LabelMe and YOLO folders were walked with `rglob`, which passed over a folder this user may
    not read: its labels or images were left out of the data set without a word. It is one of the
    import's problems now, and nothing is created."""
    from test_import import assert_refused, labelme_file, run_cli, write_image

    labelme = tmp_path / "labelme"
    (labelme / "closed").mkdir(parents=True)
    labelme_file(labelme, "a", [("cat", "polygon", [[2, 2], [30, 2], [30, 20]])])
    yolo = tmp_path / "yolo"
    for split in ("train", "val"):
        write_image(yolo / "images" / split / f"{split}.jpg", 50, 40)
    (yolo / "images" / "train" / "closed").mkdir()
    (yolo / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames:\n  0: car\n")
    closed_to_this_user(monkeypatch)
    for export, kind in ((labelme, "labelme"), (yolo / "data.yaml", "yolo")):
        out = tmp_path / f"out-{kind}"
        result = run_cli("import", kind, export, "--out", out, "--quiet")
        closed = labelme / "closed" if kind == "labelme" else yolo / "images" / "train" / "closed"
        assert_refused(result, out, f"{closed}: a folder this user may not read (permission denied)")


def test_import_force_never_replaces_a_folder_it_may_not_read(tmp_path, monkeypatch):
    """`--force` replaces only what an earlier import wrote; a folder in --out this user may not
    read was passed over by the check (`rglob`), so whatever it held went with the old import."""
    from test_import import coco_export, run_cli

    export = coco_export(tmp_path / "export")
    out = tmp_path / "data"
    assert run_cli("import", "coco", export, "--out", out, "--quiet").exit_code == 0
    (out / "images" / "closed").mkdir()
    (out / "images" / "closed" / "thesis.tex").write_text("a user's file")
    closed_to_this_user(monkeypatch)
    forced = run_cli("import", "coco", export, "--out", out, "--quiet", "--force")
    assert forced.exit_code == 1, forced.output
    assert "1 file(s) there are not its (images/closed/ (a folder this user may not read" in forced.output
    assert (out / "images" / "closed" / "thesis.tex").read_text() == "a user's file"


def test_runs_names_a_folder_it_may_not_read_on_stderr(tmp_path, monkeypatch):
    """`fastseg runs` passed over a folder it may not read (rglob): the runs in it were missing from
    the table without a word. It is named on stderr now; --json's output stays the rows alone."""
    run = tmp_path / "r1"
    run.mkdir()
    (run / "history.csv").write_text("epoch,train_loss\n0,1.0\n")
    (run / "config.json").write_text("{}")
    (tmp_path / "closed").mkdir()
    closed_to_this_user(monkeypatch)
    for options in ([], ["--json"]):
        result = CliRunner().invoke(main, ["runs", str(tmp_path), *options])
        assert result.exit_code == 0, result.output
        reason = "a folder this user may not read (permission denied); runs in it are not listed"
        named = [line for line in result.stderr.splitlines() if "closed" in line]  # (not a warning's)
        assert named == [f"{tmp_path / 'closed'}: {reason}"]
        assert "r1" in result.stdout
    assert [row["name"] for row in json.loads(result.stdout)] == ["r1"]


def test_check_data_and_train_name_a_folder_of_the_data_set_they_may_not_read(tmp_path, monkeypatch):
    """A split's images or masks folder holding a folder this user may not read was walked with
    `rglob`, which passed over it: its images were not trained on and check-data said nothing.
    It is a problem line of its split now, and train refuses as for any other problem."""
    from demo_folder import make_demo_folder
    from test_own_data import assert_refused

    data = make_demo_folder(tmp_path / "data", ["background", "car"], counts={"train": 4, "val": 3})
    (data.parent / "images" / "train" / "closed").mkdir()
    (data.parent / "masks" / "val" / "closed").mkdir()
    closed_to_this_user(monkeypatch)
    reason = "a folder this user may not read (permission denied)"
    assert_refused(data, tmp_path, f"{data.parent / 'images' / 'train' / 'closed'}: {reason} (train)",
                   f"{data.parent / 'masks' / 'val' / 'closed'}: {reason} (val)")  # fmt: skip


@pytest.mark.parametrize(
    ("mode", "suffix", "hint"),
    [
        ("RGB", ".png", "for colour masks set mask_format: rgb in dataset.yaml"),
        ("LA", ".png", "grey or palette with an alpha channel: save it without alpha"),
        ("F", ".tif", "floating-point values: save the class indices as integers"),
    ],
)
def test_a_mask_of_several_channels_gets_the_hint_its_mode_needs(tmp_path, mode, suffix, hint):
    """Every mask that is not one channel was told to set `mask_format: rgb`; for a grey mask with
    alpha (LA, helper B's finding) or a float one, that would make things worse."""
    from demo_folder import make_demo_folder

    data = make_demo_folder(tmp_path / "data", ["background", "car"], counts={"train": 2, "val": 2})
    original = data.parent / "masks" / "train" / "train_0000.png"
    with Image.open(original) as labels:
        converted = labels.convert(mode)
    original.unlink()
    mask = original.with_suffix(suffix)
    converted.save(mask)
    result = CliRunner().invoke(main, ["check-data", str(data), "--quiet"])
    assert result.exit_code == 1
    expected = f"{mask}: mask has mode {mode}, expected one channel of class indices ({hint})"
    assert expected in result.output.splitlines(), result.output
