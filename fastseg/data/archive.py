"""A downloaded archive checked and unpacked: its MD5, and tar extraction that cannot escape its folder.

Every member is checked before the first is written, and the member that marks the data set as
complete can be written last, so its presence proves the rest is on disk. Only the standard
library is imported here.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from fastseg.errors import DownloadError, quoted, shown
from fastseg.paths import make_folders

CHUNK = 1 << 20  # bytes per MD5 update
# tarfile's `data` filter refusing a member while writing: what the checks before writing cannot
# see, a link already on disk (`ROOT/VOCdevkit` -> another disk). Not a damaged tar: it was
# reported as "not a readable tar archive; delete it".
FILTER_ERRORS: tuple[type[Exception], ...] = (tarfile.FilterError,) if hasattr(tarfile, "FilterError") else ()
MAX_LINK_HOPS = 40  # symlinks followed while checking one tar member, like the kernel's ELOOP limit
# Members read before a tar is refused. Every member's header is held while all are checked (about
# 450 bytes each) and each becomes a file: VOC 2012's tar holds about 40,000 members and SBD's about
# 34,000, so this is room to spare for them, while a tar of millions of empty members (1 GB of
# headers, a few MB gzipped) would take gigabytes of memory and minutes of file creation.
MAX_MEMBERS = 100_000
# Folders a member's path may go through. VOC's and SBD's go 5 deep; checking where a path lands
# takes time growing with the square of its depth (2,000 members 1,000 deep took 27 s).
MAX_DEPTH = 32
NAME_MAX, PATH_MAX = 255, 4096  # bytes of one name and of a whole path, as Linux allows them
BLOCK = 4096  # a file takes whole blocks of the disk: 40,000 small files take more than their sizes


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


def safe_extract(
    archive: Path, target: Path, last: str | None = None, progress: Callable[[int, int], None] | None = None
) -> None:
    """Extract a tar into `target` only if no member can land outside it; otherwise extract nothing.

    Every member is checked before the first is written: absolute names, `..` that climbs out,
    symlinks or hard links aiming outside, paths that leave through a symlink the archive itself
    creates, device files, and names too long or too deep for a file system are refused by name;
    a tar of more than `MAX_MEMBERS` members, or of more bytes than the disk has free, is refused
    whole. tarfile's `data` filter checks again while writing. `last` (a member name) is written
    after all others, so its presence proves the rest is. `progress(done, total)` follows the
    writing, member by member: VOC's 40,000 take tens of seconds, silent before.
    """
    target = Path(target)
    try:
        with tarfile.open(archive) as tar:
            members = _members(archive, tar)
            links = {
                PurePosixPath(member.name): PurePosixPath(member.linkname)
                for member in members
                if member.issym()
            }
            for member in members:
                problem = _problem(member, links)
                if problem:
                    raise DownloadError(
                        f"{archive}: refusing to extract {quoted(member.name, 100)} ({problem}); nothing was "
                        "extracted"
                    )
            space = _space_problem(members, target)
            if space:
                raise DownloadError(f"{archive}: refusing to extract: {space}; nothing was extracted "
                                    "(free some space, or choose another root)")  # fmt: skip
            if last is not None:
                members.sort(key=lambda member: PurePosixPath(member.name) == PurePosixPath(last))
            make_folders(target)
            extra: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(target, members=_reported(members, progress), **extra)
    except FILTER_ERRORS as error:  # a link already on disk in `target` leads out of it
        raise DownloadError(
            f"{archive}: refusing to extract {error.tarinfo.name!r} ({shown(error)}); the tar is kept: "
            f"remove the link in {target} that leads out of it, or choose another root"
        ) from None
    except tarfile.TarError as error:
        reason = _unreadable_tar(archive, error)
        raise DownloadError(
            f"{archive}: cannot extract, {reason}; delete it, and check the URL and the expected MD5"
        ) from None
    except OSError as error:
        raise DownloadError(f"{archive}: extracting into {target} failed ({error})") from None


def _members(archive: Path, tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Every member of `tar`, read one header at a time so that reading stops at `MAX_MEMBERS`
    (`getmembers` reads them all first)."""
    members = []
    while (member := tar.next()) is not None:
        if len(members) == MAX_MEMBERS:
            raise DownloadError(f"{archive}: refusing to extract: it holds more than {MAX_MEMBERS:,} members "
                                "(VOC 2012's tar holds about 40,000); nothing was extracted")  # fmt: skip
        members.append(member)
    return members


def _space_problem(members: list[tarfile.TarInfo], target: Path) -> str | None:
    """Why the members' files would not fit on `target`'s disk, or None if they would.

    Their sizes are added up from the headers before anything is written: a tar bomb (gigabytes of
    zeros gzipped to a few MB) or a disk too small for VOC's 2 GB is refused whole, instead of
    filling the disk and leaving half the files. A file already at a member's place (an earlier
    extraction stopped midway) is overwritten in place, so its size is space this one reuses."""
    folder = target
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    needed = 0
    for member in members:
        if member.isfile():
            needed += max(0, _blocks(member.size) - _blocks(_file_size(target / member.name)))
    if needed <= free:
        return None
    return f"its files need {needed / 2**20:.1f} MB, and {folder} has {free / 2**20:.1f} MB free"


def _blocks(size: int) -> int:
    """`size` bytes as the disk stores them: whole blocks."""
    return -(-size // BLOCK) * BLOCK


def _file_size(path: Path) -> int:
    """Size of the regular file at `path`; 0 if there is none (or it cannot be asked)."""
    try:
        status = path.lstat()
    except (OSError, ValueError):
        return 0
    return status.st_size if stat.S_ISREG(status.st_mode) else 0


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
    for path in (member.name, member.linkname):
        encoded = path.encode("utf-8", "surrogateescape")
        if len(encoded) >= PATH_MAX or any(len(part) > NAME_MAX for part in encoded.split(b"/")):
            return "a name too long for a file system"
        if len(PurePosixPath(path).parts) > MAX_DEPTH:
            return f"more than {MAX_DEPTH} folders deep"
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


def _reported(
    members: list[tarfile.TarInfo], progress: Callable[[int, int], None] | None
) -> Iterator[tarfile.TarInfo]:
    """`members`, each reported once written (when the next is asked for, and after the last)."""
    for done, member in enumerate(members):
        if progress is not None and done:
            progress(done, len(members))
        yield member
    if progress is not None and members:
        progress(len(members), len(members))
