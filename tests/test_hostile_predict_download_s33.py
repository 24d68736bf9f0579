"""Session 33's stranger's pass over `predict` (a torch model, no --tile), `download` and `demo`:
each test is a defect found by attacking them, and failed before its fix."""

import csv
import hashlib
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from click.testing import CliRunner
from model_files import save_untrained_voc_model
from PIL import Image
from test_download import make_tar

from cli.main import main


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_untrained_voc_model(tmp_path_factory.mktemp("model") / "model.pth", 32)


def noise(path, width=20, height=16):
    rng = np.random.default_rng(width * 1000 + height)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path, format="PNG")


def predict(model_file, *arguments):
    return CliRunner().invoke(main, ["predict", "--model", str(model_file), "--quiet", "--num-workers", "0",
                                     *map(str, arguments)])  # fmt: skip


def csv_rows(path):
    with path.open(encoding="utf-8", newline="") as file:  # UTF-8, or UnicodeDecodeError
        return list(csv.DictReader(file))


def test_a_file_name_that_is_not_utf8_is_logged_escaped_and_found_again_on_resume(model_file, tmp_path):
    """A name with bytes that are not UTF-8 (Linux allows them) stopped the whole run with a
    UnicodeEncodeError traceback while writing its row, and predictions.csv was lost. Its row now
    names it with the bytes escaped (`\\xff`), in a file that stays UTF-8, and `--skip-existing`
    finds that row again (the earlier figures, not a second row)."""
    source = tmp_path / "in"
    source.mkdir()
    odd = os.fsdecode(os.fsencode(source) + b"/odd\xff\xfe.png")
    noise(odd)
    noise(source / "plain.png")
    out = tmp_path / "out"
    result = predict(model_file, source, "--out", out)
    assert result.exit_code == 0, result.output
    assert "2 segmented, 0 failed" in result.output
    assert (out / os.fsdecode(b"odd\xff\xfe.png")).is_file()
    rows = csv_rows(out / "predictions.csv")
    assert sorted(row["path"] for row in rows) == [f"{source}/odd\\xff\\xfe.png", f"{source}/plain.png"]
    assert all(row["status"] == "ok" for row in rows)
    first = {row["path"]: row for row in rows}

    result = predict(model_file, source, "--out", out, "--skip-existing")
    assert result.exit_code == 0, result.output
    assert "0 segmented, 0 failed, 2 skipped" in result.output
    again = csv_rows(out / "predictions.csv")
    assert len(again) == 2 and all(row["status"] == "skipped" for row in again)
    for row in again:  # the earlier run's row, time included: found by its escaped name
        assert row["seconds"] == first[row["path"]]["seconds"] != ""


def test_a_failed_file_whose_name_holds_a_newline_is_one_line(model_file, tmp_path):
    """A bad file named `a<newline>b.png` was reported on two lines of stderr (and a name with
    bytes that are not UTF-8 is escaped too): one failure, one line, as a reader or a log counts."""
    source = tmp_path / "in"
    source.mkdir()
    (source / "a\nb.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    noise(source / "plain.png")
    result = predict(model_file, source, "--out", tmp_path / "out")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[-1].startswith("1 segmented, 1 failed")
    assert len(lines) == 2 and lines[0].startswith(f"{source}/a\\nb.png: corrupt or truncated image")


def test_a_huge_size_is_one_line_not_a_memory_traceback(model_file, tmp_path):
    """`--size 100000000` was a numpy `_ArrayMemoryError` traceback (a 107 PiB blank input for the
    file that ran out of memory); the side is bounded where it is given and where the inputs are
    made (a model file's own size, `report`), before anything is allocated."""
    from fastseg.errors import FastsegError
    from fastseg.inference.files import ImageFiles
    from fastseg.model.config import MAX_SIZE

    noise(tmp_path / "a.png")
    result = predict(model_file, tmp_path / "a.png", "--out", tmp_path / "out", "--size", 100_000_000)
    assert result.exit_code == 1
    message = f"input side 100000000 is not within 32 to {MAX_SIZE} pixels"
    assert result.output == f"Error: {message}: choose another --size, or --tile for big images\n"
    assert not (tmp_path / "out").exists()
    with pytest.raises(FastsegError, match=message):
        ImageFiles([tmp_path / "a.png"], 100_000_000, "squish", (0.5,) * 3, (0.25,) * 3)


def test_a_predictions_csv_of_the_users_own_is_not_replaced(model_file, tmp_path):
    """`--out` a folder of the user's holding their own `predictions.csv` (their labels, another
    tool's scores): predict replaced it without a word, the one output that was not guarded. It
    is now refused like a mask path holding a user's file (before any image is done), replaced
    with `--replace-foreign`, and fastseg's own earlier log is still replaced without asking."""
    noise(tmp_path / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "predictions.csv"
    mine.write_text("image,label\ncat.jpg,cat\n")
    result = predict(model_file, tmp_path / "a.png", "--out", out)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {mine}: an existing file that fastseg did not write as a predictions log; "
        "choose another output or use --replace-foreign to replace it\n"
    )
    assert mine.read_text() == "image,label\ncat.jpg,cat\n" and sorted(out.iterdir()) == [mine]

    for extra in (["--replace-foreign"], []):  # the user's file, then fastseg's own: replaced
        result = predict(model_file, tmp_path / "a.png", "--out", out, *extra)
        assert result.exit_code == 0, result.output
        assert [row["path"] for row in csv_rows(mine)] == [str(tmp_path / "a.png")]


def dead_process_id():
    """A process id no longer alive: what a `kill -9`ed fastseg leaves in its temporaries' names."""
    import subprocess
    import sys

    ended = [sys.executable, "-c", "import os; print(os.getpid())"]
    return int(subprocess.run(ended, capture_output=True, text=True).stdout)


def test_a_killed_predicts_temporaries_in_subfolders_are_removed_by_the_next_run(model_file, tmp_path):
    """kill -9 while a folder's images were written left `.a.png.PID.tmp` (and the overlay's) in
    `--out`'s subfolders forever: only `--out` itself was cleared, though the README says the next
    run removes what a dead process left. Every folder the run writes into is cleared now; a live
    process's temporary (another predict writing there now) is left alone."""
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    noise(source / "sub" / "a.png")
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    dead = dead_process_id()
    stale = [out / "sub" / f".a.png.{dead}.tmp", out / "sub" / f".a.overlay.jpg.{dead}.tmp"]
    live = out / "sub" / f".b.png.{os.getppid()}.tmp"
    for extra in ([], ["--skip-existing"]):  # a rerun, and a resumed run that redoes nothing
        for path in [*stale, live]:
            path.write_bytes(b"\x89PNG half")
        result = predict(model_file, source, "--out", out, "--overlay", *extra)
        assert result.exit_code == 0, result.output
        left = sorted(path.name for path in (out / "sub").iterdir())
        assert left == sorted([live.name, "a.png", "a.overlay.jpg"])


# download: files served from 127.0.0.1 by a script of answers, one per request


def tar_of(members):
    """An uncompressed tar of {name: bytes}."""
    return make_tar(members)


MARKER = "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt"
PAYLOAD = tar_of({"VOCdevkit/VOC2012/JPEGImages/a.jpg": bytes(range(256)) * 400, MARKER: b"a\n"})
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()


@pytest.fixture
def scripted():
    """`start(answer)`: a server on 127.0.0.1 calling `answer(handler, number, range_start)` for
    each GET (number counts from 0; range_start is the asked `Range: bytes=N-`, or None); returns
    the URL. Stopped after the test."""
    servers = []

    def start(answer):
        calls = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                asked = self.headers.get("Range")
                start = int(asked.removeprefix("bytes=").split("-")[0]) if asked else None
                calls.append(start)
                answer(self, len(calls) - 1, start)

            def log_message(self, *args):
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}/VOCtrainval_11-May-2012.tar"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def send(handler, body, status=200, start=0, total=None, length=None):
    handler.send_response(status)
    if status == 206:
        handler.send_header("Content-Range", f"bytes {start}-{start + len(body) - 1}/{total}")
    handler.send_header("Content-Length", str(len(body) if length is None else length))
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()


def download_into(root, url, md5=PAYLOAD_MD5):
    from fastseg.data.voc import download_voc

    return download_voc(root, urls=[url], md5=md5, progress=None, timeout=5)


def test_two_downloads_into_one_root_at_once_the_second_is_refused(scripted, tmp_path, monkeypatch):
    """Two `fastseg download --root R` at once both appended to R's one `.part` file: the second
    finished the file, renamed and extracted it while the first still held it open, and the first
    ended in a FileNotFoundError traceback (its `.part` was gone). The second is now refused in one
    line while the first runs, and the first completes."""
    monkeypatch.setattr("fastseg.data.fetch.CHUNK", 4096)  # the first half is on disk before the rest comes
    half = 4096 * (len(PAYLOAD) // 8192)  # whole chunks: all of it is written before the wait
    release = threading.Event()

    def answer(handler, number, start):
        if number == 0:  # the first download: half now, the rest once the second has been tried
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(PAYLOAD)))
            handler.end_headers()
            handler.wfile.write(PAYLOAD[:half])
            handler.wfile.flush()
            release.wait(10)
            handler.wfile.write(PAYLOAD[half:])
        else:
            body = PAYLOAD[start or 0 :]
            send(handler, body, 206 if start else 200, start or 0, len(PAYLOAD))

    url = scripted(answer)
    root = tmp_path / "data"
    first: dict = {}

    def run_first():
        try:
            first["folder"] = download_into(root, url)
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            first["error"] = error

    thread = threading.Thread(target=run_first)
    thread.start()
    partial = root / "VOCtrainval_11-May-2012.tar.part"
    for _ in range(500):  # the first is writing (its file's buffer holds the last bytes)
        if partial.is_file() and partial.stat().st_size >= 8192:
            break
        threading.Event().wait(0.01)
    from fastseg.errors import DownloadError

    try:
        busy = r"another fastseg download \(process \d+\) is using this folder; wait for it to end"
        with pytest.raises(DownloadError, match=busy):
            download_into(root, url)
    finally:
        release.set()
        thread.join(20)
    assert "error" not in first, first
    assert first["folder"] == root / "VOCdevkit" / "VOC2012" and (root / MARKER).read_bytes() == b"a\n"
    assert (root / "VOCtrainval_11-May-2012.tar").read_bytes() == PAYLOAD


def test_a_link_on_disk_leading_out_of_the_root_is_named_and_the_verified_tar_kept(tmp_path):
    """`ROOT/VOCdevkit` a link to another disk: tarfile's `data` filter refuses to write through
    it (downloads never write outside their root), but the message called the verified tar "not a
    readable tar archive" and said to delete it. It now says what was refused and why, and that
    the tar is fine."""
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / "VOCtrainval_11-May-2012.tar").write_bytes(PAYLOAD)
    (root / "VOCdevkit").symlink_to(elsewhere)
    result = CliRunner().invoke(main, ["download", "--root", str(root), "--md5", PAYLOAD_MD5, "--quiet",
                                       "--url", "http://127.0.0.1:9/x.tar"])  # fmt: skip
    assert result.exit_code == 1
    last = result.output.splitlines()[-1]
    assert last.startswith(f"Error: {root}/VOCtrainval_11-May-2012.tar: refusing to extract 'VOCdevkit/")
    assert "which is outside the destination" in last
    assert "not a readable tar" not in last and "delete it" not in last
    assert f"the tar is kept: remove the link in {root} that leads out of it, or choose another root" in last
    assert list(elsewhere.iterdir()) == [] and (root / "VOCtrainval_11-May-2012.tar").read_bytes() == PAYLOAD


def test_a_partial_file_that_is_a_link_is_never_written_through(scripted, tmp_path):
    """`ROOT/<tar>.part` a symbolic link (planted in a shared folder, say) to a file outside the
    root: the download was written through it, out of the root, and the link then renamed into
    the tar's place. It is refused in one line now; nothing outside the root is written."""
    from fastseg.errors import DownloadError

    url = scripted(lambda handler, number, start: send(handler, PAYLOAD))
    root, outside = tmp_path / "root", tmp_path / "outside.bin"
    root.mkdir()
    (root / "VOCtrainval_11-May-2012.tar.part").symlink_to(outside)
    refused = r"\.tar\.part: a symbolic link, not a partial download; remove it"
    with pytest.raises(DownloadError, match=refused):
        download_into(root, url)
    assert not outside.exists() and not (root / "VOCtrainval_11-May-2012.tar").exists()
    outside.write_bytes(PAYLOAD[:100])  # a link to an existing file: not appended to either
    with pytest.raises(DownloadError, match="a symbolic link, not a partial download"):
        download_into(root, url)
    assert outside.read_bytes() == PAYLOAD[:100]


def test_a_folder_where_the_tar_goes_is_one_line_before_the_download(scripted, tmp_path):
    """A folder named like the tar in the root: the whole archive was downloaded, then renaming it
    into place was an IsADirectoryError traceback. Refused in one line before any request now."""
    from fastseg.errors import DownloadError

    asked = []
    url = scripted(lambda handler, number, start: (asked.append(number), send(handler, PAYLOAD)))
    (tmp_path / "VOCtrainval_11-May-2012.tar").mkdir()
    refused = r"\.tar: a folder where the tar goes; remove it or choose another root"
    with pytest.raises(DownloadError, match=refused):
        download_into(tmp_path, url)
    assert asked == [] and not (tmp_path / "VOCtrainval_11-May-2012.tar.part").exists()


# demo


def real_voc_lookalike(data):
    """What `fastseg download` leaves under `data` (its default --root): a VOC whose ids overlap
    the demo's (`2007_000032` is in both) and whose list files the demo writes too."""
    voc = data / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation", "Annotations"):
        (voc / sub).mkdir(parents=True)
    noise(voc / "JPEGImages" / "2007_000032.jpg")
    Image.new("P", (20, 16)).save(voc / "SegmentationClass" / "2007_000032.png")
    (voc / "Annotations" / "2007_000032.xml").write_text("<annotation/>")
    for name in ("train", "val", "trainval"):
        (voc / "ImageSets" / "Segmentation" / f"{name}.txt").write_text("2007_000032\n")
    return {path: path.read_bytes() for path in data.rglob("*") if path.is_file()}


def test_demo_never_writes_into_a_data_set_it_did_not_make(tmp_path, monkeypatch):
    """`fastseg demo --out .` beside `fastseg download`'s `data/`: the demo wrote its generated
    set into `data/VOCdevkit/VOC2012`, replacing the real VOC's list files and its images and
    masks of the same ids (2007_000000-79), without a word. It is refused in one line now, before
    anything is written or trained."""
    from fastseg import demo

    monkeypatch.setattr(demo, "train", lambda *args, **kwargs: pytest.fail("trained"))
    before = real_voc_lookalike(tmp_path / "data")
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path), "--epochs", "1", "--quiet"])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {tmp_path / 'data'}: holds files fastseg demo did not write (")
    assert result.output.endswith("); choose another --out\n") and len(result.output.splitlines()) == 1
    assert {path: path.read_bytes() for path in (tmp_path / "data").rglob("*") if path.is_file()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]


def test_demos_refusal_naming_an_out_with_a_newline_is_one_line(tmp_path, monkeypatch):
    """`--out` with a newline in its name split the demo's `Error:` line in two."""
    from fastseg import demo

    monkeypatch.setattr(demo, "train", lambda *args, **kwargs: pytest.fail("trained"))
    out = tmp_path / "de\nmo"
    real_voc_lookalike(out / "data")
    result = CliRunner().invoke(main, ["demo", "--out", str(out), "--epochs", "1", "--quiet"])
    assert result.exit_code == 1 and len(result.output.splitlines()) == 1
    assert result.output.startswith(f"Error: {tmp_path}/de\\nmo/data: holds files fastseg demo did not write")


def test_demo_data_of_an_earlier_or_killed_demo_is_its_own(tmp_path, monkeypatch):
    """Run twice, or again after a `kill -9` while it generated its data (some images, a dead
    process's temporary, no list files yet): the demo's own data is recognised and regenerated, the
    same bytes; every file is written whole (fastseg.atomic), so no half image is left."""
    from fastseg import demo
    from fastseg.atomic import TEMPORARY
    from fastseg.data.demo_voc import make_demo_voc

    class Trained(Exception):
        pass

    def stop(*args, **kwargs):
        raise Trained

    monkeypatch.setattr(demo, "train", stop)
    with pytest.raises(Trained):
        demo.run_demo(tmp_path / "out", epochs=1, show_progress=False)
    data = tmp_path / "out" / "data"
    first = {path: path.read_bytes() for path in data.rglob("*") if path.is_file()}
    assert len(first) == 80 + 80 + 3 and not [path for path in first if TEMPORARY.match(path.name)]
    with pytest.raises(Trained):  # run twice
        demo.run_demo(tmp_path / "out", epochs=1, show_progress=False)
    assert {path: path.read_bytes() for path in data.rglob("*") if path.is_file()} == first

    killed = tmp_path / "killed" / "data"
    make_demo_voc(killed)
    voc = killed / "VOCdevkit" / "VOC2012"
    for listing in (voc / "ImageSets" / "Segmentation").iterdir():
        listing.unlink()
    for image in sorted((voc / "JPEGImages").iterdir())[40:]:
        image.unlink()
    (voc / "JPEGImages" / f".2007_000040.jpg.{dead_process_id()}.tmp").write_bytes(b"\xff\xd8 half")
    with pytest.raises(Trained):
        demo.run_demo(tmp_path / "killed", epochs=1, show_progress=False)
    again = {path.relative_to(killed): path.read_bytes() for path in killed.rglob("*") if path.is_file()}
    assert again == {path.relative_to(data): content for path, content in first.items()}


def test_skip_existing_never_replaces_a_users_picture_at_a_mask_path(model_file, tmp_path):
    """`--skip-existing` let every existing output path pass unguarded: a user's own picture at an
    image's mask path (an RGB PNG, which is no mask to read back) was replaced by the mask without
    `--replace-foreign`, where the same run without the flag refuses it. It is refused now; a file
    no image reader opens is still taken for an earlier output cut short (tests/test_predict.py)."""
    noise(tmp_path / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    noise(out / "a.png", 30, 10)  # the user's own picture where a's mask would go
    photo = (out / "a.png").read_bytes()
    result = predict(model_file, tmp_path / "a.png", "--out", out, "--skip-existing")
    assert result.exit_code == 1
    assert "0 segmented, 1 failed; summary" in result.output
    assert f"{out / 'a.png'}: an existing file that fastseg did not write as a mask" in result.output
    assert (out / "a.png").read_bytes() == photo
    assert [row["status"] for row in csv_rows(out / "predictions.csv")] == ["failed"]


def test_an_input_that_is_a_named_pipe_is_named_as_one(model_file, tmp_path):
    """A FIFO (or a device) given as an input was reported as "no such file or folder", though it
    is right there: the line now says what it is."""
    fifo = tmp_path / "camera.png"
    os.mkfifo(fifo)
    result = predict(model_file, fifo, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert result.output == f"Error: {fifo}: a named pipe (FIFO), not a regular file or folder\n"


@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_batch_size_beyond_any_index_is_as_big_as_the_inputs(model_file, tmp_path, workers):
    """`--batch-size 99999999999999999999` (above sys.maxsize) with a loader worker was a
    ValueError traceback from torch's batch sampler ("Stop argument for islice() must be ...");
    a batch is never bigger than the images there are."""
    for name in "ab":
        noise(tmp_path / f"{name}.png")
    huge = "99999999999999999999"  # the last --num-workers given counts
    result = predict(model_file, tmp_path / "a.png", tmp_path / "b.png", "--out", tmp_path / "out",
                     "--num-workers", workers, "--batch-size", huge)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 segmented, 0 failed" in result.output


@pytest.mark.parametrize("md5", ["abc", PAYLOAD_MD5 + "0", "g" * 32, ""])
def test_an_md5_that_is_no_md5_is_refused_before_the_download(scripted, tmp_path, md5):
    """A mistyped `--md5` (too short, not hex) can match nothing: the whole tar (2 GB) was
    downloaded, found "wrong" and deleted. It is one line before any request now: a usage error
    as the CLI reads its options, and the library's own line for a caller of `download_voc`."""
    from fastseg.data.voc import download_voc
    from fastseg.errors import DownloadError

    asked = []
    url = scripted(lambda handler, number, start: (asked.append(number), send(handler, PAYLOAD)))
    result = CliRunner().invoke(main, ["download", "--root", str(tmp_path / "data"), "--url", url,
                                       "--md5", md5, "--quiet"])  # fmt: skip
    assert result.exit_code == 2
    said = f"Error: Invalid value for '--md5': {md5!r} is no MD5 (32 hexadecimal digits)"
    assert result.output.strip().splitlines()[-1] == said
    expected = f"VOCtrainval_11-May-2012.tar: the expected MD5 {md5!r} is no MD5 (32 hexadecimal digits)"
    with pytest.raises(DownloadError, match=re.escape(expected)):
        download_voc(tmp_path / "data", urls=(url,), md5=md5)
    assert asked == [] and not (tmp_path / "data").exists()


def test_a_newline_in_a_url_or_root_leaves_every_download_line_one_line(tmp_path):
    """A newline in `--url` or `--root` (a pasted URL, a script's variable) split the progress
    lines and the final error in two: each is one line, the newline escaped."""
    root = tmp_path / "da\nta"
    result = CliRunner().invoke(main, ["download", "--root", str(root), "--quiet",
                                       "--url", "http://127.0.0.1:9/a\nb.tar"])  # fmt: skip
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert [line.split(" ")[0] for line in lines] == ["downloading", "failed:", "Error:"], lines
    assert lines[0] == "downloading http://127.0.0.1:9/a\\nb.tar"
    assert lines[-1].endswith(f"put VOCtrainval_11-May-2012.tar in {tmp_path}/da\\nta and run again")


def test_predicts_error_naming_a_folder_with_a_newline_is_one_line(model_file, tmp_path):
    """An `Error:` line names the path it is about: a newline in that name split it in two (the
    failures of single images were made one line each; this is the line that stops the run)."""
    noise(tmp_path / "a.png")
    (tmp_path / "file").write_text("a file, not a folder")
    out = tmp_path / "file" / "ma\nsks"
    result = predict(model_file, tmp_path / "a.png", "--out", out)
    assert result.exit_code == 1
    expected = f"{tmp_path}/file/ma\\nsks: cannot create the output folder ({tmp_path}/file is not a folder)"
    assert result.output == f"Error: {expected}\n"
