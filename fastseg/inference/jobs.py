"""predict's jobs: the image files among its inputs, where each one's outputs go, and which
inputs cannot be done (an output that would overwrite an input, or another fastseg output, or a
file fastseg did not write)."""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fastseg.errors import FastsegError, clipped, shown
from fastseg.imaging.images import IMAGE_SUFFIXES
from fastseg.outputs import OutputRefused, guard, written_by_fastseg
from fastseg.paths import UNREADABLE_FOLDER, path_problem, walk
from fastseg.structured_files import file_kind


@dataclass(frozen=True)
class Job:
    """One input image and where its outputs go."""

    source: Path
    mask: Path

    @property
    def overlay(self) -> Path:
        return self.mask.with_suffix(".overlay.jpg")


def collect_jobs(inputs: Sequence[Path], out: Path, overlay: bool = False, force: bool = False,
                 skip_existing: bool = False) -> tuple[list[Job], list[tuple[Path, str]]]:  # fmt: skip
    """Image files among `inputs` (folders walked recursively) and their mirrored output paths.

    A file input lands in `out/<name>.png`, whatever its suffix: a file named on the command line
    is meant, and one that is no image fails by name (dropping it said "0 failed"); a folder's
    images are its files with an image suffix, and keep their path inside the folder. Inputs
    without any file to read are a `FastsegError`.
    A file given more than once (twice, via `dir/../dir`, a link, or inside a folder also given) is
    done once, under its first name. Returns (jobs, problems): an output that would overwrite an
    input, or that two different inputs would share, or that would replace a file fastseg did not
    write as that output (`fastseg.outputs`; `force` allows it, but never for an input), is a
    problem for that file only.
    """
    pairs: list[tuple[Path, Path]] = []
    unreadable: list[Path] = []  # folders this user may not list: their images cannot be done
    for given in inputs:
        given = Path(given)
        if given.is_dir():
            pairs += [(file, file.relative_to(given)) for file in image_files(given, out, unreadable)]
        elif given.is_file():  # named, so meant: read by its content whatever its suffix
            pairs.append((given, Path(given.name)))
        elif given.exists():  # a FIFO or a device: open() would wait on it, or read without end
            kind = file_kind(given.stat().st_mode)
            raise FastsegError(f"{shown(given)}: {kind}, not a regular file or folder")
        else:
            raise FastsegError(f"{shown(given)}: no such file or folder")
    if not pairs and unreadable:
        raise FastsegError(f"{shown(unreadable[0])}: {UNREADABLE_FOLDER}")
    if not pairs:  # "0 segmented, 0 failed", exit 0, looked like a finished job
        named = ", ".join(shown(path) for path in inputs[:3]) + (" ..." if len(inputs) > 3 else "")
        raise FastsegError(f"{named}: no image files (a folder's images are those named "
                           f"{', '.join(sorted(IMAGE_SUFFIXES))})")  # fmt: skip
    firsts = {}  # resolved source -> its first (source, relative) pair
    for source, relative in pairs:
        firsts.setdefault(real(source), (source, relative))
    sources = set(firsts)
    jobs, claimed = [], {}
    # each a failure: the run's summary and exit code say images were left out, as `find` does
    problems = [(folder, f"{UNREADABLE_FOLDER}: its images are left out") for folder in unreadable]
    for source, relative in firsts.values():
        mask = out / relative.with_suffix(".png")
        key = real(mask)
        job = Job(source, mask)
        outputs = [(mask, "mask"), *([(job.overlay, "overlay")] if overlay else [])]
        inputs_hit = [path for path, role in outputs
                      if real(path) in sources and not written_by_fastseg(path, role)]  # fmt: skip
        if inputs_hit:
            problems.append((source, f"output {inputs_hit[0]} would overwrite an input; "
                                     "choose another --out"))  # fmt: skip
        elif key in claimed:
            problems.append((source, f"output {mask} is already taken by {claimed[key]}"))
        else:
            try:
                for path, role in outputs:
                    if not (skip_existing and _cut_short(path)):
                        guard(path, role, force, option="--replace-foreign")
            except OutputRefused as refused:
                problems.append((source, str(refused)))
                continue
            except OSError as error:  # its mirrored name past the system's limits: this image only
                if error.errno not in (errno.ENAMETOOLONG, errno.ELOOP):
                    raise
                problems.append((source, f"output {shown(clipped(str(mask), 120))}: {path_problem(error)}"))
                continue
            claimed[key] = source
            jobs.append(job)
    return jobs, problems


def real(path: Path) -> Path:
    """`path.resolve()`, which in Python 3.11 raises RuntimeError on a symbolic link loop: an --out
    that is one was a traceback here, before `prepare_out` could say so in one line."""
    return Path(os.path.realpath(path))


def _cut_short(path: Path) -> bool:
    """Whether `--skip-existing` takes the file at an output path for an earlier output cut short:
    one that no image reader opens (done again, or left when `predictions.csv` lists it done). A
    picture there that fastseg did not write is the user's, refused as without the flag: every
    existing output passed unguarded, and a user's photo at a mask path was replaced."""
    if not path.is_file():
        return False
    from PIL import Image

    try:
        with Image.open(path):
            return False
    except (OSError, ValueError, SyntaxError):  # not an image at all
        return True


def image_files(folder: Path, out: Path, unreadable: list[Path] | None = None) -> list[Path]:
    """Image files under `folder`, walked recursively and sorted. An `out` inside `folder` is left
    out: a rerun would take its own masks for inputs (out/out/...). An `out` that *is* `folder` is
    walked without the masks and overlays fastseg wrote there (a rerun made `a.overlay.overlay.jpg`
    from the first run's overlay); the user's images in it are refused one by one, as their outputs
    would overwrite them. Folders this user may not read are added to `unreadable`."""
    out, root = real(out), real(folder)
    skipped = out.relative_to(root).parts if out.is_relative_to(root) else ()
    walked = walk(folder, unreadable)  # folders it may not read go to `unreadable`, for the caller
    files = [path for path in walked if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()]
    if skipped:
        files = [path for path in files if path.relative_to(folder).parts[: len(skipped)] != skipped]
    elif out == root:
        ours = ("mask", "overlay")
        files = [path for path in files if not any(written_by_fastseg(path, role) for role in ours)]
    return sorted(files)


def is_done(job: Job, overlay: bool) -> bool:
    """What `--skip-existing` leaves: an image whose mask exists, and its overlay when one is asked
    for (an image without it is done again, mask included: the same labels)."""
    return job.mask.is_file() and (not overlay or job.overlay.is_file())
