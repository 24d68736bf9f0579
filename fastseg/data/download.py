"""Making a data set's archive present: the steps still missing, and only those.

Every step can be re-run after an interruption: a `.part` file is resumed (`fastseg.data.fetch`),
a tar already in the root (put there by hand when offline) is verified and used without
touching the network, and extracted data is recognised by a marker file so nothing is done twice.
The marker is extracted last (`fastseg.data.archive`), so its presence proves the rest of the
archive is on disk.

Only the standard library is imported here, so the CLI reads the resources' defaults for free and
the command starts at once. VOC 2012 (`fastseg.data.voc`) and SBD (`fastseg.data.sbd`) are two
`Resource`s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fastseg.data.archive import file_md5, safe_extract
from fastseg.data.fetch import TIMEOUT, Log, ProgressFactory, fetch_any, remove_file, silent
from fastseg.errors import DownloadError
from fastseg.folder_lock import holding
from fastseg.paths import UNUSABLE_PATH, expanded, make_folders, path_problem
from fastseg.progress_lines import LineThrottle
from fastseg.structured_files import file_kind

MD5_TEXT = re.compile(r"[0-9a-fA-F]{32}")


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


def download(
    resource: Resource,
    root: Path,
    progress: ProgressFactory | None = None,
    log: Log | None = None,
    timeout: float = TIMEOUT,
) -> Path:
    """Make `root/<resource.folder>` exist and return it, doing only the steps still missing.

    Extracted data -> nothing. A tar in `root` -> verify and extract, no network. Otherwise download
    to `<filename>.part` (resuming it), verify, and only then rename it, so a file named
    `<filename>` is always complete. A wrong MD5 removes the file: it can never become right.
    """
    log = log or silent
    root = expanded(root)  # `~nosuchuser/x` stays as written, as the shell leaves it
    folder = root / resource.folder
    try:  # a name over the file system's limit, a NUL: one line, not a traceback
        present = (root / resource.marker).is_file()
    except UNUSABLE_PATH as error:
        raise DownloadError(f"{root}: cannot be used as the root ({path_problem(error)})") from None
    if present:
        log(f"already present: {folder} (nothing to do)")
        return folder
    if not MD5_TEXT.fullmatch(resource.md5):  # it could match nothing: 2 GB fetched, then deleted
        raise DownloadError(f"{resource.filename}: the expected MD5 {resource.md5!r} is no MD5 "
                            "(32 hexadecimal digits)")  # fmt: skip
    try:
        make_folders(root)
    except OSError as error:
        raise DownloadError(f"{root}: cannot create the folder ({error.strerror})") from None
    # two at once appended to one `.part`, and the second renamed it while the first still wrote
    with holding(root, "download", "wait for it to end, then run this again", DownloadError):
        if (root / resource.marker).is_file():  # another download finished it while this one waited
            log(f"already present: {folder} (nothing to do)")
            return folder
        return _missing_steps(resource, root, folder, progress, log, timeout)


def _missing_steps(resource: Resource, root: Path, folder: Path, progress: ProgressFactory | None,
                   log: Log, timeout: float) -> Path:  # fmt: skip
    """`download`'s steps once it holds `root`: the tar (fetched, or the one put there), its MD5,
    the extraction."""
    archive = root / resource.filename
    if archive.is_file():
        log(f"using {archive}")
        log(f"checking MD5 of {archive}")
        verify_md5(archive, resource.md5)
    else:
        if archive.exists() or archive.is_symlink():  # the download could not be renamed there
            kind = ("a symbolic link to nothing" if not archive.exists()
                    else file_kind(archive.stat().st_mode))  # fmt: skip
            raise DownloadError(f"{archive}: {kind} where the tar goes; remove it or choose another root")
        partial = archive.with_name(archive.name + ".part")
        fetch_any(resource.urls, partial, root, progress=progress, log=log, timeout=timeout, md5=resource.md5)
        log(f"checking MD5 of {partial}")
        verify_md5(partial, resource.md5, downloaded=True)
        partial.replace(archive)
    log(f"extracting {archive} into {root}")
    throttle = LineThrottle()  # a line a tenth of the way at most, and every 30 s at most

    def extracted(done: int, total: int) -> None:
        if throttle.due(done, total):
            log(f"extracting: {done:,} of {total:,} files")

    safe_extract(archive, root, last=resource.marker, progress=extracted)
    if not (root / resource.marker).is_file():
        raise DownloadError(f"{archive}: extracted, but it holds no {resource.marker}")
    return folder


def verify_md5(path: Path, md5: str, downloaded: bool = False) -> None:
    """Raise unless `path` has MD5 `md5`. What this run `downloaded` is removed (re-reading it
    cannot fix it); a file that was there before is moved aside, never deleted: it may be a
    user's own file that only shares the name (issue #19)."""
    actual = file_md5(path)
    if actual != md5.lower() and downloaded:
        remove_file(path)
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
