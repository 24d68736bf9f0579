"""Session 35's hostile pass over the writers without a folder lock (predict, report, export):
two at once, a kill (or Ctrl-C) mid-write, a full disk. Each test failed before its fix.

- an interrupted predict over an earlier one: `--skip-existing` logged the earlier run's row
  (another model's class shares) for a mask the interrupted run had rewritten;
- a report swapped in the folder a predict was writing: the predict's log and in-flight masks
  went with the replaced folder (a FileNotFoundError traceback, no predictions.csv);
- the cleaners of a killed run's temporaries removed any hidden `.NAME.NUMBER.tmp` of the folder,
  another program's or the user's (export --out ~/model.onnx cleared the home folder of them);
- `export --int8` killed with -9 left its scratch folders (75 MB for VGG16-BN) in the system's
  temporary folder for ever, and a full disk there was a line naming no file.
"""

from __future__ import annotations

import csv
import errno
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from model_files import save_seeded_voc_model, save_untrained_voc_model, write_run_files
from PIL import Image

from cli.main import main
from fastseg.inference.image_outputs import class_fractions

ROOT = Path(__file__).resolve().parents[1]


def invoke(*arguments):
    return CliRunner().invoke(main, [*map(str, arguments)])


def predict(model, *arguments):
    return invoke("predict", "--model", model, "--quiet", "--num-workers", "0", *arguments)


def images(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(count)
    for index in range(count):
        pixels = rng.integers(0, 255, (20 + index, 30, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{index}.png")
    return folder


def rows_of(log: Path) -> list[dict[str, str]]:
    with log.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def logged_shares(row: dict[str, str]) -> np.ndarray:
    names = list(row)[7:]  # path, width, height, status, error, seconds, runtime, then the classes
    return np.array([float(row[name]) for name in names])


def dead_process_id() -> int:
    """A process id no longer alive: what a `kill -9`ed fastseg leaves in its temporaries' names."""
    ended = [sys.executable, "-c", "import os; print(os.getpid())"]
    return int(subprocess.run(ended, capture_output=True, text=True).stdout)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return save_untrained_voc_model(folder / "a.pth", 32), save_seeded_voc_model(folder / "b.pth")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C at a chosen moment: leaves the files as `kill -9` does (the log's temporary goes)."""


def test_skip_existing_after_an_interrupted_run_logs_what_each_mask_holds(models, tmp_path, monkeypatch):
    """Run 1 (model A) finished; run 2 (model B) was stopped after 3 of 6 masks (Ctrl-C here;
    kill -9 leaves the same files); run 3 (B,
    --skip-existing) took run 1's rows for all 6, so 3 rows gave model A's class shares for masks
    that hold model B's labels. An earlier row now stands only for a mask written before its log;
    a newer mask is read back (its shares and size; no time, no runtime)."""
    import fastseg.atomic

    first, second = models
    source, out = images(tmp_path / "in", 6), tmp_path / "out"
    assert predict(first, source, "--out", out).exit_code == 0
    earlier = {row["path"]: row for row in rows_of(out / "predictions.csv")}
    real_replace, masks = os.replace, []

    lock = threading.Lock()  # the writer threads replace at once

    def stop_after_three(temporary, target):
        if not str(target).endswith(".png"):
            return real_replace(temporary, target)
        with lock:
            if len(masks) >= 3:
                raise Interrupted  # stopped: no mask lands after the third, whichever thread writes it
            real_replace(temporary, target)
            masks.append(target)
            if len(masks) == 3:
                raise Interrupted

    monkeypatch.setattr(fastseg.atomic.os, "replace", stop_after_three)
    stopped = predict(second, source, "--out", out)
    # exactly 3: the writer threads finished all 6 before the interrupt reached them once, under
    # two test workers, and the test then had no earlier row to keep (CI, session 36)
    assert stopped.exit_code == 1 and len(masks) == 3, stopped.output
    monkeypatch.setattr(fastseg.atomic.os, "replace", real_replace)
    assert {row["path"] for row in rows_of(out / "predictions.csv")} == set(earlier)  # run 1's log, kept

    resumed = predict(second, source, "--out", out, "--skip-existing")
    assert resumed.exit_code == 0 and "0 segmented, 0 failed, 6 skipped" in resumed.output
    rows = rows_of(out / "predictions.csv")
    assert len(rows) == 6
    rewritten = {str(source / Path(mask).name) for mask in masks}
    for row in rows:
        labels = np.array(Image.open(out / Path(row["path"]).name))
        assert np.allclose(logged_shares(row), class_fractions(labels, 21), atol=1e-6), row["path"]
        assert [row["width"], row["height"]] == [str(labels.shape[1]), str(labels.shape[0])]
        kept = row["path"] not in rewritten  # run 1's mask and row: its time and runtime still there
        assert (row["seconds"] == earlier[row["path"]]["seconds"] != "") == kept
    now = {row["path"]: logged_shares(row) for row in rows}
    changed = [path for path in rewritten if not np.allclose(logged_shares(earlier[path]), now[path])]
    assert changed, "model B labels the images as model A does: the test would prove nothing"


@pytest.fixture(scope="module")
def run(tmp_path_factory, voc_root):
    folder = tmp_path_factory.mktemp("run")
    save_untrained_voc_model(folder / "model.pth", 32)
    return write_run_files(folder, voc_root)


def test_a_report_is_not_swapped_into_a_folder_a_predict_is_writing(run, tmp_path, monkeypatch):
    """`predict --out X` while `report --out X` replaces the earlier report there: the report's
    swap moved X, with the predict's unfinished log and masks, aside and removed it; the predict
    ended in a FileNotFoundError traceback and its predictions.csv was lost. A report now refuses,
    in one line, to replace a folder some live process is writing into (its temporaries say so),
    before its evaluation and again at the swap; the predict ends whole."""
    import fastseg.inference.image_outputs as image_outputs
    import fastseg.inference.predict as predict_module

    report_arguments = ["report", "--model", run, "--out", tmp_path / "X", "--quiet", "--num-workers", "0"]
    assert invoke(*report_arguments).exit_code == 0
    page = tmp_path / "X" / "report.html"
    before = page.stat().st_mtime_ns
    real_write, reports = image_outputs.write_mask, []

    def report_meanwhile(*arguments, **options):  # the report runs while the predict writes masks
        real_write(*arguments, **options)
        if not reports:
            reports.append(invoke(*report_arguments))

    monkeypatch.setattr(image_outputs, "write_mask", report_meanwhile)
    monkeypatch.setattr(predict_module, "OUTPUT_THREADS", 0)  # the masks written on this thread
    source = images(tmp_path / "in", 4)
    result = predict(run / "model.pth", source, "--out", tmp_path / "X")
    assert result.exit_code == 0 and "4 segmented, 0 failed" in result.output, result.output
    assert sorted(row["status"] for row in rows_of(tmp_path / "X" / "predictions.csv")) == ["ok"] * 4
    [refused] = reports
    lines = refused.output.strip().splitlines()
    assert refused.exit_code == 1 and len(lines) == 1, refused.output
    assert lines[0].startswith(f"Error: {tmp_path / 'X'}: process {os.getpid()} may be writing into it")
    assert "run it when that process ends, or choose another --out" in lines[0]
    assert page.stat().st_mtime_ns == before  # the earlier report is untouched
    masks = sorted(path.name for path in (tmp_path / "X").glob("img*.png"))
    assert masks == [f"img{index}.png" for index in range(4)]
    assert not [path.name for path in tmp_path.iterdir() if path.name.startswith(".")]  # no build left
    again = invoke(*report_arguments)  # the predict ended: the report goes in, its masks carried over
    assert again.exit_code == 0 and "(replaced the earlier report there)" in again.output
    assert (tmp_path / "X" / "predictions.csv").is_file() and page.stat().st_mtime_ns > before


def test_a_predict_begun_during_the_evaluation_stops_the_swap(run, tmp_path, monkeypatch):
    """The second look, just before the swap: a predict that began writing into X while the
    report evaluated (its log's temporary there) keeps X; the new report is discarded whole."""
    import fastseg.inference.report as report_module

    out = tmp_path / "X"
    report_arguments = ["report", "--model", run, "--out", out, "--quiet", "--num-workers", "0"]
    assert invoke(*report_arguments).exit_code == 0
    before = {path.name: path.stat().st_mtime_ns for path in out.iterdir()}
    writing = out / f".predictions.csv.{os.getpid()}.tmp"  # what a predict holds for its whole run
    real_tables = report_module.write_tables

    def predict_begins(*arguments, **options):
        writing.write_text("path,width,height,status,error,seconds,runtime\n")
        return real_tables(*arguments, **options)

    monkeypatch.setattr(report_module, "write_tables", predict_begins)
    refused = invoke(*report_arguments)
    assert refused.exit_code == 1 and len(refused.output.strip().splitlines()) == 1, refused.output
    assert f"{out}: process {os.getpid()} may be writing into it ({writing.name}); a report" in refused.output
    writing.unlink()  # the predict ends
    assert {path.name: path.stat().st_mtime_ns for path in out.iterdir()} == before
    assert not [path.name for path in tmp_path.iterdir() if path.name.startswith(".")]


def identity_graph(tmp_path: Path):
    """A tiny ONNX graph in place of the traced network (seconds of tracing): these tests are
    about the files, not the graph."""
    import onnx
    from model_files import identity_onnx

    return onnx.load(str(identity_onnx(tmp_path / "identity.onnx")))


def test_export_removes_its_own_dead_temporaries_and_no_one_elses(run, tmp_path, monkeypatch):
    """`export --out ~/model.onnx` removed every hidden `.NAME.NUMBER.tmp` of the home folder
    whose number was no live process: another program's, or the user's own file. Only the
    temporaries of the file it writes (`.model.onnx.PID.tmp`) are its own to remove."""
    pytest.importorskip("onnx")
    import fastseg.export.exporter as exporter

    monkeypatch.setattr(exporter, "export_graph", lambda loaded: identity_graph(tmp_path))
    home, dead = tmp_path / "home", dead_process_id()
    home.mkdir()
    others = [home / f".notes.{dead}.tmp", home / f".thesis.tex.{dead}.tmp", home / f".m.onnx.x.{dead}.tmp"]
    for path in others:
        path.write_text("not fastseg's")
    ours = home / f".m.onnx.{dead}.tmp"
    ours.write_bytes(b"half an export")
    result = invoke("export", "--model", run, "--out", home / "m.onnx", "--quiet")
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in home.iterdir()) == sorted(["m.onnx", *(path.name for path in others)])


def test_predict_removes_its_own_dead_temporaries_and_no_one_elses(models, tmp_path):
    """The same for predict's --out and the folders its masks go to: a dead predict's
    `.img0.png.PID.tmp` and `.predictions.csv.PID.tmp` go, a user's `.draft.PID.tmp` stays."""
    source, out, dead = images(tmp_path / "in", 2), tmp_path / "out", dead_process_id()
    out.mkdir()
    ours = [out / f".img0.png.{dead}.tmp", out / f".predictions.csv.{dead}.tmp"]
    theirs = [out / f".draft.{dead}.tmp", out / f".img9.png.{dead}.tmp"]  # no img9 here: not this run's
    for path in [*ours, *theirs]:
        path.write_text("x")
    assert predict(models[0], source, "--out", out).exit_code == 0
    assert sorted(path.name for path in out.iterdir() if path.name.startswith(".")) == sorted(
        path.name for path in theirs
    )


def test_lr_find_removes_its_own_dead_temporaries_and_no_one_elses(tmp_path):
    """lr-find's `--out` may be any folder of the user's: it removed every hidden
    `.NAME.NUMBER.tmp` there whose number was no live process, as export did. Only its two
    files' temporaries are its own to remove."""
    from fastseg.training.lr_find import PLOT_FILENAME, SWEEP_FILENAME, LrFound, save_lr_find

    out, dead = tmp_path / "mine", dead_process_id()
    out.mkdir()
    theirs = [out / f".notes.{dead}.tmp", out / f".lr_find.png.old.{dead}.tmp"]
    ours = [out / f".{PLOT_FILENAME}.{dead}.tmp", out / f".{SWEEP_FILENAME}.{dead}.tmp"]
    for path in [*theirs, *ours]:
        path.write_text("x")
    lrs = [1e-5 * 1.5**step for step in range(30)]
    found = LrFound(lrs=lrs, losses=[2.0 - 0.03 * step for step in range(30)], suggestion=1e-3)
    save_lr_find(found, out)
    assert sorted(path.name for path in out.iterdir()) == sorted(
        [PLOT_FILENAME, SWEEP_FILENAME, *(path.name for path in theirs)]
    )


KILLED_EXPORT = """
import os, sys
import fastseg.export.int8 as int8
def killed(self):  # in calibration: the fp32 and prepared graphs written, onnxruntime's temporaries too
    os._exit(137)
int8.Calibration.get_next = killed
from cli.main import main
main(sys.argv[1:])
"""


@pytest.mark.slow
def test_a_killed_int8_exports_scratch_is_removed_by_the_next_export(run, tmp_path, monkeypatch):
    """`export --int8` killed with -9 (the OOM killer, in calibration) left its scratch folder,
    holding the fp32 graph (75 MB for VGG16-BN), in the system's temporary folder for ever, and
    each killed export another. The next export removes the scratch folders of dead exports,
    onnxruntime's own temporaries inside them included."""
    pytest.importorskip("onnxruntime")
    import fastseg.export.exporter as exporter

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    arguments = ["export", "--model", str(run), "--int8", "--out", str(tmp_path / "m.int8.onnx"), "--quiet"]
    child = subprocess.run([sys.executable, "-c", KILLED_EXPORT, *arguments], capture_output=True, text=True,
                           cwd=ROOT, env={**os.environ, "TMPDIR": str(scratch)}, timeout=300)  # fmt: skip
    assert child.returncode == 137, child.stderr[-2000:]
    left = [path for path in scratch.rglob("*") if path.is_file() and "torchinductor" not in str(path)]
    assert any(path.name == "model.onnx" for path in left)  # the fp32 graph: what was left for ever
    assert not (tmp_path / "m.int8.onnx").exists()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setattr(exporter, "export_graph", lambda loaded: identity_graph(tmp_path))
    assert invoke("export", "--model", run, "--out", tmp_path / "m.onnx", "--quiet").exit_code == 0
    ours = ("fastseg", "ort.quant.", "pre.quant.")  # torch's caches and others' files are not ours
    assert [path.name for path in scratch.iterdir() if path.name.startswith(ours)] == []


def test_a_full_temporary_folder_during_int8_is_one_line_naming_it(run, tmp_path, monkeypatch):
    """ENOSPC while onnxruntime wrote its prepared graph into the temporary folder said "No space
    left on device" naming no file: the user freed space on --out's disk and failed again. The
    line names the scratch folder (so its disk), and nothing is left there or at --out."""
    pytest.importorskip("onnxruntime")
    import onnxruntime.quantization.shape_inference as shape_inference

    import fastseg.export.exporter as exporter

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setattr(exporter, "export_graph", lambda loaded: identity_graph(tmp_path))

    def full(*arguments, **options):  # as write(2) says it: no file named
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(shape_inference, "quant_pre_process", full)
    out = tmp_path / "m.int8.onnx"
    result = invoke("export", "--model", run, "--int8", "--out", out, "--quiet", "--num-workers", "0")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith(f"Error: {scratch}{os.sep}fastseg-export.{os.getpid()}.")
    assert ": No space left on device; every file written before is whole" in lines[0]
    assert list(scratch.iterdir()) == [] and not out.exists()


def test_a_temporary_older_than_the_process_of_its_id_is_stale(models, run, tmp_path, monkeypatch):
    """Process ids are reused (a container's command is process 1 every time it runs): a killed
    predict's `.img0.png.PID.tmp` under the id the next run has was taken for that run's own, so
    it stayed, and a report refused the folder as being written into. A temporary that last
    changed before the process of its id started is a dead one's. (Here the process that has the
    id, this one, is said to have started a minute after the files were left.)"""
    import time

    import fastseg.atomic as atomic

    source, out = images(tmp_path / "in", 2), tmp_path / "X"
    out.mkdir()
    left = [out / f".img0.png.{os.getpid()}.tmp", out / f".predictions.csv.{os.getpid()}.tmp"]
    for path in left:
        path.write_text("cut short")
    real_start = atomic._start_time
    monkeypatch.setattr(atomic, "_start_time", lambda pid: time.time() + 60 if pid == os.getpid() else
                        real_start(pid))  # fmt: skip
    report_arguments = ["report", "--model", run, "--out", out, "--quiet", "--num-workers", "0",
                        "--replace-foreign"]  # fmt: skip
    result = invoke(*report_arguments)
    assert result.exit_code == 0 and "may be writing into it" not in result.output, result.output
    assert not [path for path in left if path.exists()]  # carried over? no: removed with the old folder
    for path in left:
        path.write_text("cut short")
    assert predict(models[0], source, "--out", out).exit_code == 0
    assert not [path.name for path in out.iterdir() if path.name.startswith(".")]
    monkeypatch.setattr(atomic, "_start_time", real_start)  # the truth: this process wrote them
    for path in left:
        path.write_text("being written")
    assert atomic.remove_stale_temporaries(out) == [] and all(path.exists() for path in left)


# --- the review of the change above ---------------------------------------------------------------


def test_a_temporary_no_live_process_can_be_writing_never_refuses_a_report(tmp_path, monkeypatch):
    """`live_writers` took any `.X.N.tmp` under a live id N for a writer: `.x.0.tmp` (kill(0, 0)
    asks this process's group), or a dead predict's left under an id the kernel gave since to a
    newer process, refused the report for good, and the line invited the user to wait for, or
    kill, an unrelated process. A process that started after the file last changed is not its
    writer; one that may be is named, with what to do if it is not fastseg's."""
    import time

    import fastseg.atomic as atomic

    out = tmp_path / "X"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / ".a.png.0.tmp").write_text("no process has id 0")
    assert atomic.live_writers(out) == []
    newer = os.getppid()  # alive; said below to have started a minute after the file was left
    left = out / "sub" / f".a.png.{newer}.tmp"
    left.write_text("a dead predict's, under a reused id")
    real_start = atomic._start_time
    monkeypatch.setattr(
        atomic, "_start_time", lambda pid: time.time() + 60 if pid == newer else real_start(pid)
    )
    assert atomic.live_writers(out) == []
    monkeypatch.setattr(atomic, "_start_time", real_start)  # the parent did start before the file
    assert atomic.live_writers(out) == [(newer, left)]
    from fastseg.errors import FastsegError
    from fastseg.inference.report_folder import check_not_written

    with pytest.raises(FastsegError, match=r"may be writing into it .*remove that file\)$"):
        check_not_written(out)


def test_a_folder_tree_deeper_than_pythons_recursion_is_walked(tmp_path):
    """`live_writers` used `os.walk`, which recursed: a tree 1,100 folders deep under a report's
    --out was a RecursionError traceback. It walks with a stack, `WALK_DEPTH` folders down."""
    import fastseg.atomic as atomic

    deepest = tmp_path
    for _ in range(1100):  # one at a time: pathlib's `mkdir(parents=True)` recurses too
        deepest = deepest / "d"
        deepest.mkdir()
    near = tmp_path.joinpath(*["d"] * 3) / f".a.png.{os.getpid()}.tmp"
    near.write_text("x")
    (deepest / f".b.png.{os.getpid()}.tmp").write_text("below WALK_DEPTH: not looked at")
    try:
        assert atomic.live_writers(tmp_path) == [(os.getpid(), near)]
    finally:  # from the bottom up: shutil.rmtree (pytest's clean-up) recurses as os.walk did
        (deepest / f".b.png.{os.getpid()}.tmp").unlink()
        while deepest != tmp_path.joinpath(*["d"] * 3):
            deepest.rmdir()
            deepest = deepest.parent


def test_a_killed_reports_folder_under_this_processs_reused_id_is_put_back(tmp_path, monkeypatch):
    """ccdb802 saw reused ids (a container's command is process 1 on every run) for atomic
    temporaries alone: a report killed with its earlier report moved aside left
    `.OUT.replaced.PID.tmp`, which the next report under the same id took for its own and never
    put back. The same start-time rule now holds for the report's and the import's folders."""
    import time

    import fastseg.atomic as atomic
    from fastseg.inference.report_folder import REPLACED, _key, remove_stale

    out = tmp_path / "report"
    aside = tmp_path / f".{_key(out)}.{REPLACED}.{os.getpid()}.tmp"
    aside.mkdir()
    (aside / "report.html").write_text("the earlier report")
    assert remove_stale(out) == [] and aside.is_dir()  # this process's own: it may be using it
    monkeypatch.setattr(atomic, "_start_time", lambda pid: time.time() + 60)  # left before it started
    assert remove_stale(out) == [aside]
    assert (out / "report.html").read_text() == "the earlier report" and not aside.exists()
