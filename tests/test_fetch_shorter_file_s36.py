"""Session 36: a mirror whose whole file is shorter than the partial download it agrees with.

A stale or cut copy on one mirror (a 200 ignoring Range, Content-Length honest) agreed byte for
byte with the `.part` and ended before it: the `.part` was cut to that length, the MD5 then failed
and the whole download was removed, good bytes and all, before the next mirror was tried."""

import hashlib

import pytest
from test_hostile_fetch_archive_s34 import HALF, PAYLOAD, TAR_NAME, answer_whole, download_into, scripted

from fastseg.data.fetch import fetch_any
from fastseg.errors import DownloadError

__all__ = ["scripted"]  # session 34's local HTTP server fixture, used here by name


def whole_of(body: bytes):
    """A mirror ignoring Range: 200 with `body` whole, its length told."""

    def answer(handler, number, start):
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


def test_a_shorter_stale_copy_keeps_the_partial_download_for_the_next_mirror(scripted, tmp_path):
    stale, asked_stale = scripted(whole_of(PAYLOAD[: HALF // 2]))
    good, asked_good = scripted(lambda handler, number, start: answer_whole(handler, start))
    partial = tmp_path / f"{TAR_NAME}.part"
    partial.write_bytes(PAYLOAD[:HALF])
    lines = []
    download_into(tmp_path, [stale, good], log=lines.append)
    assert (tmp_path / TAR_NAME).read_bytes() == PAYLOAD
    assert asked_stale == [HALF] and asked_good == [HALF]  # the good mirror resumed the kept bytes
    failed = [line for line in lines if line.startswith("failed: ")]
    assert failed == [
        f"failed: the server's whole file has {HALF // 2} bytes, fewer than the {HALF} "
        "already downloaded, and not the MD5 expected; the partial download is kept"
    ]


def test_a_shorter_copy_with_the_right_md5_ends_the_download_there(scripted, tmp_path):
    """The `.part` longer than the file (bytes past its end): the whole file, shorter, is the one
    asked for by its MD5, so the `.part` is cut to it, as before."""
    url, asked = scripted(whole_of(PAYLOAD))
    partial = tmp_path / f"{TAR_NAME}.part"
    partial.write_bytes(PAYLOAD + b"past the end")
    download_into(tmp_path, [url])
    assert asked == [len(PAYLOAD) + 12] and (tmp_path / TAR_NAME).read_bytes() == PAYLOAD


def test_without_an_md5_the_shorter_whole_file_is_taken_as_before(scripted, tmp_path):
    """`fetch_any` called without an MD5 has no way to judge: the complete answer stands."""
    url, _ = scripted(whole_of(PAYLOAD[:1000]))
    partial = tmp_path / "x.part"
    partial.write_bytes(PAYLOAD[:HALF])
    fetch_any([url], partial, tmp_path)
    assert partial.read_bytes() == PAYLOAD[:1000]


@pytest.mark.parametrize("md5", [hashlib.md5(PAYLOAD[:1000]).hexdigest(), "0" * 32])
def test_the_md5_judges_the_shorter_file_by_its_bytes(scripted, tmp_path, md5):
    url, _ = scripted(whole_of(PAYLOAD[:1000]))
    partial = tmp_path / "x.part"
    partial.write_bytes(PAYLOAD[:HALF])
    if md5 == "0" * 32:
        with pytest.raises(DownloadError, match="could not download x .*fewer than the"):
            fetch_any([url], partial, tmp_path, md5=md5)
        assert partial.read_bytes() == PAYLOAD[:HALF]
    else:
        fetch_any([url], partial, tmp_path, md5=md5)
        assert partial.read_bytes() == PAYLOAD[:1000]
