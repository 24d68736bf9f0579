"""What last session's hostile pass over training left: each failed before its fix."""

import pytest
from test_hostile_training_s32 import TINY, invoke, one_error_line


@pytest.mark.parametrize("command", ["train", "lr-find"])
def test_memory_running_out_in_the_data_check_does_not_blame_the_batch(
    voc_root, tmp_path, monkeypatch, command
):
    """The data check reads every image and mask whole; a MemoryError there (a mask too large for
    this machine) said "use a smaller --batch-size or --size", neither of which the check uses."""
    from fastseg.training import trainer

    def check_dataset(*args, **kwargs):
        raise MemoryError("Unable to allocate 40.0 GiB for an array")

    monkeypatch.setattr(trainer, "check_dataset", check_dataset)
    out = tmp_path / "out"
    line = one_error_line(invoke(command, "--data", voc_root, "--train-set", "train", "--out", out, *TINY))
    assert "checking" in line and str(voc_root) in line and "40.0 GiB" in line, line
    assert "--batch-size" not in line, line
    assert not out.exists()


@pytest.mark.parametrize("command", ["show-data", "train", "lr-find"])
def test_a_seed_torch_cannot_hold_is_one_line_on_every_command_that_seeds(voc_root, tmp_path, command):
    """show-data handed --seed 10**40 to torch.manual_seed: "Overflow when unpacking long long",
    a traceback (found by a fuzz of every option of every command). Train's range for all three."""
    extra = [] if command == "show-data" else ["--train-set", "train", *TINY]
    result = invoke(command, "--data", voc_root, "--out", tmp_path / "out", "--seed", 10**40, *extra)
    line = one_error_line(result)
    assert f"seed {10**40}: out of range, expected from -9223372036854775808 to 9223372036854775807" in line
    assert not (tmp_path / "out").exists()


def test_demo_over_a_folder_holding_a_run_says_its_own_option_before_making_data(tmp_path):
    """`fastseg demo` with something at --out/run said train's "use --resume to continue it",
    an option demo does not have, after generating its data set."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine", encoding="utf-8")
    line = one_error_line(invoke("demo", "--out", tmp_path, "--epochs", "1", "--quiet"))
    assert "run: holds a run already; --force replaces" in line and "--resume" not in line, line
    assert not (tmp_path / "data").exists()
    assert (tmp_path / "run" / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_a_run_folder_name_that_is_not_utf8_is_printed_not_a_traceback(voc_root, tmp_path):
    """`train --out $'run\\xff'` trained, then died printing `model: PATH` (UnicodeEncodeError on
    a UTF-8 terminal): any line naming such a path did. The CLI's streams now write what UTF-8
    cannot hold escaped (found by this session's hostile pass of trackers)."""
    import os
    import subprocess
    import sys

    out = os.fsencode(tmp_path) + b"/run\xff"
    arguments = [sys.executable.encode(), b"-m", b"fastseg", b"train", b"--data", os.fsencode(voc_root),
                 b"--out", out, b"--train-set", b"train", b"--epochs", b"1",
                 *[value.encode() for value in TINY]]  # fmt: skip
    result = subprocess.run(arguments, capture_output=True, timeout=300,
                            env={**os.environ, "PYTHONIOENCODING": "utf-8", "LC_ALL": "C.UTF-8"})  # fmt: skip
    assert result.returncode == 0, result.stderr.decode("utf-8", "replace")[-2000:]
    assert b"model: " in result.stdout and b"run\\xff/model.pth" in result.stdout, result.stdout
    assert os.path.isfile(out + b"/model.pth")


def test_demo_over_a_fifo_named_data_is_one_line(tmp_path):
    """A FIFO (or socket) at --out/data passed the demo's checks, and its mkdir's ENOTDIR was a
    traceback (found by this session's review)."""
    import os

    os.mkfifo(tmp_path / "data")
    line = one_error_line(invoke("demo", "--out", tmp_path, "--epochs", "1", "--quiet"))
    assert "data: holds files fastseg demo did not write" in line, line


def test_a_typo_in_either_md5_is_refused_before_any_request(tmp_path):
    """`download --sbd --sbd-md5 <typo>` fetched the 2 GB VOC tar first: the library checks each
    resource's MD5 only at its own turn (found by this session's review)."""
    for option in ("--md5", "--sbd-md5"):
        result = invoke("download", "--root", tmp_path / "root", "--sbd", option, "abc",
                        "--url", "http://127.0.0.1:9/never-asked.tar")  # fmt: skip
        assert result.exit_code == 2, result.output
        assert f"Invalid value for '{option}': 'abc' is no MD5 (32 hexadecimal digits)" in result.output
        assert "never-asked" not in result.output and not (tmp_path / "root").exists()


def test_only_a_cleaning_prepare_out_removes_a_killed_runs_temporaries(tmp_path):
    """Under a launcher, only the main process clears temporaries (then all wait): a rank on
    another machine, with its own process ids, took the others' fresh ones for stale."""
    from fastseg.inference.predict import prepare_out

    stale = tmp_path / ".a.png.999999999.tmp"  # a process id no process has
    stale.write_bytes(b"cut short")
    prepare_out(tmp_path, clean=False)
    assert stale.exists()
    prepare_out(tmp_path)
    assert not stale.exists()
