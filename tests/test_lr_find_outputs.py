"""`fastseg lr-find`'s outputs go through the output guard (issue #19, item 2): `lr_find.png` and
`lr_find.csv` never replace a file fastseg did not write for that role, with or without
`--force`; `--force` replaces an earlier lr-find's own files. The sweep itself is replaced by a
fixed one here (the guard decides before any sweep and again before writing)."""

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import fastseg.training.lr_find as lr_find
from cli.main import main
from fastseg.errors import FastsegError
from fastseg.outputs import written_by_fastseg

FOUND = lr_find.LrFound(lrs=[1e-7, 1e-5, 1e-3, 1e-1], losses=[3.0, 2.5, 1.0, 4.0], suggestion=1e-3)


@pytest.fixture
def swept(monkeypatch):
    """`find_learning_rate` returns FOUND at once; the calls it got are recorded."""
    calls = []

    def fake(config, iterations, **kwargs):
        calls.append(iterations)
        return FOUND

    monkeypatch.setattr(lr_find, "find_learning_rate", fake)
    return calls


def invoke(voc_root, out, *extra):
    arguments = ["lr-find", "--data", str(voc_root), "--out", str(out), "--no-pretrained", "--quiet", *extra]
    return CliRunner().invoke(main, arguments)


def test_lr_find_writes_its_own_marked_files_and_force_replaces_only_them(voc_root, tmp_path, swept):
    out = tmp_path / "found"
    first = invoke(voc_root, out)
    assert first.exit_code == 0, first.output
    assert written_by_fastseg(out / "lr_find.png", "lr-find plot")
    assert written_by_fastseg(out / "lr_find.csv", "lr-find sweep")
    rows = ["lr,loss", "1e-07,3.0", "1e-05,2.5", "0.001,1.0", "0.1,4.0"]
    assert (out / "lr_find.csv").read_text().splitlines() == rows
    again = invoke(voc_root, out)
    lines = again.output.strip().splitlines()
    assert again.exit_code == 1 and len(lines) == 1 and "Traceback" not in again.output
    plot = out / "lr_find.png"
    assert (
        lines[0]
        == f"Error: {plot}: an earlier lr-find's plot; use --force to replace it, or choose another --out"
    )
    assert swept == [100]  # refused before a second sweep
    forced = invoke(voc_root, out, "--force")
    assert forced.exit_code == 0, forced.output
    assert swept == [100, 100] and written_by_fastseg(out / "lr_find.png", "lr-find plot")


@pytest.mark.parametrize("name", ["lr_find.png", "lr_find.csv"])
@pytest.mark.parametrize("force", [False, True])
def test_a_users_file_of_that_name_is_never_replaced(voc_root, tmp_path, swept, name, force):
    """Before: lr-find wrote over any lr_find.png / lr_find.csv in --out (a user's chart, another
    tool's table), although every other output went through the guard."""
    out = tmp_path / "mine"
    out.mkdir()
    if name.endswith(".png"):
        Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(out / name)  # a PNG, not ours
    else:
        (out / name).write_text("lr,loss\n0.1,my own notes\n")  # our header, not our rows
    before = (out / name).read_bytes()
    result = invoke(voc_root, out, *(["--force"] if force else []))
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    role = "plot" if name.endswith(".png") else "sweep"
    assert lines[0].startswith(f"Error: {out / name}: an existing file that fastseg did not write as an "
                               f"lr-find {role}; choose another output or remove it first")  # fmt: skip
    assert (out / name).read_bytes() == before and sorted(p.name for p in out.iterdir()) == [name]
    assert swept == []  # refused before the sweep


def test_save_checks_again_before_writing(tmp_path):
    """A file put there during the sweep is still not replaced; --out naming a file is one line."""
    (tmp_path / "lr_find.csv").write_text("epoch,loss\n")
    with pytest.raises(FastsegError, match="did not write as an lr-find sweep"):
        lr_find.save_lr_find(FOUND, tmp_path, force=True)
    assert (tmp_path / "lr_find.csv").read_text() == "epoch,loss\n"
    assert not (tmp_path / "lr_find.png").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(FastsegError, match="is a file; --out names the folder"):
        lr_find.check_outputs(tmp_path / "file")


def test_the_sweep_mark_is_read_by_content(tmp_path):
    csv = tmp_path / "lr_find.csv"
    for text, ours in [("lr,loss\n1e-07,2.0\n", True), ("lr,loss\n", True), ("lr,loss\n1,2,3\n", False),
                       ("lr,loss\nnan,x\n", False), ("LR,loss\n1,2\n", False), ("", False)]:  # fmt: skip
        csv.write_text(text)
        assert written_by_fastseg(csv, "lr-find sweep") is ours, text
    csv.write_bytes(b"lr,loss\n\xff,1\n")
    assert not written_by_fastseg(csv, "lr-find sweep")
