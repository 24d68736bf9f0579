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
