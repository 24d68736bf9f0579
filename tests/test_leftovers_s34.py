"""Leftovers of earlier sessions' notes, each a test that failed before its change."""

from __future__ import annotations

import os

import pytest

from fastseg.errors import DownloadError


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_what_sits_where_the_tar_goes_is_named_in_the_one_wording(tmp_path, kind):
    """download named a FIFO or socket at the tar's name "not a regular file"; model.pth's and
    --runtime's checks say "a named pipe (FIFO)" (structured_files.file_kind): one wording."""
    import socket

    from fastseg.data.voc import VOC_FILENAME, download_voc

    tar = tmp_path / VOC_FILENAME
    if kind == "fifo":
        os.mkfifo(tar)
    else:
        listening = socket.socket(socket.AF_UNIX)
        listening.bind(str(tar))
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
