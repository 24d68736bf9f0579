"""Training loses nothing to a crash (issue #10): checkpoints killed mid-write, damaged or
malicious checkpoints, two trainings into one folder, a file given as --out, strict JSON."""

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from fastseg.model.checkpoint import load_model

TRAIN = ["--recipe", "seed", "--train-set", "train", "--size", "32", "--batch-size", "4",
         "--no-pretrained", "--num-workers", "0", "--quiet"]  # fmt: skip

# In a child process: `torch.save` onto a file whose name holds TARGET writes only the first
# bytes of what it would write on its WHEN-th call, then the process dies as under kill -9.
CRASHING_SAVE = """
import io, os, sys, torch
target, when, offset = sys.argv[1], int(sys.argv[2]), sys.argv[3]
real_save, calls = torch.save, []
def crashing_save(obj, f, *args, **kwargs):
    if target in os.path.basename(str(f)):
        calls.append(f)
        if len(calls) == when:
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            cut = {"start": 0, "middle": len(data) // 2, "end": len(data)}[offset]
            with open(f, "wb") as file:
                file.write(data[:cut])
            os._exit(137)
    return real_save(obj, f, *args, **kwargs)
torch.save = crashing_save
from cli.main import main
main(sys.argv[4:])
"""


def train_arguments(voc_root, run, epochs):
    return ["train", "--data", str(voc_root), "--out", str(run), "--epochs", str(epochs), *TRAIN]


def assert_finished_and_whole(run: Path, epochs: int) -> None:
    """A finished run: strict-JSON state, a loadable model, every epoch once, no temporaries."""
    state = json.loads((run / "last.json").read_text(), parse_constant=pytest.fail)
    assert state == {"finished": True, "completed_epochs": epochs}
    assert load_model(run).size == 32
    header, *rows = (run / "history.csv").read_text().splitlines()
    assert header.startswith("epoch,train_loss,") and [int(row.split(",")[0]) for row in rows] == list(
        range(epochs)
    )
    assert [path.name for path in run.iterdir() if path.name.endswith(".tmp")] == []
    assert not (run / "last.pth").exists() and not (run / "best.pth").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("target", "when", "offset"),
    [
        ("last", 2, "start"),  # killed before the first byte of epoch 2's checkpoint
        ("last", 2, "middle"),
        ("last", 2, "end"),  # every byte written, the rename not yet done
        ("best", 2, "middle"),
        ("model", 1, "middle"),  # the export at the very end
    ],
)
def test_kill_during_a_checkpoint_write_then_resume_finishes(voc_root, tmp_path, target, when, offset):
    """Before the fix, a cut `last.pth` made `--resume` print a bare `Aborted!` or a traceback,
    and a cut `best.pth` crashed the resumed run at its very end, without a model.pth."""
    run, epochs = tmp_path / "run", 4
    crash = [sys.executable, "-c", CRASHING_SAVE, target, str(when), offset]
    child = subprocess.run([*crash, *train_arguments(voc_root, run, epochs)], capture_output=True, text=True)
    assert child.returncode == 137, child.stderr[-2000:]
    result = CliRunner().invoke(main, ["train", "--resume", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    assert_finished_and_whole(run, epochs)


@pytest.fixture(scope="module")
def interrupted_run(voc_root, tmp_path_factory):
    """A run stopped after 2 of 3 epochs, as Ctrl-C leaves it (made once, copied per test)."""
    from fastseg.training.resume import ResumableCheckpoint

    run = tmp_path_factory.mktemp("interrupted") / "run"
    original = ResumableCheckpoint.after_epoch

    def stop_after_second(self):
        original(self)
        if self.learn.epoch == 1:
            raise KeyboardInterrupt

    ResumableCheckpoint.after_epoch = stop_after_second
    try:
        result = CliRunner().invoke(main, train_arguments(voc_root, run, 3))
    finally:
        ResumableCheckpoint.after_epoch = original
    assert result.exit_code == 1 and "--resume" in result.output
    return run


@pytest.fixture
def stopped(interrupted_run, tmp_path):
    import shutil

    return Path(shutil.copytree(interrupted_run, tmp_path / "run"))


class Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (
            lambda path: path.write_bytes(path.read_bytes()[:1000]),
            "last.pth: not a readable fastseg training",
        ),
        (lambda path: path.write_bytes(pickle.dumps(Payload())), "last.pth: not a readable fastseg training"),
        (lambda path: path.write_bytes(b""), "last.pth: not a readable fastseg training"),
    ],
    ids=["truncated", "malicious", "empty"],
)
def test_a_damaged_last_checkpoint_is_one_line_naming_it(stopped, tmp_path, monkeypatch, damage, expected):
    monkeypatch.chdir(tmp_path)
    damage(stopped / "last.pth")
    result = CliRunner().invoke(main, ["train", "--resume", str(stopped), "--quiet"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert expected in lines[-1] and lines[-1].startswith("Error: ")
    assert lines[-1].endswith("restore it from a copy, or start the run again with --force")
    assert "Traceback" not in result.output and "weights_only=False" not in result.output
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_a_damaged_best_checkpoint_is_found_before_any_epoch_is_spent(stopped):
    history = (stopped / "history.csv").read_text()
    best = stopped / "best.pth"
    best.write_bytes(best.read_bytes()[:500])
    result = CliRunner().invoke(main, ["train", "--resume", str(stopped), "--quiet"])
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert "best.pth: not a readable fastseg training checkpoint" in line and line.endswith("--force")
    assert (stopped / "history.csv").read_text() == history  # no epoch was trained


@pytest.mark.slow
@pytest.mark.parametrize("restored", [False, True], ids=["before-the-restore", "after-the-restore"])
def test_ctrl_c_as_a_resumed_fit_starts_keeps_the_epochs_done_and_the_best(stopped, monkeypatch, restored):
    """Ctrl-C while a resumed fit starts, before its first epoch: the checkpoint still says what
    the run had done. It said 0 epochs done (the next resume retrained epochs 0-1 on trained
    weights, on the wrong schedule), and, before the saved best was put back, no best at all.
    The message said "interrupted in epoch 0" (fastai had not shifted `learn.epoch` yet)."""
    from fastseg.training.resume import ResumableCheckpoint

    saved = json.loads((stopped / "last.json").read_text())
    assert saved["completed_epochs"] == 2 and saved["best"] is not None
    original = ResumableCheckpoint.before_fit

    def interrupted(self):
        if restored:
            original(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(ResumableCheckpoint, "before_fit", interrupted)
    result = CliRunner().invoke(main, ["train", "--resume", str(stopped), "--quiet"])
    # the epoch the resumed run was in (2: epochs 0-1 were done), not the fit's own count (0)
    assert result.exit_code == 1 and "interrupted in epoch 2; checkpoint saved" in result.output
    assert json.loads((stopped / "last.json").read_text()) == saved
    monkeypatch.setattr(ResumableCheckpoint, "before_fit", original)
    resumed = CliRunner().invoke(main, ["train", "--resume", str(stopped), "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert_finished_and_whole(stopped, 3)


@pytest.mark.slow
def test_ctrl_c_as_a_resumed_warm_up_starts_names_the_epoch_it_was_in(voc_root, tmp_path, monkeypatch):
    """The decoder-only warm-up counts its own epochs: stopped after its epoch 0 and resumed, a
    Ctrl-C before the resumed fit's first epoch is in warm-up epoch 1, which the next resume
    redoes; the message said epoch 0."""
    from fastseg.training.resume import ResumableCheckpoint

    run = tmp_path / "run"
    original_after, original_before = ResumableCheckpoint.after_epoch, ResumableCheckpoint.before_fit

    def stop_after_first(self):
        original_after(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(ResumableCheckpoint, "after_epoch", stop_after_first)
    first = CliRunner().invoke(main, [*train_arguments(voc_root, run, 1), "--freeze-epochs", "2"])
    # stopped once epoch 0's checkpoint was written: the run is at epoch 1, where resuming starts
    assert first.exit_code == 1 and "interrupted in the decoder-only warm-up (epoch 1)" in first.output
    saved = json.loads((run / "last.json").read_text())
    assert saved["warmup_epochs"] == 1 and saved["completed_epochs"] == 0

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(ResumableCheckpoint, "after_epoch", original_after)
    monkeypatch.setattr(ResumableCheckpoint, "before_fit", interrupted)
    resumed = CliRunner().invoke(main, ["train", "--resume", str(run), "--quiet"])
    assert resumed.exit_code == 1, resumed.output
    assert "interrupted in the decoder-only warm-up (epoch 1); checkpoint saved" in resumed.output
    assert json.loads((run / "last.json").read_text()) == saved
    monkeypatch.setattr(ResumableCheckpoint, "before_fit", original_before)
    finished = CliRunner().invoke(main, ["train", "--resume", str(run), "--quiet"])
    assert finished.exit_code == 0, finished.output
    assert_finished_and_whole(run, 1)


@pytest.fixture(scope="module")
def finished_run(voc_root, tmp_path_factory):
    """A run trained to its end (1 epoch; made once, copied per test)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    result = CliRunner().invoke(main, train_arguments(voc_root, run, 1))
    assert result.exit_code == 0, result.output
    return run


def snapshot(folder: Path) -> dict:
    """Every entry under `folder` (itself included): its bytes (files) and its mtime in ns."""
    entries = {".": (None, folder.stat().st_mtime_ns)}
    for path in sorted(folder.rglob("*")):
        content = path.read_bytes() if path.is_file() else None
        entries[path.relative_to(folder).as_posix()] = (content, path.stat().st_mtime_ns)
    return entries


@pytest.mark.slow
@pytest.mark.parametrize("quiet", [True, False], ids=["quiet", "not-quiet"])
def test_resuming_a_finished_run_says_where_its_model_is_and_changes_nothing(finished_run, tmp_path, quiet):
    """Scripts that retry after a crash resume twice: the second --resume found a finished run
    and exited 1 ("this run already finished"). It is not a mistake: exit 0, one line, and the
    folder untouched (not even the lock file comes and goes)."""
    import shutil

    run = Path(shutil.copytree(finished_run, tmp_path / "run"))
    assert json.loads((run / "last.json").read_text())["finished"] is True
    before = snapshot(run)
    time.sleep(0.01)  # a write now would show in the nanosecond mtimes
    result = CliRunner().invoke(main, ["train", "--resume", str(run), *(["--quiet"] if quiet else [])])
    assert result.exit_code == 0, result.output
    model = run / "model.pth"
    assert result.output.splitlines() == [f"{run}: this run already finished; its model is {model}"]
    assert snapshot(run) == before


@pytest.mark.slow
def test_resuming_a_finished_run_whose_model_is_gone_is_one_line(finished_run, tmp_path):
    """Finished, but model.pth deleted since: nothing to point at, and nothing to resume from."""
    import shutil

    run = Path(shutil.copytree(finished_run, tmp_path / "run"))
    (run / "model.pth").unlink()
    before = snapshot(run)
    result = CliRunner().invoke(main, ["train", "--resume", str(run), "--quiet"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.splitlines() == [
        f"Error: {run}: this run already finished, but its model.pth is missing; start a new run with --out"
    ]
    assert snapshot(run) == before


def test_a_second_training_into_a_locked_folder_is_refused_in_one_line(voc_root, tmp_path):
    from fastseg.runs.folder import RunFolder

    run = tmp_path / "run"
    with RunFolder(run).locked():
        result = CliRunner().invoke(main, train_arguments(voc_root, run, 1))
        assert result.exit_code == 1
        assert result.output.strip().splitlines()[-1] == (
            f"Error: {run}: another fastseg train (process {os.getpid()}) is using this folder; "
            "wait for it to end or choose another --out"
        )
    assert not run.exists()  # made only for the lock, and nothing else was written


class Reached(Exception):
    """Raised by a stand-in for the step after the lock and the folder checks."""


def test_a_lock_file_left_by_a_dead_process_does_not_block(voc_root, tmp_path, monkeypatch):
    """kill -9 leaves the lock file, but the kernel released its lock with the process; the
    dead process's temporary file is an incomplete copy and goes."""
    import fastseg.training.trainer as trainer

    def reached(*args):
        raise Reached

    run = tmp_path / "run"
    run.mkdir()
    (run / ".fastseg.lock").write_text("999999\n")
    (run / ".last.pth.999999.tmp").write_bytes(b"half a checkpoint")
    monkeypatch.setattr(trainer, "prepare_run", reached)
    with pytest.raises(Reached):
        CliRunner().invoke(main, train_arguments(voc_root, run, 1), catch_exceptions=False)
    assert not (run / ".last.pth.999999.tmp").exists()


def test_out_naming_a_file_is_one_line_before_any_work(voc_root, tmp_path, monkeypatch):
    import fastseg.training.trainer as trainer

    checked = []
    monkeypatch.setattr(trainer, "check_dataset", lambda *args, **kwargs: checked.append(args))
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    result = CliRunner().invoke(main, train_arguments(voc_root, target, 1))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert (
        result.output.strip().splitlines()[-1]
        == f"Error: {target}: is a file, not a run folder; choose another --out"
    )
    assert checked == [] and target.read_text() == "mine"


def test_resume_state_is_strict_json_before_any_epoch_scored(tmp_path):
    """The trackers start at -inf; `last.json` once held `-Infinity`, which strict readers refuse."""
    from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback

    from fastseg.runs.folder import RunFolder
    from fastseg.training.resume import tracker_state

    saver, early = SaveModelCallback(monitor="valid_miou", comp=np.greater), EarlyStoppingCallback()
    saver.best, early.wait = -np.inf, 3
    run = RunFolder(tmp_path)
    run.write_resume_state({"completed_epochs": 1, **tracker_state(early, saver)})
    run.write_resume_state({**run.read_resume_state(), "extra": float("-inf")})
    state = json.loads((tmp_path / "last.json").read_text(), parse_constant=pytest.fail)
    assert state == {"completed_epochs": 1, "best": None, "wait": 3, "extra": None}


def test_only_rank_0_reloads_the_best_epoch_after_fit(tmp_path, monkeypatch):
    """Under DDP only rank 0 exports, and `best.pth` may be mid-replacement by rank 0 when another
    rank ends its fit: other ranks must not read it. Shown with a damaged file, which rank 0 reads
    (and refuses) and rank 1 leaves alone."""
    import fastseg.training.checkpointing as checkpointing
    from fastseg.errors import CheckpointError
    from fastseg.runs.folder import RunFolder

    run = RunFolder(tmp_path)
    run.checkpoint("best").write_bytes(b"half of a file")
    saver = checkpointing.AtomicSaveModel(run, "valid_miou")
    saver.learn = None  # nothing to load into: any read on rank 1 would fail before touching it
    monkeypatch.setattr(checkpointing, "rank_distrib", lambda: 1)
    saver.after_fit()
    monkeypatch.setattr(checkpointing, "rank_distrib", lambda: 0)
    with pytest.raises(CheckpointError, match="best.pth"):
        saver.after_fit()


def test_a_start_that_fails_before_its_first_epoch_leaves_nothing_to_block_the_retry(voc_root, tmp_path):
    """Issue #19 (5) / #21: the encoder weights failing (offline, or a bad file) left config.json
    and split.json behind, and the retry said "use --resume or --force" while --resume said
    "no resumable checkpoint"."""
    bad_weights = tmp_path / "vgg16_bn.pth"
    bad_weights.write_bytes(b"not a state dict")
    run = tmp_path / "run"
    arguments = [a for a in train_arguments(voc_root, run, 1) if a != "--no-pretrained"]
    failed = CliRunner().invoke(main, [*arguments, "--encoder-weights", str(bad_weights)])
    assert failed.exit_code == 1 and "Traceback" not in failed.output
    assert not run.exists()
    retried = CliRunner().invoke(main, [*arguments, "--no-pretrained"])  # no --force needed
    assert retried.exit_code == 0, retried.output
    assert_finished_and_whole(run, 1)


def test_a_start_killed_before_its_first_epoch_can_start_again(voc_root, tmp_path):
    """`kill -9` during the data check or the weights: only the files written before the first
    epoch are there. The same command starts again; a folder holding anything else still needs
    --force, and a user's own config.json is not taken for one of ours."""
    from fastseg.launch.processes import launched
    from fastseg.runs.folder import RunFolder
    from fastseg.training.recipes import recipe
    from fastseg.training.trainer import prepare_run

    run = tmp_path / "run"
    config = recipe("seed", data=str(voc_root), out=str(run), size=32, batch_size=4, epochs=1,
                    pretrained=False, num_workers=0)  # fmt: skip
    with launched("cpu") as launch:
        prepare_run(config, RunFolder(run), False, launch, False)  # then "killed"
    assert {"config.json", "split.json", "class_weights.json"} <= {p.name for p in run.iterdir()}
    result = CliRunner().invoke(main, train_arguments(voc_root, run, 1))
    assert result.exit_code == 0, result.output
    assert_finished_and_whole(run, 1)

    own = tmp_path / "own"
    own.mkdir()
    (own / "config.json").write_text('{"my": "settings"}')
    refused = CliRunner().invoke(main, train_arguments(voc_root, own, 1))
    assert refused.exit_code == 1 and "use --resume to continue it or --force" in refused.output
    assert (own / "config.json").read_text() == '{"my": "settings"}'


@pytest.mark.parametrize("name", ["config.json", "history.csv", "train.log"])
def test_force_never_replaces_a_users_file_that_shares_a_run_files_name(voc_root, tmp_path, name):
    """Issue #19 (2): `train --out DIR --force` deleted or replaced the user's own config.json,
    history.csv and train.log in DIR; the README says --force removes only fastseg's files."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / name).write_text("the user's own notes\n")
    result = CliRunner().invoke(main, [*train_arguments(voc_root, out, 1), "--force"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "not a file fastseg wrote, and --force replaces only fastseg's own run files" in result.output
    assert (out / name).read_text() == "the user's own notes\n"
    assert sorted(path.name for path in out.iterdir()) == [name]


# --- a full disk (issue #19, item 5): one line, what was kept, nothing half-written ------------


def assert_full_disk_line(result, path):
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert lines == [f"Error: {path}: No space left on device; every file written before is whole "
                     "(written atomically) and a partial one was discarded: free some space and run the "
                     "command again"], lines  # fmt: skip


def test_a_full_disk_during_training_keeps_the_last_checkpoint_and_resumes(voc_root, tmp_path, fill_disk_at):
    """Before: torch.save's and the JSON writer's ENOSPC were tracebacks. Epoch 1's checkpoint
    meets the full disk: epoch 0's stays whole, and once there is space, --resume finishes."""
    run = tmp_path / "run"
    free = fill_disk_at("last.pth", when=2)
    result = CliRunner().invoke(main, train_arguments(voc_root, run, 3))
    assert_full_disk_line(result, run / "last.pth")
    assert [path.name for path in run.iterdir() if path.name.endswith(".tmp")] == []
    assert json.loads((run / "last.json").read_text())["completed_epochs"] == 1
    from fastseg.training.checkpointing import read_checkpoint

    assert "model" in read_checkpoint(run / "last.pth")  # epoch 0's, whole
    free()
    resumed = CliRunner().invoke(main, ["train", "--resume", str(run), "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert_finished_and_whole(run, 3)


def test_a_full_disk_before_the_first_epoch_leaves_nothing_blocking(voc_root, tmp_path, fill_disk_at):
    run = tmp_path / "run"
    free = fill_disk_at("config.json")
    assert_full_disk_line(CliRunner().invoke(main, train_arguments(voc_root, run, 1)), run / "config.json")
    assert not run.exists()
    free()
    retried = CliRunner().invoke(main, train_arguments(voc_root, run, 1))  # the same command, no --force
    assert retried.exit_code == 0, retried.output
    assert_finished_and_whole(run, 1)


def test_torch_saves_full_disk_error_is_named_as_one(tmp_path, monkeypatch):
    """torch.save's zip writer says "unexpected pos 704 vs 598" on a full disk (seen writing to
    /dev/full), a RuntimeError without an errno: on a file system with no space left it is
    reported as the full disk it is; elsewhere it stays the error it was."""
    import errno

    import torch

    import fastseg.atomic
    from fastseg.atomic import atomic_path

    def cut_save(obj, target):
        Path(target).write_bytes(b"PK\x03\x04 half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    (tmp_path / "last.pth").write_bytes(b"epoch 0")
    monkeypatch.setattr(fastseg.atomic, "disk_full", lambda folder: True)
    with pytest.raises(OSError) as raised, atomic_path(tmp_path / "last.pth", durable=True) as temporary:
        cut_save({"w": torch.zeros(3)}, temporary)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(tmp_path / "last.pth")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["last.pth"]
    assert (tmp_path / "last.pth").read_bytes() == b"epoch 0"
    monkeypatch.setattr(fastseg.atomic, "disk_full", lambda folder: False)
    with pytest.raises(RuntimeError, match="unexpected pos"), atomic_path(tmp_path / "last.pth") as temporary:
        cut_save({}, temporary)


# --- kill -9 compares the training itself, not only the files (issue #19, item 1) -------------

SEEDED = ["--recipe", "fast", "--train-set", "train", "--size", "32", "--crop-size", "32",
          "--batch-size", "4", "--no-pretrained", "--num-workers", "0", "--seed", "3", "--keep", "final",
          "--encoder-lr-ratio", "0.1", "--quiet"]  # fmt: skip


def fastseg_process(*arguments):
    """`python -m fastseg ...` with one thread: the same float summation order in every process,
    so two processes training the same seeded run give the same bits."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "fastseg", *map(str, arguments)], env=environment,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip


def completed_epochs(run: Path) -> int:
    try:
        return int(json.loads((run / "last.json").read_text()).get("completed_epochs", 0))
    except (OSError, ValueError, AttributeError):  # not there yet, or being replaced
        return 0


def epoch_lines(run: Path) -> dict[int, str]:
    """train.log's line per epoch (training and validation loss, scores, and the learning rate it
    ended at, 3 significant digits), without the time it took."""
    lines = (run / "train.log").read_text().splitlines()
    return {int(line.split()[1]): line.split("  time ")[0] for line in lines if line.startswith("epoch ")}


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_trains_what_the_uninterrupted_run_trains(voc_root, tmp_path):
    """A real process is killed with SIGKILL early in epoch 1 of 4 (as soon as epoch 0's checkpoint
    is on disk), then `train --resume` finishes it in another process. The resumed run's final
    weights equal the uninterrupted run's bit for bit, and so does every epoch's logged line
    (train and validation loss, scores, and the learning rate each epoch ended at). Before the
    schedule fix, the resumed epochs 1-3 ended at 5.56e-4, 7.66e-5, 7.66e-5 instead of 9.72e-4,
    5.56e-4, 7.66e-5; test_resume_schedule.py compares every batch's rates in one process. Until
    the smoothed training loss was checkpointed, the resumed epochs logged another train_loss
    (2.946 for 2.815): fastai's moving average restarted with the resumed fit."""
    import signal

    import torch

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    uninterrupted = fastseg_process("train", "--data", voc_root, "--out", whole, "--epochs", 4, *SEEDED)
    assert uninterrupted.wait(timeout=600) == 0, uninterrupted.stderr.read()[-2000:]
    victim = fastseg_process("train", "--data", voc_root, "--out", killed, "--epochs", 4, *SEEDED)
    while completed_epochs(killed) < 1 and victim.poll() is None:
        time.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert completed_epochs(killed) == 1 and not (killed / "model.pth").exists()
    resumed = fastseg_process("train", "--resume", killed, "--quiet")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-2000:]
    assert_finished_and_whole(killed, 4)
    expected = torch.load(whole / "model.pth", weights_only=True)["state_dict"]
    found = torch.load(killed / "model.pth", weights_only=True)["state_dict"]
    assert found.keys() == expected.keys()
    assert [name for name in expected if not torch.equal(found[name], expected[name])] == []
    lines = epoch_lines(whole)
    assert sorted(lines) == [0, 1, 2, 3] and epoch_lines(killed) == lines
    rates = [float(line.split("  lr ")[1].split()[0]) for line in lines.values()]
    assert rates[1] > rates[0] > rates[2] > rates[3]  # one cycle over all 4 epochs: up, then down
