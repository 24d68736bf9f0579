"""Leftovers of earlier sessions' notes, each a test that failed before its change."""

from __future__ import annotations

import os

import pytest

from fastseg.errors import DownloadError


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_what_sits_where_the_tar_goes_is_named_in_the_one_wording(tmp_path, kind, monkeypatch):
    """download named a FIFO or socket at the tar's name "not a regular file"; model.pth's and
    --runtime's checks say "a named pipe (FIFO)" (structured_files.file_kind): one wording."""
    import socket

    from fastseg.data.voc import VOC_FILENAME, download_voc

    tar = tmp_path / VOC_FILENAME
    if kind == "fifo":
        os.mkfifo(tar)
    else:
        listening = socket.socket(socket.AF_UNIX)
        monkeypatch.chdir(tmp_path)  # a socket's path holds 108 bytes: a test worker's tmp_path is long
        listening.bind(tar.name)
    words = {"fifo": "a named pipe (FIFO)", "socket": "a socket"}[kind]
    with pytest.raises(DownloadError) as refused:
        download_voc(tmp_path, urls=["http://127.0.0.1:9/never"])
    assert str(refused.value) == f"{tar}: {words} where the tar goes; remove it or choose another root"


@pytest.mark.slow
def test_a_hand_edited_process_count_is_said_before_the_data_check(voc_root, tmp_path, monkeypatch):
    """last.json's `processes` was read after the images and masks were checked (minutes on a
    real set): a hand edit was told only then. It is read with the split, before the check."""
    import json

    from test_hostile_train_options_s34 import resume_config
    from test_resume_schedule import KillAfter, Killed

    import fastseg.training.trainer as trainer
    from fastseg.errors import FastsegError
    from fastseg.runs.folder import RunFolder

    run = tmp_path / "run"
    with pytest.raises(Killed):
        config = resume_config(voc_root, run, epochs=2)
        trainer.train(config, run, show_progress=False, callbacks=[KillAfter(0)])
    state = json.loads((run / "last.json").read_text())
    (run / "last.json").write_text(json.dumps({**state, "processes": "two"}))
    checked = []
    monkeypatch.setattr(trainer, "check_dataset", lambda *args, **kwargs: checked.append(args))
    with pytest.raises(FastsegError, match="processes must be a whole number"):
        trainer.train(RunFolder(run).read_train_config(), run, resume=True, show_progress=False)
    assert checked == []


def test_extraction_reports_each_member_once_written_and_the_download_says_so(tmp_path, monkeypatch):
    """After "extracting ...", VOC's 40,000 members took tens of seconds without a word. The count
    follows the writing: each report comes after its member is on disk, the last is the total."""
    from test_download import make_tar

    from fastseg.data import download as download_module
    from fastseg.data.archive import safe_extract

    members = {f"f{index:02d}.txt": f"{index}".encode() for index in range(25)}
    archive = tmp_path / "a.tar"
    archive.write_bytes(make_tar(members))
    seen = []

    def progress(done, total):
        assert (tmp_path / "out" / f"f{done - 1:02d}.txt").is_file()  # written before it is counted
        seen.append((done, total))

    safe_extract(archive, tmp_path / "out", progress=progress)
    assert seen == [(done, 25) for done in range(1, 26)]

    class Every:  # a line at every member, as a 30 s throttle would give on a slow disk
        def due(self, done, total):
            return True

    monkeypatch.setattr(download_module, "LineThrottle", Every)
    from fastseg.data.download import Resource, download

    marker = "data/marker.txt"
    payload = make_tar({**{f"data/{name}": data for name, data in members.items()}, marker: b"x"})
    root = tmp_path / "root"
    root.mkdir()
    (root / "data.tar").write_bytes(payload)
    import hashlib

    resource = Resource(urls=("http://127.0.0.1:9/never",), filename="data.tar",
                        md5=hashlib.md5(payload).hexdigest(), folder="data", marker=marker)  # fmt: skip
    lines = []
    download(resource, root, log=lines.append)
    counts = [line for line in lines if line.startswith("extracting: ")]
    assert counts[0] == "extracting: 1 of 26 files" and counts[-1] == "extracting: 26 of 26 files"
    assert len(counts) == 26 and (root / marker).is_file()
