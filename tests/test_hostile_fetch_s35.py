"""Session 35's hostile pass over `fastseg download`'s fetch: redirects a mirror should not be
followed (another scheme, a downgrade, a loop, a body that never ends), a server that trickles its
headers, and the answers a resume can meet (odd lengths and ranges, 416, a hang-up, a 1 MB header).
Each mirror that misbehaves is one line and the next is tried; the `.part` keeps only bytes that
agree. Each test named a defect failed before its fix; the others pin what already behaved."""

import contextlib
import email.message
import io
import socket
import threading
import time
from urllib.request import Request

import pytest
from test_hostile_fetch_archive_s34 import HALF, PAYLOAD, TAR_NAME, answer_whole, download_into, scripted

from fastseg.errors import DownloadError

__all__ = ["scripted"]  # session 34's local HTTP server fixture, used here by name


def failed_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("failed: ")]


def good_after(answer_first):
    """An answer for `scripted`: `answer_first` for the first request, the right answer after it."""

    def answer(handler, number, start):
        if number == 0:
            answer_first(handler, start)
        else:
            answer_whole(handler, start)

    return answer


@pytest.fixture
def listener():
    """A TCP port on 127.0.0.1 that counts the connections made to it (an FTP server's stand-in)."""
    accepted = []
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                connection, _ = server.accept()
                accepted.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


def redirect_to(location: str):
    def answer(handler, start):
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return answer


# redirects


def test_a_redirect_to_ftp_is_that_mirrors_failure_and_nothing_connects(scripted, tmp_path, listener):
    """A mirror answering `302 Location: ftp://...`: urllib followed it (its FTP handler connected
    to the host named, in plain text, without Range). Only http(s) redirects are followed now: the
    mirror fails in one line and the next one is tried."""
    port, accepted = listener
    url, asked = scripted(good_after(redirect_to(f"ftp://127.0.0.1:{port}/{TAR_NAME}")))
    lines = []
    download_into(tmp_path, [url, url + "?mirror"], log=lines.append, timeout=2)
    assert failed_lines(lines) == [
        f"failed: redirected to ftp://127.0.0.1:{port}/{TAR_NAME}, not followed (only http and https are)"
    ]
    assert accepted == [] and (tmp_path / TAR_NAME).read_bytes() == PAYLOAD


def test_a_redirect_to_a_local_file_is_never_read(scripted, tmp_path):
    """`302 Location: file:///...` naming a file that holds the very tar: urllib already refused
    it (its own scheme list); it stays refused, in the same words as ftp's, and nothing is read."""
    secret = tmp_path / "local.tar"
    secret.write_bytes(PAYLOAD)
    url, asked = scripted(good_after(redirect_to(secret.as_uri())))
    root = tmp_path / "root"
    lines = []
    download_into(root, [url, url + "?mirror"], log=lines.append)
    uri = secret.as_uri()  # its first 80 characters and a mark where the temporary path is longer
    shown_url = uri if len(uri) <= 80 else uri[:80] + "..."
    assert failed_lines(lines) == [
        f"failed: redirected to {shown_url}, not followed (only http and https are)"
    ]
    assert asked == [None, None]  # the second mirror fetched the file


def redirect_from(source: str, location: str):
    """What the redirect handler does with `302 Location: location` answered to `source`."""
    from fastseg.data.fetch import NotTheFile, opener

    shared = next(handler for handler in opener().handlers if hasattr(handler, "http_error_302"))
    handler = type(shared)()  # a fresh one: the module's own keeps its opener
    headers = email.message.Message()
    headers["Location"] = location
    opened = []
    handler.parent = type(
        "Parent", (), {"open": lambda self, request, timeout: opened.append(request.full_url)}
    )()
    try:
        request = Request(source)
        request.timeout = 5  # as the opener sets it
        handler.http_error_302(request, io.BytesIO(b""), 302, "Found", headers)
    except NotTheFile as error:
        return str(error)
    return opened


def test_https_is_never_downgraded_to_http_and_http_may_upgrade():
    """An https mirror sending the download to plain http: the user chose https, so the bytes
    could be read or changed on the way; that mirror fails instead (a plain http URL given as a
    mirror is still fetched: that is the user's choice). http -> https, https -> https follow."""
    assert redirect_from("https://mirror.example/x.tar", "http://other.example/x.tar") == (
        "redirected from https to http://other.example/x.tar, not followed (only to https)"
    )
    assert redirect_from("http://mirror.example/x.tar", "https://other.example/x.tar") == [
        "https://other.example/x.tar"
    ]
    assert redirect_from("https://mirror.example/x.tar", "/y.tar") == ["https://mirror.example/y.tar"]


def test_a_redirect_loop_is_one_line(scripted, tmp_path):
    """A mirror redirecting to itself: urllib stopped after 4 visits in 3 lines of words (the
    "infinite loop" message); one short line now."""
    url, asked = scripted(lambda handler, number, start: redirect_to(handler.path)(handler, start))
    lines = []
    with pytest.raises(DownloadError):
        download_into(tmp_path, [url], log=lines.append)
    assert failed_lines(lines) == [f"failed: a redirect loop (back to {url})"]
    assert len(asked) == 1


def test_more_redirects_than_the_bound_is_one_line(scripted, tmp_path):
    url, asked = scripted(lambda handler, number, start: redirect_to(f"/hop{number}")(handler, start))
    lines = []
    with pytest.raises(DownloadError):
        download_into(tmp_path, [url], log=lines.append)
    assert failed_lines(lines) == ["failed: more than 10 redirects"]
    assert len(asked) == 11


def test_the_body_of_a_redirect_is_never_read(scripted, tmp_path):
    """A 302 whose body trickles a byte every 0.2 s (or streams without end): urllib read the
    body whole before following (`fp.read()`), so the download waited as long as the server liked,
    holding all of it in memory. The body is not read now; the redirect is followed at once."""

    def answer(handler, number, start):
        if number == 0:
            handler.send_response(302)
            handler.send_header("Location", "/elsewhere")
            handler.end_headers()  # no length: the body ends when the connection does
            for _ in range(30):  # 6 s if nobody hangs up
                handler.wfile.write(b"x")
                handler.wfile.flush()
                time.sleep(0.2)
        else:
            answer_whole(handler, start)

    url, asked = scripted(answer)
    began = time.monotonic()
    download_into(tmp_path, [url], timeout=1)
    assert time.monotonic() - began < 3
    assert (tmp_path / TAR_NAME).read_bytes() == PAYLOAD


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("http://[::1", "redirected to an address that is no URL ('http://[::1')"),
        (
            "gopher://\u00e9\u00e9/x",
            "redirected to gopher://%E9%E9/x, not followed (only http and https are)",
        ),
        (
            "file:///" + "a" * 60_000,
            "redirected to file:///" + "a" * 72 + "..., not followed (only http and https are)",
        ),
    ],
)
def test_a_garbage_location_is_one_short_line(scripted, tmp_path, location, reason):
    """Locations that are no URL, not ASCII, or 60 kB long: one line each, no longer than a few
    hundred characters (urllib's refusal quoted all 60,000), and the next mirror is tried."""
    url, asked = scripted(good_after(redirect_to(location)))
    lines = []
    download_into(tmp_path, [url, url + "?mirror"], log=lines.append)
    assert failed_lines(lines) == [f"failed: {reason}"]
    assert (tmp_path / TAR_NAME).read_bytes() == PAYLOAD


# headers that never end


def trickle(data: bytes):
    def answer(handler, start):
        for index in range(len(data)):
            handler.wfile.write(data[index : index + 1])
            handler.wfile.flush()
            time.sleep(0.2)

    return answer


def continue_flood(handler, start):
    for _ in range(300):  # 6 s if nobody hangs up
        handler.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        handler.wfile.flush()
        time.sleep(0.02)


@pytest.mark.parametrize(
    "answer_first",
    [
        trickle(b"HTTP/1.1 200 OK" + b"\x20" * 20),
        trickle(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 20),
        continue_flood,
    ],
    ids=["status-line", "headers", "100-continue"],
)
def test_headers_that_never_end_make_that_mirror_down(scripted, tmp_path, monkeypatch, answer_first):
    """A server that sends its status line or headers a byte every 0.2 s (or 100 Continue after
    100 Continue): each read's timeout (1 s here) was never reached, so the download waited as
    long as the server liked. The whole wait for headers is bounded now (`HEADERS_DEADLINE`)."""
    monkeypatch.setattr("fastseg.data.fetch.HEADERS_DEADLINE", 1.0, raising=False)
    url, asked = scripted(good_after(answer_first))
    partial = tmp_path / f"{TAR_NAME}.part"
    partial.write_bytes(PAYLOAD[:HALF])
    lines = []
    began = time.monotonic()
    download_into(tmp_path, [url, url + "?mirror"], log=lines.append, timeout=1)
    assert time.monotonic() - began < 4
    assert failed_lines(lines) == ["failed: the server sent no complete headers in 1 s"]
    assert asked == [HALF, HALF] and (tmp_path / TAR_NAME).read_bytes() == PAYLOAD


# what a resume can meet


def answer_with(status: int, headers: dict[str, str], body: bytes | None = PAYLOAD):
    def answer(handler, start):
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        if body:
            handler.wfile.write(body)

    return answer


def hang_up(handler, start):
    handler.close_connection = True  # not a byte written


def huge_header(handler, start):
    handler.send_response(200)
    handler.send_header("X-Junk", "a" * (1 << 20))
    handler.end_headers()
    handler.wfile.write(PAYLOAD)


WHOLE = len(PAYLOAD)
HOSTILE = {
    "length-negative": answer_with(200, {"Content-Length": "-5"}),
    "length-huge": answer_with(200, {"Content-Length": str(10**30)}),
    "length-no-number": answer_with(200, {"Content-Length": "lots"}),
    "range-after-asked": answer_with(
        206, {"Content-Range": f"bytes {HALF + 7}-{WHOLE - 1}/{WHOLE}"}, PAYLOAD[HALF + 7 :]
    ),
    "range-before-asked": answer_with(206, {"Content-Range": f"bytes 10-{WHOLE - 1}/{WHOLE}"}, PAYLOAD[10:]),
    "range-unreadable": answer_with(206, {"Content-Range": "bytes many"}, PAYLOAD[HALF:]),
    "416-longer-file": answer_with(416, {"Content-Range": f"bytes */{WHOLE}", "Content-Length": "0"}, None),
    "hang-up": hang_up,
    "1-MB-header": huge_header,
}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_answer_to_a_resume_is_one_line_and_keeps_the_agreeing_bytes(scripted, tmp_path, name):
    """Each answer from a mirror asked to resume half the tar: the download either succeeds or
    fails in one short line; the `.part` then holds the tar's first bytes, at least the half it
    had, never other bytes (the same server answers every request, so it is asked again too)."""
    url, asked = scripted(lambda handler, number, start: HOSTILE[name](handler, start))
    partial = tmp_path / f"{TAR_NAME}.part"
    partial.write_bytes(PAYLOAD[:HALF])
    try:
        download_into(tmp_path, [url], timeout=2)
    except DownloadError as error:
        message = str(error)
        assert "\n" not in message and len(message) < 400, message
        held = partial.read_bytes()
        assert len(held) >= HALF and PAYLOAD.startswith(held)
    else:
        assert (tmp_path / TAR_NAME).read_bytes() == PAYLOAD
    download_into(tmp_path, [good_url(scripted)])
    assert (tmp_path / TAR_NAME).read_bytes() == PAYLOAD


def good_url(scripted) -> str:
    return scripted(lambda handler, number, start: answer_whole(handler, start))[0]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("range-after-asked", f"the server sent the bytes from {HALF + 7}, not from {HALF} as asked"),
        ("range-before-asked", "the server sent the bytes from 10, not from 0 as asked"),
        (
            "range-unreadable",
            "a partial answer (HTTP 206) that does not say which bytes it holds (no readable Content-Range)",
        ),  # fmt: skip
        ("416-longer-file", f"HTTP 416: the server's file has {WHOLE} bytes, the partial download {HALF}"),
    ],
)
def test_a_mirror_misplacing_its_bytes_leaves_the_partial_download_to_the_next(
    scripted, tmp_path, name, reason
):
    """A 206 not from the byte asked (or not saying where from) was asked again for the whole file
    after the `.part` was deleted; the second 206 was written at byte 0 whatever it held, the MD5
    failed, the download was removed, and the good mirror after it was never tried. A 416 naming a
    file longer than the `.part` had it taken as whole: MD5 failed, removed. Such a mirror fails in
    one line now (a 206 from before the byte asked is still asked again, the `.part` kept), and
    the next mirror resumes the untouched `.part`."""
    url, asked = scripted(lambda handler, number, start: HOSTILE[name](handler, start))
    good, good_asked = scripted(lambda handler, number, start: answer_whole(handler, start))
    (tmp_path / f"{TAR_NAME}.part").write_bytes(PAYLOAD[:HALF])
    lines = []
    download_into(tmp_path, [url, good], log=lines.append)
    assert failed_lines(lines) == [f"failed: {reason}"]
    assert good_asked == [HALF] and (tmp_path / TAR_NAME).read_bytes() == PAYLOAD


def test_a_reason_phrase_of_60_kb_is_cut_short(scripted, tmp_path):
    """`HTTP/1.1 404 <60,000 characters>`: the reason was quoted whole in the error line."""

    def answer(handler, start):
        handler.wfile.write(b"HTTP/1.1 404 " + b"no " * 20_000 + b"\r\nContent-Length: 0\r\n\r\n")

    url, asked = scripted(good_after(answer))
    lines = []
    download_into(tmp_path, [url, url + "?mirror"], log=lines.append)
    assert failed_lines(lines) == [("failed: HTTP 404 " + "no " * 100)[:208] + "..."]
