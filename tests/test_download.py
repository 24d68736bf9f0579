"""Download, resume, MD5 and safe extraction, against an HTTP server on 127.0.0.1 only."""

import hashlib
import io
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.download import ByteBar
from cli.main import main
from fastseg.data.archive import safe_extract
from fastseg.data.fetch import fetch, fetch_any
from fastseg.data.voc import VOC2012, VOC_FILENAME, download_voc
from fastseg.errors import DownloadError

MARKER = "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt"
IMAGE = "VOCdevkit/VOC2012/JPEGImages/2008_000001.jpg"


def make_tar(members: dict[str, bytes], links: dict[str, tuple[bytes, str]] | None = None) -> bytes:
    """An uncompressed tar of regular files, plus links as {name: (tarfile type, link target)}."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, (kind, target) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
    return buffer.getvalue()


VOC_TAR = make_tar({MARKER: b"2008_000001\n", IMAGE: bytes(range(256)) * 200})
VOC_MD5 = hashlib.md5(VOC_TAR).hexdigest()


class Server:
    """Serves `payload` at any path, honours `Range: bytes=N-`, and records what it was asked and sent.

    `ignore_range` answers 200 with everything; `wrong_range` answers 206 from byte 0 whatever was
    asked; `cut_first` sends only that many bytes of the first answer and hangs up; `missing` is a
    path answered with 404.
    """

    def __init__(self, payload: bytes):
        self.payload = payload
        self.requests: list[dict[str, str | None]] = []
        self.sent = 0
        self.ignore_range = self.wrong_range = False
        self.cut_first: int | None = None
        self.missing: str | None = None
        self.length_header: str | None = None  # a Content-Length to send in place of the true one
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                asked = self.headers.get("Range")
                server.requests.append({"path": self.path, "range": asked})
                if self.path == server.missing:
                    self.send_error(404)
                    return
                start = 0
                if asked and not server.ignore_range:
                    start = 0 if server.wrong_range else int(asked.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    end = len(server.payload) - 1
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(server.payload)}")
                else:
                    self.send_response(200)
                body = server.payload[start:]
                self.send_header("Content-Length", server.length_header or str(len(body)))
                self.end_headers()
                if server.cut_first is not None and len(server.requests) == 1:
                    body = body[: server.cut_first]
                # Counted before writing: the client can finish reading and the test assert
                # before this thread runs another line (CI saw `sent == 0`).
                server.sent += len(body)
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{VOC_FILENAME}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    running = Server(VOC_TAR)
    yield running
    running.close()


@pytest.fixture
def closed_url() -> str:
    """A 127.0.0.1 URL on a port that was just free: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/{VOC_FILENAME}"


def get(root: Path, urls: list[str], md5: str = VOC_MD5) -> Path:
    return download_voc(root, urls=urls, md5=md5, progress=None, timeout=5)


def files_under(folder: Path) -> list[Path]:
    return sorted(path.relative_to(folder) for path in folder.rglob("*")) if folder.exists() else []


def test_download_verifies_and_extracts(server, tmp_path):
    folder = get(tmp_path, [server.url])
    assert folder == tmp_path / "VOCdevkit" / "VOC2012"
    assert (tmp_path / MARKER).read_bytes() == b"2008_000001\n"
    assert (tmp_path / IMAGE).read_bytes() == bytes(range(256)) * 200
    assert (tmp_path / VOC_FILENAME).read_bytes() == VOC_TAR
    assert not (tmp_path / (VOC_FILENAME + ".part")).exists()
    assert server.requests == [{"path": f"/{VOC_FILENAME}", "range": None}]


def test_partial_file_is_resumed_with_a_range_request(server, tmp_path):
    half = len(VOC_TAR) // 2
    (tmp_path / (VOC_FILENAME + ".part")).write_bytes(VOC_TAR[:half])
    get(tmp_path, [server.url])
    assert [request["range"] for request in server.requests] == [f"bytes={half}-"]
    assert server.sent == len(VOC_TAR) - half
    assert (tmp_path / VOC_FILENAME).read_bytes() == VOC_TAR
    assert (tmp_path / MARKER).is_file()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.ignore_range = True
    (tmp_path / (VOC_FILENAME + ".part")).write_bytes(b"stale bytes of some other file")
    get(tmp_path, [server.url])
    assert server.requests[0]["range"] == "bytes=30-"
    assert (tmp_path / VOC_FILENAME).read_bytes() == VOC_TAR


def test_server_answering_another_range_is_asked_again_for_everything(server, tmp_path):
    server.wrong_range = True
    (tmp_path / (VOC_FILENAME + ".part")).write_bytes(VOC_TAR[:1000])
    get(tmp_path, [server.url])
    assert [request["range"] for request in server.requests] == ["bytes=1000-", None]
    assert (tmp_path / VOC_FILENAME).read_bytes() == VOC_TAR


def test_connection_cut_midway_is_resumed_from_the_next_mirror(server, tmp_path):
    server.cut_first = 20_000
    get(tmp_path, [server.url + "?first", server.url + "?second"])
    assert [request["range"] for request in server.requests] == [None, "bytes=20000-"]
    assert (tmp_path / VOC_FILENAME).read_bytes() == VOC_TAR


def test_fetch_reports_progress_up_to_the_total(server, tmp_path):
    seen: list[tuple[int, int | None]] = []
    partial = tmp_path / "file.part"
    fetch(server.url, partial, progress=lambda done, total: seen.append((done, total)), timeout=5)
    assert partial.read_bytes() == VOC_TAR
    assert seen[0] == (0, len(VOC_TAR)) and seen[-1] == (len(VOC_TAR), len(VOC_TAR))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_each_mirror_tried_gets_its_own_progress_closed_after_it(server, tmp_path, closed_url):
    """The library draws nothing: a caller's factory is asked for one display per request (the file
    name as its label), each closed when its mirror is done, failed or not."""
    made: list[list] = []

    class Recorder:
        def __init__(self, label: str) -> None:
            self.label, self.reports, self.closed = label, [], False
            made.append(self)

        def __call__(self, done: int, total: int | None) -> None:
            assert not self.closed
            self.reports.append((done, total))

        def close(self) -> None:
            self.closed = True

    partial = tmp_path / f"{VOC_FILENAME}.part"
    fetch_any([closed_url, server.url], partial, tmp_path, progress=Recorder, timeout=5)
    assert [(bar.label, bar.closed) for bar in made] == [(VOC_FILENAME, True), (VOC_FILENAME, True)]
    assert made[0].reports == [] and made[1].reports[-1] == (len(VOC_TAR), len(VOC_TAR))


def test_the_download_library_imports_no_click():
    """The bar is the CLI's (`cli.download.ByteBar`): the data package only reports bytes."""
    import ast

    data = Path(__file__).resolve().parents[1] / "fastseg" / "data"
    imported = {
        name: [
            node.module if isinstance(node, ast.ImportFrom) else alias.name
            for node in ast.walk(ast.parse((data / name).read_text()))
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in node.names
        ]
        for name in ("fetch.py", "archive.py", "download.py", "voc.py", "sbd.py")
    }
    assert "urllib.request" in imported["fetch.py"]  # the walk sees the imports
    assert {
        name: [m for m in modules if m and m.split(".")[0] == "click"] for name, modules in imported.items()
    } == {name: [] for name in imported}


def test_present_data_makes_no_request(server, tmp_path, closed_url):
    get(tmp_path, [server.url])
    (tmp_path / VOC_FILENAME).unlink()  # even without the tar: the extracted marker is enough
    messages: list[str] = []
    folder = download_voc(tmp_path, urls=[server.url], md5=VOC_MD5, progress=None, log=messages.append)
    assert folder == tmp_path / "VOCdevkit" / "VOC2012"
    assert len(server.requests) == 1
    assert messages == [f"already present: {folder} (nothing to do)"]


def test_wrong_md5_extracts_nothing_and_removes_the_download(server, tmp_path):
    with pytest.raises(DownloadError, match=f"MD5 expected 0{{32}}, got {VOC_MD5}; the download was removed"):
        get(tmp_path, [server.url], md5="0" * 32)
    assert files_under(tmp_path) == []


def test_tar_put_by_hand_is_used_without_network(server, tmp_path):
    (tmp_path / VOC_FILENAME).write_bytes(VOC_TAR)
    get(tmp_path, [server.url])
    assert server.requests == []
    assert (tmp_path / MARKER).read_bytes() == b"2008_000001\n"


def test_a_users_file_with_the_tars_name_is_moved_aside_never_deleted(server, tmp_path):
    """Issue #19 (2): a user's unrelated file named VOCtrainval_11-May-2012.tar was deleted."""
    (tmp_path / VOC_FILENAME).write_bytes(b"my own archive")
    (tmp_path / f"{VOC_FILENAME}.bad-md5").write_bytes(b"an earlier one")
    with pytest.raises(DownloadError, match="MD5 expected .* moved aside to .*bad-md5.1"):
        get(tmp_path, [server.url])
    assert server.requests == []
    assert (tmp_path / f"{VOC_FILENAME}.bad-md5.1").read_bytes() == b"my own archive"
    assert (tmp_path / f"{VOC_FILENAME}.bad-md5").read_bytes() == b"an earlier one"


def test_unreachable_server_says_where_to_put_the_tar(tmp_path, closed_url):
    root = tmp_path / "data"
    with pytest.raises(DownloadError) as error:
        get(root, [closed_url, closed_url + "?mirror"])
    message = str(error.value)
    assert message.endswith(f"put {VOC_FILENAME} in {root} and run again")
    assert message.count(closed_url) == 2 and "refused" in message.lower()
    assert "\n" not in message
    assert files_under(root) == []


def test_unreachable_or_missing_mirrors_fall_back_to_the_next(server, tmp_path, closed_url):
    server.missing = "/gone.tar"
    messages: list[str] = []
    download_voc(
        tmp_path,
        urls=[closed_url, server.url.rsplit("/", 1)[0] + "/gone.tar", server.url],
        md5=VOC_MD5,
        progress=None,
        log=messages.append,
    )
    assert "failed: HTTP 404 Not Found" in messages
    assert len(server.requests) == 2
    assert (tmp_path / MARKER).is_file()


def test_right_md5_but_not_a_tar_is_a_download_error(tmp_path, closed_url):
    junk = b"not a tar at all" * 100
    (tmp_path / VOC_FILENAME).write_bytes(junk)
    with pytest.raises(DownloadError, match="cannot extract"):
        get(tmp_path, [closed_url], md5=hashlib.md5(junk).hexdigest())


def test_tar_without_the_marker_is_a_download_error(tmp_path, closed_url):
    other = make_tar({"something/else.txt": b"x"})
    (tmp_path / VOC_FILENAME).write_bytes(other)
    with pytest.raises(DownloadError, match="holds no VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt"):
        get(tmp_path, [closed_url], md5=hashlib.md5(other).hexdigest())


@pytest.mark.parametrize("evil", ["../evil.txt", "ok/../../evil.txt", "ABSOLUTE"])
def test_path_traversal_tar_is_refused_whole(tmp_path, evil):
    evil = str(tmp_path / "absolute-evil.txt") if evil == "ABSOLUTE" else evil
    archive = tmp_path / "evil.tar"
    archive.write_bytes(make_tar({"good.txt": b"fine", evil: b"pwned"}))
    target = tmp_path / "out" / "deeper"
    target.mkdir(parents=True)
    with pytest.raises(DownloadError, match=f"refusing to extract '{evil}'.*nothing was extracted"):
        safe_extract(archive, target)
    assert files_under(tmp_path) == [Path("evil.tar"), Path("out"), Path("out/deeper")]


@pytest.mark.parametrize(
    ("links", "refused", "reason"),
    [
        ({"link": (tarfile.SYMTYPE, "../../etc/passwd")}, "link", "link points outside"),
        ({"link": (tarfile.SYMTYPE, "/etc/passwd")}, "link", "link to an absolute path"),
        ({"hard": (tarfile.LNKTYPE, "../outside.txt")}, "hard", "link points outside"),
        ({"fifo": (tarfile.FIFOTYPE, "")}, "fifo", "device or special file"),
    ],
)
def test_links_and_special_files_leading_outside_are_refused(tmp_path, links, refused, reason):
    archive = tmp_path / "links.tar"
    archive.write_bytes(make_tar({"good.txt": b"fine"}, links))
    with pytest.raises(DownloadError, match=f"refusing to extract '{refused}' \\({reason}"):
        safe_extract(archive, tmp_path / "out")
    assert files_under(tmp_path / "out") == []


def test_path_climbing_out_through_an_archive_symlink_is_refused(tmp_path):
    # `a/b/up` points at the target itself, so `a/b/up/../x` lands beside it, although lexically it
    # is `a/b/x`; tarfile's own filter only notices once `up` is on disk, after other members are.
    archive = tmp_path / "climb.tar"
    archive.write_bytes(
        make_tar({"good.txt": b"fine", "a/b/up/../x": b"pwned"}, {"a/b/up": (tarfile.SYMTYPE, "../..")})
    )
    with pytest.raises(DownloadError, match="refusing to extract 'a/b/up/../x' \\(path leaves the target"):
        safe_extract(archive, tmp_path / "out")
    assert files_under(tmp_path / "out") == []
    assert not (tmp_path / "x").exists()


def test_links_that_stay_inside_are_extracted(tmp_path):
    archive = tmp_path / "links.tar"
    links = {"a/to_good": (tarfile.SYMTYPE, "../good.txt"), "hard": (tarfile.LNKTYPE, "good.txt")}
    archive.write_bytes(make_tar({"good.txt": b"fine", "a/b.txt": b"b"}, links))
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "a" / "to_good").read_bytes() == b"fine"
    assert (tmp_path / "out" / "hard").read_bytes() == b"fine"


def test_marker_is_extracted_last_so_it_proves_the_rest(tmp_path, monkeypatch):
    archive = tmp_path / "order.tar"
    archive.write_bytes(make_tar({MARKER: b"ids", IMAGE: b"jpg", "z.txt": b"z"}))
    order: list[str] = []
    original = tarfile.TarFile.extractall

    def recording(self, path, members, **kwargs):
        order.extend(member.name for member in members)
        return original(self, path, members=members, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "extractall", recording)
    safe_extract(archive, tmp_path / "out", last=VOC2012.marker)
    assert order == [IMAGE, "z.txt", MARKER]


def test_cli_download_succeeds_then_finds_the_data_present(server, tmp_path):
    runner = CliRunner()
    arguments = ["download", "--root", str(tmp_path), "--url", server.url, "--md5", VOC_MD5]
    first = runner.invoke(main, arguments)
    assert first.exit_code == 0, first.output
    assert f"VOC 2012 ready in {tmp_path / 'VOCdevkit' / 'VOC2012'}" in first.output
    assert (tmp_path / MARKER).is_file()
    second = runner.invoke(main, [*arguments, "--quiet"])
    assert second.exit_code == 0, second.output
    assert "already present" in second.output
    assert len(server.requests) == 1


@pytest.mark.parametrize("failure", ["md5", "offline"])
def test_cli_failure_is_one_error_line_and_exit_1(server, tmp_path, closed_url, failure):
    url, md5, expected = {
        "md5": (server.url, "1" * 32, f"MD5 expected {'1' * 32}, got {VOC_MD5}"),
        "offline": (closed_url, VOC_MD5, f"put {VOC_FILENAME} in {tmp_path} and run again"),
    }[failure]
    result = CliRunner().invoke(main, ["download", "--root", str(tmp_path), "--url", url, "--md5", md5])
    assert result.exit_code == 1
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(error_lines) == 1 and expected in error_lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "VOCdevkit").exists()


def test_byte_bar_in_a_log_file_is_a_plain_line_every_tenth(monkeypatch, capsys):
    """Outside a terminal: no bar fragments, a line per tenth (when 30 s have passed) and at the end."""
    import fastseg.progress_lines

    clock = iter(range(0, 10_000, 31))  # 31 s between reports
    monkeypatch.setattr(fastseg.progress_lines.time, "monotonic", lambda: next(clock))
    bar = ByteBar("VOC.tar")
    megabyte, total = 1 << 20, 20 << 20
    for done in range(0, total + 1, megabyte):
        bar(done, total)
    bar.close()
    output = capsys.readouterr().out
    assert "\r" not in output
    assert output.splitlines() == [f"VOC.tar: {mb} / 20 MB" for mb in range(2, 21, 2)]


def test_byte_bar_without_a_size_logs_every_30_seconds(monkeypatch, capsys):
    import fastseg.progress_lines

    clock = iter([0, 10, 20, 35, 50, 70])  # the throttle's start, then one reading per report
    monkeypatch.setattr(fastseg.progress_lines.time, "monotonic", lambda: next(clock))
    bar = ByteBar("SBD.tgz")
    for megabytes in (1, 2, 3, 4, 5):
        bar(megabytes << 20, None)
    assert capsys.readouterr().out.splitlines() == ["SBD.tgz: 3 MB", "SBD.tgz: 5 MB"]


HTML_PAGE = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>Gone</body></html>\n" * 20


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (HTML_PAGE, "it is an HTML page, not a tar (an error page saved under the tar's name?)"),
        (b"not a tar at all" * 100, "not a tar archive (nor a gzip, bzip2 or xz one)"),
        (VOC_TAR[:5000], "not a readable tar archive (unexpected end of data)"),
    ],
)
def test_cli_a_file_that_is_not_a_tar_is_one_error_line(tmp_path, content, reason):
    """Downloaded with an --md5 that matches it (the error page's own, say): the error is one line."""
    server = Server(content)
    try:
        md5 = hashlib.md5(content).hexdigest()
        arguments = ["download", "--root", str(tmp_path), "--url", server.url, "--md5", md5, "--quiet"]
        result = CliRunner().invoke(main, arguments)
    finally:
        server.close()
    archive = tmp_path / VOC_FILENAME
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: {archive}: cannot extract, {reason}; delete it, and check the URL and the expected MD5"
    )
    progress = ("downloading", "checking", "extracting")
    assert [line for line in result.output.splitlines() if not line.startswith(progress)] == [
        result.output.splitlines()[-1]
    ]
    assert files_under(tmp_path) == [Path(VOC_FILENAME)]


@pytest.mark.parametrize("length", ["\u00b2", "12x", "-5"])
def test_a_content_length_that_is_no_number_is_read_as_unknown(server, tmp_path, length):
    """Found by a hostile pass: `isdigit` takes "²", which `int` refuses, so such a header was a
    ValueError traceback. http.client itself reads the body to the end without it; so does fetch."""
    server.length_header = length
    seen = []
    fetch(server.url, tmp_path / "voc.tar", progress=lambda done, total: seen.append(total), timeout=5)
    assert (tmp_path / "voc.tar").read_bytes() == VOC_TAR
    assert set(seen) == {None}


def test_a_root_under_the_home_of_no_user_stays_as_written(server, tmp_path, monkeypatch):
    """`~nosuchuser/data`: Path.expanduser raises RuntimeError there (a traceback for a typo); the
    shell leaves it as written, and so does download: a folder of that name here."""
    monkeypatch.chdir(tmp_path)
    folder = get(Path("~nosuchuser-fastseg/data"), [server.url])
    assert folder == Path("~nosuchuser-fastseg/data/VOCdevkit/VOC2012")
    assert (tmp_path / "~nosuchuser-fastseg" / "data" / MARKER).is_file()
