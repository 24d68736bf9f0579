"""One fastseg command at a time in a folder (`fastseg.folder_lock`): train's run folder,
download's root and lr-find's --out share one lock, so each behaves the same way under two at
once, kill -9, NFS and a file system without locks."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fastseg.errors import DownloadError, FastsegError
from fastseg.folder_lock import LOCK, holding

HINT = "wait for it to end"


def attempt(folder: Path, command: str = "train") -> None:
    """Take `folder` and let it go at once: what a second command does first."""
    with holding(folder, command, HINT):
        pass


def test_a_second_holder_is_refused_naming_the_first_command_and_its_process(tmp_path):
    folder = tmp_path / "run"
    with holding(folder, "train", HINT):
        assert (folder / LOCK).read_text() == f"{os.getpid()} train\n"
        with pytest.raises(FastsegError) as refused:
            attempt(folder, "lr-find")
    # lr-find into a folder train is writing: the line names train, the holder
    pid = os.getpid()
    assert str(refused.value) == (f"{folder}: another fastseg train (process {pid}) is using this folder; "
                                  f"{HINT}")
    assert not folder.exists()  # made for the lock alone, nothing written: removed


def test_the_lock_file_goes_when_the_block_ends_and_written_files_stay(tmp_path):
    folder = tmp_path / "a" / "b"
    with holding(folder, "download", HINT, DownloadError):
        (folder / "kept.txt").write_text("x")
    assert sorted(path.name for path in folder.iterdir()) == ["kept.txt"]
    with pytest.raises(RuntimeError), holding(tmp_path / "c" / "d", "train", HINT):
        raise RuntimeError("the block failed")
    assert not (tmp_path / "c").exists()  # both folders it made, empty, removed


def test_the_error_type_is_the_callers(tmp_path):
    with holding(tmp_path, "download", HINT), pytest.raises(DownloadError), holding(
        tmp_path, "download", HINT, DownloadError
    ):
        pass


HOLD = """
import sys, time
from pathlib import Path
from fastseg.folder_lock import holding
with holding(Path(sys.argv[1]), "train", "hint"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_another_process_is_refused_and_kill_9_leaves_a_lock_the_next_command_takes(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(FastsegError, match=rf"another fastseg train \(process {holder.pid}\) is using"):
            attempt(folder, "download")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    assert (folder / LOCK).read_text() == f"{holder.pid} train\n"  # the killed holder's file stays
    with holding(folder, "train", HINT):  # but the kernel released its lock with the process
        assert (folder / LOCK).read_text() == f"{os.getpid()} train\n"
    assert not (folder / LOCK).exists()


def test_a_lock_file_holding_anything_names_no_process(tmp_path):
    """A lock file the holder has not written yet, or one holding garbage or markup: the line
    says no process rather than quoting the file."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK).write_bytes(b"<b>\xff\n")
    descriptor = os.open(folder / LOCK, os.O_RDWR)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    try:
        with pytest.raises(FastsegError) as refused:
            attempt(folder, "lr-find")
    finally:
        os.close(descriptor)
    assert str(refused.value) == f"{folder}: another fastseg lr-find is using this folder; {HINT}"
    assert (folder / LOCK).read_bytes() == b"<b>\xff\n"  # a refused command removes nothing


def test_on_nfs_an_exclusive_lock_needs_a_descriptor_open_for_writing(tmp_path, monkeypatch):
    """NFS emulates `flock` with a byte-range lock, which refuses an exclusive lock on a descriptor
    not open for writing (EBADF). download and lr-find locked the folder itself (read-only, as a
    folder must be opened): a traceback on NFS. The lock is now a file opened for writing."""
    real_flock = fcntl.flock

    def like_nfs(descriptor, operation):
        if operation & fcntl.LOCK_EX and fcntl.fcntl(descriptor, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return real_flock(descriptor, operation)

    monkeypatch.setattr(fcntl, "flock", like_nfs)
    for command in ("train", "download", "lr-find"):
        folder = tmp_path / command
        with holding(folder, command, HINT):
            (folder / "out.txt").write_text(command)
        with holding(folder, command, HINT), pytest.raises(FastsegError, match="another fastseg"):
            attempt(folder, command)


def test_a_file_system_without_locks_runs_the_block_unlocked(tmp_path, monkeypatch):
    """ENOLCK (an NFS mount without lockd, some FUSE file systems): the command runs, as on a
    system without `flock`, rather than failing on every start."""

    def no_locks(descriptor, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    ran = []
    with holding(tmp_path / "run", "train", HINT):
        ran.append(True)
    assert ran == [True] and not (tmp_path / "run").exists()


@pytest.mark.parametrize("replaced", [1, 99])
def test_a_lock_file_removed_by_the_holder_that_just_ended_is_not_taken(tmp_path, monkeypatch, replaced):
    """A opens the lock file, the holder then removes it and ends, and a third command makes a new
    one: A's `flock` on the removed file succeeds, and without a check two would hold the folder.
    A opens the name again and takes the new file (refused only where it is replaced every time,
    and it was refused at once, naming a holder who had left, before the review)."""
    import fastseg.folder_lock as folder_lock

    folder = tmp_path / "run"
    real, calls = folder_lock._lock_exclusively, []

    def replaced_meanwhile(descriptor):
        calls.append(descriptor)
        if len(calls) <= replaced:
            (folder / LOCK).unlink()
            (folder / LOCK).write_text("77 train\n")  # the third command's new file, since ended
        return real(descriptor)

    monkeypatch.setattr(folder_lock, "_lock_exclusively", replaced_meanwhile)
    if replaced == 1:
        with holding(folder, "lr-find", HINT):
            assert (folder / LOCK).read_text() == f"{os.getpid()} lr-find\n"
        assert len(calls) == 2 and not folder.exists()
    else:
        with pytest.raises(FastsegError, match="another fastseg train .process 77. is using this folder"):
            attempt(folder)
        assert len(calls) == folder_lock.ATTEMPTS
        assert (folder / LOCK).read_text() == "77 train\n"  # the other's file left alone


def test_a_lock_the_file_system_fails_is_one_line(tmp_path, monkeypatch):
    """EIO from `flock` (a failing disk, a network file system gone): a traceback before."""

    def broken(descriptor, operation):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(fcntl, "flock", broken)
    failing = pytest.raises(DownloadError, match=r"\.fastseg\.lock: cannot lock it \(Input/output error\)")
    with failing, holding(tmp_path / "root", "download", HINT, DownloadError):
        pass
    assert not (tmp_path / "root").exists()


def test_a_symbolic_link_or_a_folder_at_the_lock_name_is_one_line_and_left_alone(tmp_path):
    precious = tmp_path / "notes.txt"
    precious.write_text("mine")
    linked, blocked = tmp_path / "linked", tmp_path / "blocked"
    linked.mkdir()
    blocked.mkdir()
    os.symlink(precious, linked / LOCK)
    (blocked / LOCK).mkdir()
    with pytest.raises(FastsegError, match=r"\.fastseg\.lock: a symbolic link"):
        attempt(linked)
    with pytest.raises(FastsegError, match=r"\.fastseg\.lock: cannot create"):
        attempt(blocked)
    assert precious.read_text() == "mine" and (linked / LOCK).is_symlink() and (blocked / LOCK).is_dir()


def test_a_file_where_the_folder_goes_and_an_unwritable_parent_are_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FastsegError, match="is a file, not a folder"):
        attempt(tmp_path / "file")
    with pytest.raises(FastsegError, match="cannot create the folder"):
        attempt(tmp_path / "file" / "under")
    assert (tmp_path / "file").read_text() == "x"


def test_the_three_commands_use_the_one_lock():
    """No command keeps a lock of its own: a fourth copy would miss the next fix (NFS, the race)."""
    root = Path(__file__).resolve().parents[1]
    users = sorted(
        str(path.relative_to(root))
        for folder in ("fastseg", "cli")
        for path in (root / folder).rglob("*.py")
        if "flock(" in path.read_text(encoding="utf-8")
    )
    assert users == ["fastseg/folder_lock.py"]


def test_a_folder_name_over_the_file_systems_limit_is_one_line(tmp_path):
    """`Path.exists` raises ENAMETOOLONG rather than answering False: a traceback from the lock, and
    from `download --root` before it (the marker's check)."""
    from fastseg.data.voc import download_voc

    long = tmp_path / ("a" * 300)
    with pytest.raises(FastsegError, match=r"a{300}: cannot be used \(File name too long\)"):
        attempt(long)
    with pytest.raises(DownloadError, match=r"a{300}: cannot be used as the root \(File name too long\)"):
        download_voc(long, urls=["http://127.0.0.1:9/never"])
