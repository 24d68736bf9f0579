"""Download, resume, MD5 and safe extraction against an HTTP server on 127.0.0.1 only."""

import hashlib
import io
import tarfile
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from fastseg.download import VOC2012, download, safe_extract
from fastseg.errors import DownloadError

MARKER = "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt"


def make_tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


VOC_TAR = make_tar({MARKER: b"2008_000001\n", "VOCdevkit/VOC2012/JPEGImages/a.jpg": b"x" * 50_000})
VOC_MD5 = hashlib.md5(VOC_TAR).hexdigest()


class Server:
    """Serves `payload` at any path; honours Range; records the requests it got."""

    def __init__(self, payload: bytes):
        self.payload, self.requests = payload, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                server.requests.append(dict(self.headers))
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                else:
                    self.send_response(200)
                body = server.payload[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/VOCtrainval_11-May-2012.tar"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    running = Server(VOC_TAR)
    yield running
    running.close()


def resource(md5: str = VOC_MD5):
    return replace(VOC2012, md5=md5)


def test_download_verifies_and_extracts(server, tmp_path):
    download(resource(), tmp_path, urls=[server.url])
    assert (tmp_path / MARKER).read_bytes() == b"2008_000001\n"
    assert (tmp_path / VOC2012.filename).read_bytes() == VOC_TAR
    assert not (tmp_path / (VOC2012.filename + ".part")).exists()


def test_partial_file_is_resumed_with_a_range_request(server, tmp_path):
    (tmp_path / (VOC2012.filename + ".part")).write_bytes(VOC_TAR[:30_000])
    seen = []
    download(resource(), tmp_path, urls=[server.url], progress=lambda done, total: seen.append((done, total)))
    assert server.requests[0]["Range"] == "bytes=30000-"
    assert (tmp_path / VOC2012.filename).read_bytes() == VOC_TAR
    assert seen[-1] == (len(VOC_TAR), len(VOC_TAR))


def test_present_data_makes_no_request(server, tmp_path):
    download(resource(), tmp_path, urls=[server.url])
    download(resource(), tmp_path, urls=[server.url])
    assert len(server.requests) == 1


def test_wrong_md5_extracts_nothing(server, tmp_path):
    with pytest.raises(DownloadError, match=f"MD5 {VOC_MD5} does not match the expected 0+"):
        download(resource("0" * 32), tmp_path, urls=[server.url])
    assert not (tmp_path / "VOCdevkit").exists()
    assert not (tmp_path / VOC2012.filename).exists()


def test_tar_put_by_hand_is_used_without_network(tmp_path):
    (tmp_path / VOC2012.filename).write_bytes(VOC_TAR)
    download(resource(), tmp_path, urls=["http://127.0.0.1:9/never-contacted"])
    assert (tmp_path / MARKER).is_file()


def test_unreachable_server_says_where_to_put_the_tar(tmp_path):
    closed = "http://127.0.0.1:9/VOCtrainval_11-May-2012.tar"  # discard port: nothing listens
    with pytest.raises(DownloadError, match=rf"put VOCtrainval_11-May-2012.tar in {tmp_path}") as error:
        download(resource(), tmp_path, urls=[closed])
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("evil", ["../evil.txt", "/tmp/fastseg-evil.txt", "ok/../../evil.txt"])
def test_path_traversal_tar_is_refused_whole(tmp_path, evil):
    archive = tmp_path / "evil.tar"
    archive.write_bytes(make_tar({"good.txt": b"fine", evil: b"pwned"}))
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(DownloadError, match="refusing to extract"):
        safe_extract(archive, target)
    assert list(target.iterdir()) == []
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/fastseg-evil.txt").exists()


def test_symlink_out_of_target_is_refused(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "../../etc/passwd"
        tar.addfile(link)
    archive = tmp_path / "link.tar"
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(DownloadError, match="link points outside"):
        safe_extract(archive, tmp_path / "out")


def test_cli_download_success_and_failure(server, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(
        main, ["download", "--root", str(tmp_path / "a"), "--url", server.url, "--md5", VOC_MD5]
    )
    assert ok.exit_code == 0, ok.output
    assert "VOC 2012 ready" in ok.output
    bad = runner.invoke(
        main, ["download", "--root", str(tmp_path / "b"), "--url", server.url, "--md5", "1" * 32]
    )
    assert bad.exit_code == 1
    error_lines = [line for line in bad.output.splitlines() if line.startswith("Error: ")]
    assert len(error_lines) == 1 and "does not match" in error_lines[0]
    assert "Traceback" not in bad.output
