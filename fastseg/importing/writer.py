"""Turning a read export (`Source`) into a `dataset.yaml` data set, whole or not at all.

    DATASET/
      dataset.yaml            names, colors, ignore_index 255, train / val / test folders
      images/<split>/NAME     hard links to the export's images (copies across file systems, or
                              with --copy; embedded images written out)
      masks/<split>/STEM.png  class-index palette PNGs (`fastseg.imaging.masks.write_mask`), void 255
      .fastseg-import.json    the marker: what this import wrote, so --force replaces only that

Everything is built in a hidden sibling folder (`.DATASET.import.PID.tmp`) and renamed into place
at the end: a kill -9 leaves DATASET whole or absent, and the next import removes a dead
process's temporary folder. Every problem of the export (missing or unreadable images, sizes that
are not the annotation's, shapes outside the image, labels that are not classes, duplicate file
names, masks that cannot be mapped) is collected; any one of them and nothing is created.

Overlaps: layers are painted in the export's order, a later annotation on top (as the tools draw
them); `order` (--order) ranks classes instead: a class named earlier wins the pixels it shares
with a class named later or not named. The pixels where classes met are counted and reported.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

from fastseg.atomic import atomic_path, left_by_dead_process, write_json, write_text
from fastseg.classes import MAX_CLASSES, Classes, default_colors
from fastseg.data.factory import DATASET_FILE  # the file `--data` opens: one name for both
from fastseg.errors import FastsegError, OptionError, clipped
from fastseg.imaging.images import IMAGE_SUFFIXES
from fastseg.imaging.masks import VOID_LABEL, write_mask
from fastseg.importing import raster
from fastseg.importing.source import BACKGROUND, ImportProblems, Item, ItemProblem, Source, outside, shown
from fastseg.paths import UNREADABLE_FOLDER, UNUSABLE_PATH, make_folders, path_problem, walk, why_not_created
from fastseg.structured_files import StructuredFileError, load_json

MARKER = ".fastseg-import.json"
MARKER_KIND = "fastseg import"
ROTATING = (5, 6, 7, 8)  # EXIF orientations that swap width and height
ORIENTATION_TAG = 0x0112
FORMAT_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif", "WEBP": ".webp"}


@dataclass(frozen=True)
class ImportOptions:
    """The choices of `fastseg import` (its CLI options, with the same defaults)."""

    val: float = 0.2
    test: float = 0.1
    seed: int = 42
    classes: tuple[str, ...] | None = None  # object classes, in index order from 1
    order: tuple[str, ...] | None = None  # overlap priority: first named wins
    copy: bool = False
    force: bool = False
    threads: int | None = None

    def check(self) -> None:
        for name, value in (("--val", self.val), ("--test", self.test)):
            if not 0 <= value < 1:  # NaN fails this too
                raise OptionError(f"{name} {value}: a fraction from 0 to below 1")
        if self.val + self.test >= 1:
            raise OptionError(f"--val {self.val} + --test {self.test} leave no training images")
        if self.val <= 0:
            raise OptionError("--val must be above 0: training needs validation images")
        if type(self.seed) is not int or self.seed < 0:  # numpy's generator takes no negative seed
            raise OptionError(f"--seed {self.seed}: a whole number, 0 or more")
        order = self.order or ()
        if any(not name.strip() for name in order):  # `cat,,dog`: it was "--order:  not among the classes"
            raise OptionError("--order: an empty class name in the list (two commas in a row, or one at an "
                              "end); name each class once, e.g. --order cat,dog")  # fmt: skip
        repeated = [name for name in dict.fromkeys(order) if order.count(name) > 1]
        if repeated:  # which rank would the class get? (known before the export is read)
            raise OptionError(f"--order: {', '.join(map(shown, repeated))} named more than once")


@dataclass
class ImportResult:
    out: Path
    counts: dict[str, int]
    names: list[str]
    contested: int = 0
    linked: int = 0
    copied: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class _Written:
    files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    contested: int = 0
    linked: int = 0
    copied: int = 0
    rotated: int = 0
    missing: int = 0


def write_dataset(
    source: Source,
    out: Path,
    options: ImportOptions,
    format_name: str,
    origin: Path,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> ImportResult:
    """Check `source` whole, draw and write it to `out` atomically; `ImportProblems` (every line)
    and nothing created when anything is wrong."""
    options.check()
    out = Path(out)
    if ".." in out.parts:  # `x/..` is x's parent: named as such, no folder made for the `x`
        out = out.resolve() if out.name == ".." else out.parent.resolve() / out.name
    _check_parent(out)
    _remove_stale(out)
    replacing = _check_destination(out, options.force)
    problems = list(source.problems)
    notes = list(source.notes)
    names, colors, index = _classes(source, options, problems)
    rank = _ranks(names, options.order, problems)
    _duplicates(source.items, problems)
    splits = _assign_splits(source.items, options, problems, notes)
    if problems:  # the images' own problems too, in the same list: open and check, draw nothing
        checked = [_write_item(item, "", None, index, rank, [], options.copy) for item in source.items]
        problems += [problem for result in checked for problem in result.problems]
        _missing_hint(sum(result.missing for result in checked), len(source.items), problems)
        raise _refused(problems, out)
    classes = Classes.create(names, colors)
    temporary = out.parent / f".{out.name}.import.{os.getpid()}.tmp"
    if temporary.is_symlink() or (temporary.exists() and not temporary.is_dir()):  # not one we made
        raise FastsegError(f"{shown(temporary)}: named like this import's build folder, but "
                           "not a folder fastseg made (a link or a file); move it away")  # fmt: skip
    if temporary.exists():  # a dead process's that had this process id: partial, and named as ours
        shutil.rmtree(temporary)
    made = [folder for folder in [out.parent, *out.parent.parents] if not folder.exists()]
    try:
        make_folders(temporary, exist_ok=False)
    except OSError as error:  # --out under a file, in /proc, on a read-only disk: a line, not a traceback
        _remove_empty(made)
        raise FastsegError(f"{shown(out)}: cannot create the data set there "
                           f"({why_not_created(temporary, error)})") from None  # fmt: skip
    installed = False
    try:
        written = _write_items(source.items, splits, temporary, index, rank, classes, options, progress)
        if written.problems:
            _missing_hint(written.missing, len(source.items), written.problems)
            raise _refused(written.problems, out)
        counts = {split: splits.count(split) for split in ("train", "val", "test") if split in splits}
        _write_dataset_file(temporary, classes, counts, format_name, origin)
        files = sorted([*written.files, DATASET_FILE])
        write_json(
            temporary / MARKER,
            {"kind": MARKER_KIND, "format": format_name, "source": str(origin), "files": files},
        )
        _install(temporary, out, replacing, options.force)
        installed = True
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
        if not installed:
            _remove_empty(made)
    empty = sum(1 for item in source.items if not item.layers and item.render is None)
    if empty:
        notes.append(f"{empty} image(s) have no annotation: all background")
    if written.rotated:
        notes.append(
            f"{written.rotated} image(s) carry an EXIF orientation: their masks are drawn on the "
            "upright view, as the labelling tools show it and as fastseg reads the image"
        )
    return ImportResult(out, counts, names, written.contested, written.linked, written.copied, notes)


def _remove_empty(made: list[Path]) -> None:
    """The parent folders this import made, deepest first: "not created" leaves nothing."""
    for folder in made:
        try:
            folder.rmdir()
        except OSError:  # not empty (another process's meanwhile): kept
            break


def _missing_hint(missing: int, total: int, problems: list[str]) -> None:
    """Most images missing is one mistake (the wrong --images), not many: say so after the list."""
    if missing >= 3 and missing * 2 >= total:
        problems.append(f"{missing} of {total} images not found: is --images the folder holding the "
                        "export's images?")  # fmt: skip


def _refused(problems: list[str], out: Path) -> ImportProblems:
    lines = list(dict.fromkeys(problems))
    return ImportProblems(lines=[*lines, f"{len(lines)} problem(s): {out} was not created"])


# --- the destination ----------------------------------------------------------------------------


def _temporaries(out: Path) -> list[tuple[Path, str, int]]:
    """`.OUT.import.PID.tmp` (a build) and `.OUT.replaced.PID.tmp` (an import being replaced)."""
    prefix = f".{out.name}."
    found = []
    if not out.parent.is_dir():
        return found
    for entry in out.parent.iterdir():
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        middle = name[len(prefix) : -len(".tmp")].split(".")
        if len(middle) == 2 and middle[0] in ("import", "replaced") and middle[1].isdecimal():  # not "²"
            found.append((entry, middle[0], int(middle[1])))
    return found


def _remove_stale(out: Path) -> None:
    """A killed import's temporary folders (its process is gone). A build is partial: removed. An
    earlier import moved aside by `--force` is whole: put back if the kill came before the new one
    took its place (else it was replaced and is removed)."""
    stale = [(folder, kind) for folder, kind, pid in _temporaries(out) if left_by_dead_process(folder, pid)]
    for folder, kind in sorted(stale, key=lambda pair: pair[1] != "replaced"):
        if kind == "replaced" and not (out.exists() or out.is_symlink()):
            os.rename(folder, out)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def _check_parent(out: Path) -> None:
    """`out`'s folder can hold it: the nearest existing ancestor is a folder this process may
    write in (else one line before anything is drawn, not an OSError halfway)."""
    ancestor = out.absolute().parent
    try:
        (out.parent / f".{out.name}.import.0.tmp").exists()  # raises for a name over the limit
        while not ancestor.exists() and ancestor != ancestor.parent:
            if ancestor.is_symlink():  # a dangling link: nothing can be created through it
                break
            ancestor = ancestor.parent
    except OSError as error:
        raise FastsegError(f"--out {clipped(shown(out))}: {error.strerror}") from None
    if not ancestor.is_dir():
        raise FastsegError(f"--out {shown(out)}: {shown(ancestor)} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise FastsegError(f"--out {shown(out)}: {shown(ancestor)} is not writable by this user")


def _check_destination(out: Path, force: bool) -> bool:
    """Whether `out` exists and may be replaced; `FastsegError` when it may not."""
    if not (out.exists() or out.is_symlink()):
        return False
    if not force:
        raise FastsegError(
            f"{shown(out)} already exists; choose another --out, or --force to replace an "
            "earlier import there"
        )
    foreign = _not_imported(out)
    if foreign:
        listed = ", ".join(shown(path) for path in foreign[:3]) + (" ..." if len(foreign) > 3 else "")
        raise FastsegError(
            f"{shown(out)}: --force replaces only what an earlier fastseg import wrote, and "
            f"{len(foreign)} file(s) there are not its ({listed}); move them or choose "
            "another --out"
        )
    return True


def _not_imported(out: Path) -> list[str]:
    """Files in `out` that its import marker does not list (everything when there is no marker),
    and each folder there this user may not read: `--force` removed it whole, unread."""
    if out.is_symlink() or not out.is_dir():
        return [str(out)]
    try:
        marker = load_json(out / MARKER, "import marker")
    except StructuredFileError:
        marker = None
    files = marker.get("files") if isinstance(marker, dict) and marker.get("kind") == MARKER_KIND else None
    # a list of names, or the marker is damaged (edited by hand): the folder is not known to be ours
    listed = set(files) if isinstance(files, list) and all(isinstance(name, str) for name in files) else None
    unreadable: list[Path] = []  # what it holds is unknown: perhaps the user's files
    present = sorted(path.relative_to(out).as_posix() for path in walk(out, unreadable) if not path.is_dir())
    present += [f"{folder.relative_to(out).as_posix()}/ ({UNREADABLE_FOLDER})" for folder in unreadable]
    if listed is None:
        return present or [f"{out} (no {MARKER}: not an import's folder)"]
    return sorted(name for name in present if name != MARKER and name not in listed)


def _install(temporary: Path, out: Path, replacing: bool, force: bool) -> None:
    """Rename the finished folder into place (the old import moved aside first, then removed).

    Another `--force` import into the same --out may swap its own build in between these renames:
    --out gone before the first (it was moved aside: this build goes in as a new import's would),
    or a folder there again before the second (the other import's: kept, and this one stops)."""
    if replacing:
        if _not_imported(out):  # changed since the start: a file appeared there meanwhile
            _check_destination(out, force)
        aside = out.parent / f".{out.name}.replaced.{os.getpid()}.tmp"
        try:
            os.rename(out, aside)
        except FileNotFoundError:
            replacing = False
    try:
        os.rename(temporary, out)
    except OSError:
        if out.exists():
            if replacing:  # the other import's folder took the place of the one moved aside
                shutil.rmtree(aside, ignore_errors=True)
            raise FastsegError(
                f"{shown(out)} appeared while importing (another import?); nothing replaced"
            ) from None
        raise
    if replacing:
        shutil.rmtree(aside, ignore_errors=True)


# --- classes, order, names, splits ------------------------------------------------------------------


def _classes(
    source: Source, options: ImportOptions, problems: list[str]
) -> tuple[list[str], list, dict[str | None, int]]:
    """The data set's names and colours, and label -> class index (None -> void)."""
    names, colors = list(source.names), list(source.colors) if source.colors else None
    if options.classes is not None:
        if source.fixed_classes:
            raise OptionError("--classes does not apply to this format: its classes are the data set's own")
        wanted = [name.strip() for name in options.classes]
        if not wanted or any(not name for name in wanted):
            raise OptionError("--classes: a comma-separated list of class names, e.g. --classes cat,dog")
        unprintable = [name for name in wanted if not name.isprintable()]
        if unprintable:  # repr: a newline shown as \n, so the message stays one line
            raise OptionError(
                f"--classes: {', '.join(map(repr, unprintable))}: a class name is one line of text, "
                "without control characters (a newline, a tab)"
            )
        if wanted[0] != BACKGROUND:
            wanted = [BACKGROUND, *wanted]
        repeated = sorted({name for name in wanted if wanted.count(name) > 1})
        if repeated:
            raise OptionError(f"--classes: {', '.join(repeated)} named more than once")
        used: dict[str, list[str]] = {}
        for item in source.items:
            for layer in item.layers:
                if layer.label is not None and layer.label not in wanted:
                    used.setdefault(layer.label, []).append(layer.where)
        for label, places in sorted(used.items()):
            problems.append(
                f"{places[0]}: label {shown(label)!r} is not in --classes ({', '.join(wanted[1:])})"
                + (f"; {len(places) - 1} more shape(s) of it" if len(places) > 1 else "")
            )
        table = np.full(256, _NOT_LISTED, dtype=np.uint16)  # drawn masks: the export's index -> ours
        table[VOID_LABEL] = VOID_LABEL
        for position, name in enumerate(names[:VOID_LABEL]):  # a drawn mask: 0-254 classes, 255 void
            table[position] = wanted.index(name) if name in wanted else _NOT_LISTED
        for item in source.items:
            if item.render is not None:
                item.render = partial(_remapped, item.render, table, tuple(names))
        if colors:
            by_name = dict(zip(names, colors, strict=False))
            colors = [by_name.get(name) for name in wanted]
            taken = {colour for colour in colors if colour is not None}
            spare = iter(colour for colour in default_colors(256) if colour not in taken)
            colors = [colour if colour is not None else next(spare) for colour in colors]
        names = wanted
    if not 2 <= len(names) <= MAX_CLASSES and not problems:  # else labels may have been dropped
        problems.append(
            f"the export has {len(names)} class(es) with the background; fastseg takes 2 to {MAX_CLASSES}"
        )
        names = names[:MAX_CLASSES] if len(names) > MAX_CLASSES else [*names, "(none)"][:2]
    if any(not name.strip() for name in names):
        problems.append(
            "a label is empty or blank; name it in the export (dataset.yaml needs a name per class)"
        )
    unprintable = [name for name in names if not name.isprintable()]
    if unprintable:
        problems.append(
            f"class name(s) {clipped(', '.join(map(repr, unprintable)))} hold control characters "
            "(newlines, tabs); rename them in the export"
        )
    if colors is None or len(colors) != len(names):
        colors = default_colors(len(names))
    index: dict[str | None, int] = {name: position for position, name in enumerate(names)}
    index[None] = VOID_LABEL
    return names, colors, index


_NOT_LISTED = 256


def _remapped(render: Callable[[int, int], np.ndarray], table: np.ndarray, names: tuple[str, ...],
              height: int, width: int) -> np.ndarray:  # fmt: skip
    """A drawn mask's classes in `--classes`' order; a class left out is a problem where it has pixels."""
    drawn = render(height, width)
    mapped = table[drawn]
    if (mapped == _NOT_LISTED).any():
        left_out = sorted({names[value] for value in np.unique(drawn[mapped == _NOT_LISTED]).tolist()})
        raise ItemProblem(f"pixels of {', '.join(map(repr, left_out))}, not in --classes")
    return mapped.astype(np.uint8)


def _ranks(names: list[str], order: tuple[str, ...] | None, problems: list[str]) -> dict[int, int] | None:
    """Class index -> painting rank (higher is painted later, so on top); None: the export's order."""
    if not order:
        return None
    unknown = [name for name in order if name not in names]
    if unknown:
        problems.append(
            f"--order: {', '.join(map(shown, unknown))} not among the classes ({', '.join(names)})"
        )
    listed = [names.index(name) for name in order if name in names]
    return {label: len(listed) - position for position, label in enumerate(listed)}


def _duplicates(items: list[Item], problems: list[str]) -> None:
    """Two images whose stems match (a/x.jpg and b/x.jpg, or x.jpg and x.png) would share one mask."""
    owners: dict[str, list[Item]] = {}
    for item in items:
        owners.setdefault(Path(item.name).stem.casefold(), []).append(item)
    for group in owners.values():
        if len(group) > 1:
            places = ", ".join(shown(item.where) for item in group[:3]) + (" ..." if len(group) > 3 else "")
            problems.append(
                f"duplicate file name {shown(group[0].name)!r}: {len(group)} images ({places}) would "
                "share one mask; rename them in the export"
            )


def _assign_splits(
    items: list[Item], options: ImportOptions, problems: list[str], notes: list[str]
) -> list[str]:
    """The export's own splits when it has train and val; else a seeded shuffle by --val/--test."""
    own = [item.split for item in items]
    if items and all(own) and {"train", "val"} <= set(own):
        notes.append(
            "the export's own splits are kept ("
            + ", ".join(f"{split} {own.count(split)}" for split in ("train", "val", "test") if split in own)
            + "); --val/--test not used"
        )
        return [str(split) for split in own]
    total = len(items)
    if not total:
        if not problems:  # else the export's own problem (unreadable, not this format) says why
            problems.append("the export lists no images")
        return []
    val = max(1, round(options.val * total))
    test = max(1, round(options.test * total)) if options.test > 0 else 0
    if total - val - test < 1:
        if problems:  # images left out for their problems may be what is missing here
            return ["train"] * total
        problems.append(
            f"{total} image(s) cannot make train, val{' and test' if test else ''} splits; "
            "import more images (or --test 0)"
        )
        return ["train"] * total
    shuffled = np.random.default_rng(options.seed).permutation(total)
    splits = ["train"] * total
    for position, row in enumerate(shuffled.tolist()):
        if position < val:
            splits[row] = "val"
        elif position < val + test:
            splits[row] = "test"
    return splits


# --- the images and masks -------------------------------------------------------------------------


def _write_items(
    items: list[Item],
    splits: list[str],
    temporary: Path,
    index: dict[str | None, int],
    rank: dict[int, int] | None,
    classes: Classes,
    options: ImportOptions,
    progress: Callable[[Iterable, int], Iterable] | None,
) -> _Written:
    for split in set(splits):
        make_folders(temporary / "images" / split, exist_ok=False)
        make_folders(temporary / "masks" / split, exist_ok=False)
    palette = classes.palette()
    written = _Written()

    def one(row: int) -> _Written:
        return _write_item(items[row], splits[row], temporary, index, rank, palette, options.copy)

    threads = options.threads or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results: Iterable[_Written] = pool.map(one, range(len(items)))
        if progress is not None:
            results = progress(results, len(items))
        for result in results:
            written.files += result.files
            written.problems += result.problems
            written.contested += result.contested
            written.linked += result.linked
            written.copied += result.copied
            written.rotated += result.rotated
            written.missing += result.missing
    return written


def _write_item(
    item: Item,
    split: str,
    temporary: Path | None,
    index: dict[str | None, int],
    rank: dict[int, int] | None,
    palette: list[int],
    copy: bool,
) -> _Written:
    result = _Written()
    if item.image_bytes is None and item.embedded is not None:
        try:  # this image's bytes for this call only (see `Item.embedded`)
            item = replace(item, image_bytes=item.embedded())
        except ItemProblem as problem:
            result.problems.append(f"{item.where}: {problem}")
            return result
    opened = _open_image(item, result.problems)
    if opened is None:
        result.missing = int(item.image_bytes is None and not _present(item.image))
        return result
    width, height, suffix, orientation = opened
    if orientation in ROTATING:
        result.rotated = 1
    if item.size is not None and tuple(item.size) != (width, height):
        declared = f"{item.size[0]}x{item.size[1]}"
        if orientation in ROTATING and tuple(item.size) == (height, width):
            result.problems.append(
                f"{item.where}: the annotation is {declared}, the image's stored pixels, but the image "
                f"carries EXIF orientation {orientation}: upright it is {width}x{height}, "
                "the view the tools draw on; re-annotate on the upright view or strip the orientation tag"
            )
        else:
            result.problems.append(f"{item.where}: image is {width}x{height}, the annotation says {declared}")
        return result
    for layer in item.layers:
        if layer.points is not None:
            why = outside(layer.points, width, height)
            if why:
                result.problems.append(f"{layer.where}: {why}")
    if result.problems:
        return result
    if item.render is not None:
        try:
            mask = item.render(height, width)
        except ItemProblem as problem:
            result.problems.append(f"{item.where}: {problem}")
            return result
    else:
        layers = [(index.get(layer.label, 0), layer) for layer in item.layers]  # unknown: named already
        if rank is not None:
            layers.sort(key=lambda pair: rank.get(pair[0], 0))
        drawn = []
        for label, layer in layers:
            try:
                drawn.append((label, layer.draw(height, width)))
            except ItemProblem as problem:
                result.problems.append(f"{layer.where}: {problem}")
        if result.problems:
            return result
        mask, result.contested = raster.stack(height, width, drawn)
    if temporary is None:  # checking only: every problem found, nothing written
        return result
    stem = Path(item.name).stem
    image_name = f"{stem}{suffix}"
    image_path = temporary / "images" / split / image_name
    if item.image_bytes is not None:
        with atomic_path(image_path) as partial:
            partial.write_bytes(item.image_bytes)
        result.copied = 1
    elif _link_or_copy(item.image, image_path, copy):
        result.linked = 1
    else:
        result.copied = 1
    write_mask(temporary / "masks" / split / f"{stem}.png", mask, palette)
    result.files = [f"images/{split}/{image_name}", f"masks/{split}/{stem}.png"]
    return result


def _present(image: Path | None) -> bool:
    """Whether `image` is a file; a path no file system takes (too long, a link loop) is not."""
    try:
        return image is not None and image.is_file()
    except UNUSABLE_PATH:
        return False


def _open_image(item: Item, problems: list[str]) -> tuple[int, int, str, int] | None:
    """(upright width, upright height, suffix, EXIF orientation) from the header, or a problem."""
    if item.image_bytes is None:
        try:
            found = item.image is not None and item.image.is_file()
        except UNUSABLE_PATH as error:  # a YOLO list's line past the file system's limit, a link loop
            problems.append(
                f"{item.where}: image {clipped(shown(item.image))} cannot be used ({path_problem(error)})"
            )
            return None
        if not found:
            problems.append(f"{item.where}: image {shown(item.image)} not found")
            return None
        suffix = item.image.suffix.lower()
        if suffix not in IMAGE_SUFFIXES:
            problems.append(
                f"{item.where}: {shown(item.image)} is not an image fastseg reads "
                f"({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
            return None
    try:
        with Image.open(
            io.BytesIO(item.image_bytes) if item.image_bytes is not None else item.image
        ) as image:
            width, height = image.size
            kind = image.format
            orientation = image.getexif().get(ORIENTATION_TAG, 1)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        what = "embedded image" if item.image_bytes is not None else shown(item.image)
        problems.append(f"{item.where}: cannot read {what} ({shown(error)})")
        return None
    if item.image_bytes is not None:
        suffix = FORMAT_SUFFIX.get(kind or "")
        if suffix is None:
            problems.append(f"{item.where}: the embedded image is {kind}, not a format fastseg reads")
            return None
    if orientation in ROTATING:
        width, height = height, width
    return width, height, suffix, orientation if isinstance(orientation, int) else 1


def _link_or_copy(source: Path, target: Path, copy: bool) -> bool:
    """Hard-link `source` as `target` (True), or copy it whole (False): across file systems, where
    links are refused, or with --copy (an edit of a linked file is an edit of both)."""
    if not copy:
        try:
            os.link(source, target)
            return True
        except OSError:
            pass
    with atomic_path(target) as partial:
        shutil.copyfile(source, partial)
    return False


def _write_dataset_file(
    folder: Path, classes: Classes, counts: dict[str, int], format_name: str, origin: Path
) -> None:
    values = {
        "names": list(classes.names),
        "colors": [list(colour) for colour in classes.colors],
        "ignore_index": VOID_LABEL,
        **{split: f"images/{split}" for split in counts},
    }
    header = (
        f"# written by fastseg import ({format_name}); {MARKER} lists its files, and\n"
        "# `fastseg import --force` replaces only those\n"
    )
    write_text(
        folder / DATASET_FILE,
        header + yaml.safe_dump(values, sort_keys=False, allow_unicode=True, default_flow_style=None),
    )
