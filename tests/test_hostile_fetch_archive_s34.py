"""Session 34's hostile pass over `fastseg download`'s fetch and extraction: servers that send no
Content-Length, ignore Range, trickle bytes or answer with an HTML page, and tars with too many
members or more bytes than the disk holds. Each test is a defect found, and failed before its fix."""

import contextlib
import hashlib
import io
import re
import sys
import tarfile
import threading
import time
from collections import namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import PurePosixPath

import pytest
from click.testing import CliRunner
from test_download import make_tar

from cli.main import main
from fastseg.data.archive import safe_extract
from fastseg.errors import DownloadError

TAR_NAME = "VOCtrainval_11-May-2012.tar"
MARKER = "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt"
PAYLOAD = make_tar({"VOCdevkit/VOC2012/JPEGImages/a.jpg": bytes(range(256)) * 400, MARKER: b"a\n"})
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()
HALF = len(PAYLOAD) // 2


@pytest.fixture
def scripted():
    """`start(answer)`: an HTTP/1.1 server on 127.0.0.1 calling `answer(handler, number, range_start)`
    for each GET (number from 0; range_start from `Range: bytes=N-`, or None), closing the
    connection after each. Returns the URL and the list of range starts asked."""
    servers = []

    def start(answer):
        asked = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # chunked answers need it

            def do_GET(self):  # noqa: N802 - http.server's name
                self.close_connection = True
                header = self.headers.get("Range")
                start = int(header.removeprefix("bytes=").split("-")[0]) if header else None
                asked.append(start)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
                    answer(self, len(asked) - 1, start)

            def log_message(self, *args):
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}/{TAR_NAME}", asked

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def answer_whole(handler, start, headers=()):
    """The right answer: 206 from `start` when a range was asked, else 200; Content-Length set."""
    start = start or 0
    body = PAYLOAD[start:]
    handler.send_response(206 if start else 200)
    if start:
        handler.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
    handler.send_header("Content-Length", str(len(body)))
    for name, value in headers:
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def download_into(root, urls, log=None, timeout=5):
    from fastseg.data.voc import download_voc

    return download_voc(root, urls=urls, md5=PAYLOAD_MD5, progress=None, log=log, timeout=timeout)


# fetch: servers without a length, ignoring Range, trickling, or sending an error page


def test_a_download_of_unknown_size_on_a_terminal_counts_megabytes_without_a_traceback(monkeypatch, capsys):
    """A server that sends no Content-Length (chunked): the bar asked click for a progress bar of
    no length, and click raises TypeError, so on a terminal such a download was a traceback. It is
    a running count of megabytes now, ended with a newline."""
    from cli.download import ByteBar

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    bar = ByteBar(TAR_NAME)
    for done in (0, 1 << 19, 3 << 20, 5 << 20):
        bar(done, None)
    bar.close()
    output = capsys.readouterr().out
    assert output.endswith(f"\r{TAR_NAME}: 5 MB\n")
    assert f"\r{TAR_NAME}: 3 MB" in output and "Traceback" not in output


def test_a_206_without_content_length_closed_early_is_caught_and_resumed(scripted, tmp_path):
    """A 206 with `Content-Range: bytes 1000-N/TOTAL` but no Content-Length, cut after 5000 bytes:
    the cut was taken for the end (6000 bytes "downloaded"), so the MD5 failed and the download
    was removed. The total is read from Content-Range now: the cut is seen and the next mirror
    resumes from byte 6000."""

    def answer(handler, number, start):
        if number == 0:
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
            handler.end_headers()  # no Content-Length: the end is the connection's close
            handler.wfile.write(PAYLOAD[start : start + 5000])
        else:
            answer_whole(handler, start)

    url, asked = scripted(answer)
    (tmp_path / f"{TAR_NAME}.part").write_bytes(PAYLOAD[:1000])
    lines = []
    download_into(tmp_path, [url, url + "?mirror"], log=lines.append)
    assert f"failed: connection closed after 6000 of {len(PAYLOAD)} bytes" in lines
    assert asked == [1000, 6000]
    assert (tmp_path / TAR_NAME).read_bytes() == PAYLOAD and (tmp_path / MARKER).is_file()


def test_a_chunked_answer_cut_keeps_its_bytes_and_says_so_in_words(scripted, tmp_path):
    """A chunked answer (no Content-Length) cut inside a chunk: the mirror failed as
    "IncompleteRead(50000 bytes read)", and the 50,000 bytes read were dropped, so the next mirror
    started again from 0. They are kept now, and the line says what happened."""

    def answer(handler, number, start):
        if number == 0:
            handler.send_response(200)
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            chunk = PAYLOAD[:60000]  # announced whole, 50,000 bytes of it sent
            handler.wfile.write(b"%x\r\n" % len(chunk) + chunk[:50000])
            handler.wfile.flush()
        else:
            answer_whole(handler, start)

    url, asked = scripted(answer)
    lines = []
    download_into(tmp_path, [url, url + "?mirror"], log=lines.append)
    assert "failed: connection closed after 50000 bytes, before the end of the answer" in lines
    assert asked == [None, 50000]
    assert (tmp_path / TAR_NAME).read_bytes() == PAYLOAD


def test_an_html_page_answered_to_a_resume_leaves_the_partial_download_alone(scripted, tmp_path):
    """A mirror's error page served with 200 and text/html, asked to resume: the `.part` (half the
    tar: a gigabyte, for VOC) was cut to nothing and the page written in its place, then the next
    mirror appended the rest to the page, the MD5 failed and everything was removed. Such an answer
    is one mirror's failure now; the `.part` is untouched and the next mirror resumes it."""
    page = b"<!DOCTYPE html><html><body>Quota exceeded</body></html>"

    def answer(handler, number, start):
        if number == 0:
            handler.send_response(200)
            handler.send_header("Content-Type", "text/html; charset=utf-8")
            handler.send_header("Content-Length", str(len(page)))
            handler.end_headers()
            handler.wfile.write(page)
        else:
            answer_whole(handler, start)

    url, asked = scripted(answer)
    (tmp_path / f"{TAR_NAME}.part").write_bytes(PAYLOAD[:HALF])
    lines = []
    download_into(tmp_path, [url, url + "?mirror"], log=lines.append)
    assert "failed: the server sent an HTML page (text/html), not the file" in lines
    assert asked == [HALF, HALF]
    assert (tmp_path / TAR_NAME).read_bytes() == PAYLOAD


@pytest.mark.parametrize("cut", [HALF // 2, HALF + 3000])
def test_a_server_ignoring_range_never_shortens_the_partial_download(scripted, tmp_path, cut):
    """A mirror that ignores Range (200, the whole file) on a resume: the `.part` was truncated
    before its first byte came, so when that mirror then failed (cut at `cut`), what the `.part`
    held beyond `cut` was lost. The bytes it already holds are compared with the answer's now and
    kept; the next mirror resumes from the longer of the two."""

    def answer(handler, number, start):
        if number == 0:
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(PAYLOAD)))
            handler.end_headers()
            handler.wfile.write(PAYLOAD[:cut])
        else:
            answer_whole(handler, start)

    url, asked = scripted(answer)
    partial = tmp_path / f"{TAR_NAME}.part"
    partial.write_bytes(PAYLOAD[:HALF])
    with pytest.raises(DownloadError, match=f"connection closed after {cut} of {len(PAYLOAD)} bytes"):
        download_into(tmp_path, [url])
    assert partial.read_bytes() == PAYLOAD[: max(cut, HALF)]
    download_into(tmp_path, [url])
    assert asked == [HALF, max(cut, HALF)]
    assert (tmp_path / TAR_NAME).read_bytes() == PAYLOAD


def test_a_server_ignoring_range_with_another_file_still_starts_again(scripted, tmp_path):
    """The `.part` of another file (its first bytes differ): the 200 answer replaces it from the
    first differing byte, as before (test_download's restart, here with a long common start)."""
    url, asked = scripted(lambda handler, number, start: answer_whole(handler, None))
    partial = tmp_path / f"{TAR_NAME}.part"
    partial.write_bytes(PAYLOAD[:3000] + b"x" * (HALF - 3000))
    download_into(tmp_path, [url])
    assert asked == [HALF] and (tmp_path / TAR_NAME).read_bytes() == PAYLOAD


def test_a_server_trickling_bytes_counts_as_down(scripted, tmp_path):
    """A slow-loris mirror sending a byte every 0.2 s never tripped the timeout (it is per read),
    and the 1 MB reads showed no progress: a 2 GB download would wait for ever. A mirror sending
    less than 1 KB a second over a whole timeout now fails like one that sends nothing."""

    def answer(handler, number, start):
        if number == 0:
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(PAYLOAD)))
            handler.end_headers()
            for index in range(100):  # 20 s if nobody hangs up
                handler.wfile.write(PAYLOAD[index : index + 1])
                handler.wfile.flush()
                time.sleep(0.2)
        else:
            answer_whole(handler, start)

    url, asked = scripted(answer)
    lines = []
    began = time.monotonic()
    download_into(tmp_path, [url, url + "?mirror"], log=lines.append, timeout=1)
    assert time.monotonic() - began < 15  # the trickle alone takes 20 s
    failed = [line for line in lines if line.startswith("failed: ")]
    assert len(failed) == 1 and failed[0].startswith("failed: too slow: ")
    assert re.search(r" bytes in the last \d+ s \(under 1 KB/s\)$", failed[0]), failed
    assert asked[0] is None and asked[1] is not None and asked[1] > 0  # the trickle is kept
    assert (tmp_path / TAR_NAME).read_bytes() == PAYLOAD


# archive: too many members, more bytes than the disk has


def many_empty_members(count: int) -> bytes:
    """An uncompressed tar of `count` empty files, all named `e` (one header repeated: made in a
    blink even for 100,000 members)."""
    header = tarfile.TarInfo("e").tobuf(format=tarfile.USTAR_FORMAT)
    return header * count + bytes(1024)


def test_a_tar_with_too_many_members_is_refused_before_reading_them_all(tmp_path, monkeypatch):
    """A tar of millions of empty members (1 GB of headers, a few MB gzipped) was read whole into
    memory (`getmembers`: about 450 bytes a member) and then made into files for minutes. Past
    `MAX_MEMBERS` it is refused now, before any is written and without reading the rest."""
    monkeypatch.setattr("fastseg.data.archive.MAX_MEMBERS", 50)
    archive = tmp_path / "many.tar"
    archive.write_bytes(many_empty_members(5000))
    read = []
    real_next = tarfile.TarFile.next
    monkeypatch.setattr(tarfile.TarFile, "next", lambda tar: read.append(1) or real_next(tar))
    refused = (
        r"many\.tar: refusing to extract: it holds more than 50 members \(VOC 2012's tar holds about 40,000\)"
    )
    with pytest.raises(DownloadError, match=refused + "; nothing was extracted"):
        safe_extract(archive, tmp_path / "out")
    assert len(read) < 100 and not (tmp_path / "out").exists()  # of 5000 (open itself reads a few)


@pytest.mark.slow
def test_the_member_bound_lets_voc_through_and_refuses_past_it(tmp_path):
    """The bound itself: VOC 2012's tar (about 40,000 members) and SBD's (about 34,000) pass with
    room to spare; one member past it is refused whole."""
    from fastseg.data.archive import MAX_MEMBERS

    assert MAX_MEMBERS == 100_000
    archive = tmp_path / "many.tar"
    archive.write_bytes(many_empty_members(MAX_MEMBERS + 1))
    with pytest.raises(DownloadError, match="it holds more than 100,000 members"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


Usage = namedtuple("Usage", "total used free")


def test_a_tar_bomb_bigger_than_the_free_space_is_refused_whole(tmp_path, monkeypatch):
    """8 MB of zeros gzipped to a few kB, on a disk with 4 MB free: extraction filled the disk,
    failed midway and left half the files. The members' sizes are added up first now: more than
    the disk has free is one line, and nothing is written."""
    archive = tmp_path / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("small.txt", "zeros.bin"):
            data = b"ok" if name == "small.txt" else bytes(8 << 20)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert archive.stat().st_size < 100_000
    monkeypatch.setattr("fastseg.data.archive.shutil.disk_usage", lambda path: Usage(1 << 40, 0, 4 << 20))
    refused = r"bomb\.tar\.gz: refusing to extract: its files need 8\.0 MB, and .* has 4\.0 MB free"
    with pytest.raises(DownloadError, match=refused + "; nothing was extracted"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_files_already_extracted_count_as_space_a_second_extraction_reuses(tmp_path, monkeypatch):
    """An extraction stopped by a full disk, run again once a little space is free: the files it
    left are overwritten in place, so only the rest is needed (else such a run could never end)."""
    archive = tmp_path / "data.tar"
    archive.write_bytes(make_tar({"a.bin": bytes(300_000), "b.bin": bytes(300_000)}))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.bin").write_bytes(bytes(300_000))  # the first run got this far
    monkeypatch.setattr("fastseg.data.archive.shutil.disk_usage", lambda path: Usage(1 << 40, 0, 400_000))
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "b.bin").read_bytes() == bytes(300_000)


def test_cli_a_hostile_tar_put_in_the_root_is_one_line_and_kept(tmp_path, monkeypatch):
    """From the CLI: the verified tar (its MD5 given by the user) is refused in one line, nothing is
    extracted, the tar stays for the user to look at."""
    monkeypatch.setattr("fastseg.data.archive.MAX_MEMBERS", 10)
    data = many_empty_members(11)
    (tmp_path / TAR_NAME).write_bytes(data)
    md5 = hashlib.md5(data).hexdigest()
    result = CliRunner().invoke(main, ["download", "--root", str(tmp_path), "--md5", md5, "--quiet",
                                       "--url", "http://127.0.0.1:9/x.tar"])  # fmt: skip
    assert result.exit_code == 1 and "Traceback" not in result.output
    last = result.output.splitlines()[-1]
    assert last == (f"Error: {tmp_path / TAR_NAME}: refusing to extract: it holds more than 10 members "
                    "(VOC 2012's tar holds about 40,000); nothing was extracted")  # fmt: skip
    assert sorted(path.name for path in tmp_path.iterdir()) == [TAR_NAME]


@pytest.mark.parametrize(
    ("name", "reason"),
    [("x" * 5000, "a name too long for a file system"), ("d/" * 1000 + "f", "more than 32 folders deep")],
)
def test_names_too_long_or_too_deep_are_refused_before_anything_is_written(tmp_path, name, reason):
    """A member named by 5,000 characters: the members before it were written, then the OS refused
    its name and the error line quoted all 5,000. A member 1,000 folders deep: checking where it
    lands took time growing with the square of its depth (2,000 such took 27 s). Both are refused
    before anything is written now, the name shortened in the line."""
    archive = tmp_path / "names.tar"
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for member in ("ok.txt", name):
            info = tarfile.TarInfo(member)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(DownloadError) as error:
        safe_extract(archive, tmp_path / "out")
    message = str(error.value)
    assert message.startswith(
        f"{archive}: refusing to extract {name[:100]!r}... ({reason}); nothing was extracted"
    )
    assert len(message) < 400 and not (tmp_path / "out").exists()


def test_the_depth_bound_keeps_checking_a_full_size_tar_quick(tmp_path):
    """`MAX_MEMBERS` members each as deep as allowed, with a symlink in the archive (so every path
    is walked): checking them all stays within minutes (about 30 s on a slow shared core), where
    1,000 folders deep took 14 ms a member."""
    from fastseg.data.archive import MAX_DEPTH, MAX_MEMBERS, _problem

    links = {PurePosixPath("link"): PurePosixPath("d")}
    member = tarfile.TarInfo("d/" * (MAX_DEPTH - 1) + "f")
    began = time.monotonic()
    for _ in range(MAX_MEMBERS // 100):
        assert _problem(member, links) is None
    assert (time.monotonic() - began) * 100 < 600  # a bound with room for a busy machine
