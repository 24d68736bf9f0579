"""A data set of one's own: `images/` and `masks/` folders described by a `dataset.yaml`.

Each image's mask has the same stem, in the same place under the masks folder (`images` swapped
for `masks` in the path); two files that could be one image's mask are a problem, never a choice.
Ids are the images' paths relative to the YAML file's folder, so `split.json` and `report`'s
per-image table name files a user can open. Masks are decoded to class indices with void as 255
(`fastseg.classes`), from index masks (any single-channel lossless format Pillow reads) or colour
masks (`mask_format: rgb`), turned by their EXIF orientation as images are; a value or colour
that is neither a class nor void is a data error, never silently made void, and a JPEG mask (its
edges hold values between the classes) or one of several frames is refused whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path, PurePath

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fastseg.classes import Colour
from fastseg.data.dataset import SegmentationData
from fastseg.data.dataset_file import DatasetFile, read_dataset_file
from fastseg.data.split import Split, halve
from fastseg.errors import DatasetError, bytes_escaped, quoted
from fastseg.imaging.images import IMAGE_SUFFIXES
from fastseg.imaging.masks import VOID_LABEL
from fastseg.paths import UNREADABLE_FOLDER, UNUSABLE_PATH, path_problem, walk

MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".gif")  # lossless: a JPEG mask's edges are noise
# looked for too (any case), so that a JPEG mask is named as one, not reported missing; a WebP mask
# is read when lossless and refused as lossy otherwise
FOUND_MASK_SUFFIXES = frozenset({*MASK_SUFFIXES, ".jpg", ".jpeg", ".webp"})
LOSSY_FORMATS = ("JPEG", "MPO")  # Pillow's names for a file's content, whatever its suffix
SINGLE_CHANNEL_MODES = ("L", "P", "1", "I", "I;16", "I;16B", "I;16L", "I;16N")
IMAGES_FOLDER = "images"


class FolderDataset(SegmentationData):
    """The pairs of a checked `dataset.yaml`, listed once: `ids[split]`, and a mask path per id.

    `problems` holds what listing found (images without masks, masks without images, empty
    splits, list entries without an image); `check_dataset` reports them with the pairs' own."""

    def __init__(self, spec: DatasetFile):
        self.spec = spec
        self.root = spec.root
        self.classes = spec.classes
        self.ids: dict[str, list[str]] = {}
        self.problems: list[str] = []
        self._images: dict[str, Path] = {}
        self._masks: dict[str, Path] = {}
        self._folders: dict[Path, dict[str, list[Path]]] = {}  # `_files_by_stem`'s listings
        for split, location in spec.splits.items():
            self.ids[split] = self._list(split, location)
        self.problems += self._leaks()  # check-data names what `split` refuses
        self._lookup = _label_table(len(self.classes), self.classes.ignore_index, spec.mask_values)
        self._colour_codes, self._colour_labels = _colour_lookup(self.classes.colors, spec.ignore_color)

    @classmethod
    def from_file(cls, path: Path) -> FolderDataset:
        return cls(read_dataset_file(path))

    def __repr__(self) -> str:
        return f"FolderDataset({self.spec.path})"

    # --- the interface -------------------------------------------------------------------------

    def image_path(self, image_id: str) -> Path:
        return self._known(self._images, image_id)

    def mask_path(self, image_id: str) -> Path:
        return self._known(self._masks, image_id)

    def _known(self, paths: dict[str, Path], image_id: str) -> Path:
        """An id the data set does not list (a run's split.json naming a deleted or renamed image)
        is one line, not a KeyError."""
        if image_id not in paths:
            raise DatasetError(f"{image_id!r}: no such image in {self.spec.path} (deleted, renamed, "
                               "or a split.json of another data set?)")  # fmt: skip
        return paths[image_id]

    def read_mask(self, image_id: str) -> np.ndarray:
        problem, mask = self.check_mask(image_id)
        if problem:
            raise DatasetError(problem)
        return mask

    def check_mask(self, image_id: str) -> tuple[str | None, np.ndarray | None]:
        path = self.mask_path(image_id)
        try:
            with Image.open(path) as image:
                problem = _mask_file_problem(path, image)
                if problem:
                    return problem, None
                try:  # turned as its image is (load_rgb): a mask carrying the image's EXIF tag stays on it
                    ImageOps.exif_transpose(image, in_place=True)
                except (SyntaxError, ValueError) as error:  # a damaged EXIF block: Pillow's TIFF reader
                    return f"{path}: cannot read mask (its EXIF: {error})", None
                image.load()
                if self.spec.mask_format == "rgb":
                    opaque = image if image.mode == "RGB" else image.convert("RGB")  # alpha dropped
                    return self._decode_colours(path, np.asarray(opaque.convert("RGBA")))
                if image.format == "WEBP":  # no grey mode in WebP: a grey mask comes back as RGB
                    image = _grey_if_equal_channels(image)
                if image.mode not in SINGLE_CHANNEL_MODES:
                    return (f"{path}: mask has mode {image.mode}, expected one channel of class indices "
                            f"({_mode_hint(image.mode)})"), None  # fmt: skip
                values = np.asarray(image)
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as error:
            return f"{path}: cannot read mask ({error})", None
        return self._decode_indices(path, values)

    def listed_splits(self) -> dict[str, list[str]]:
        return dict(self.ids)

    def summary_line(self) -> str:
        masks = "colour masks" if self.spec.mask_format == "rgb" else "index masks"
        return (f"{self.spec.path}: {len(self.classes)} classes, ignore_index {self.classes.ignore_index}, "
                f"{masks}")  # fmt: skip

    def split(self, train_set: str | None, seed: int) -> Split:
        """`train`, `val` and `test` as listed; without `test`, `val` halved the seed's way."""
        train, valid = self.ids["train"], self.ids["val"]
        leaks = self._leaks()
        if leaks:
            raise DatasetError(leaks[0])
        if "test" in self.ids:
            return Split(train=list(train), valid=list(valid), test=list(self.ids["test"]), seed=seed)
        valid, test = halve(valid, seed)
        return Split(train=list(train), valid=valid, test=test, seed=seed, test_from="val")

    def _leaks(self) -> list[str]:
        """A line per two splits that share images (a split folder named twice, a list naming
        another split's image)."""
        found = []
        for first, second in (("train", "val"), ("train", "test"), ("val", "test")):
            leaked = sorted(set(self.ids.get(first, ())) & set(self.ids.get(second, ())))
            if leaked:
                found.append(f"{self.spec.path}: {len(leaked)} images are in both {first} and {second} "
                             f"(e.g. {leaked[0]}): the scores would leak")  # fmt: skip
        return found

    # --- decoding ------------------------------------------------------------------------------

    def _decode_indices(self, path: Path, values: np.ndarray) -> tuple[str | None, np.ndarray | None]:
        if values.dtype == bool:
            values = values.astype(np.uint8)
        if values.size and int(values.max()) > 255:
            return f"{path}: mask values up to {int(values.max())}; class indices must be 0-255", None
        if values.size and int(values.min()) < 0:  # a 32-bit ('I') mask: -1 would wrap to void, -255 to 1
            return f"{path}: mask values down to {int(values.min())}; class indices must be 0-255", None
        values = values.astype(np.uint8, copy=False)
        present = np.flatnonzero(np.bincount(values.ravel(), minlength=256))
        bad = [int(value) for value in present if self._lookup[value] == _INVALID]
        if bad:
            mapping = " nor in mask_values" if self.spec.mask_values else ""
            return (f"{path}: mask values {bad[:5]} are neither a class (0-{len(self.classes) - 1}) "
                    f"nor ignore_index {self.classes.ignore_index}{mapping}"), None  # fmt: skip
        return None, self._lookup[values].astype(np.uint8)

    def _decode_colours(self, path: Path, pixels: np.ndarray) -> tuple[str | None, np.ndarray | None]:
        """`pixels` `(H, W, 4)` RGBA, alpha 255: each pixel's 4 bytes read as one little-endian
        code (no arithmetic per channel: 1.7x faster than shifting int32 channels together), looked
        up among the sorted class colours."""
        codes = pixels.view("<u4")[..., 0]
        where = np.searchsorted(self._colour_codes, codes).clip(max=len(self._colour_codes) - 1)
        known = self._colour_codes[where] == codes
        if not known.all():
            unknown = np.unique(codes[~known])
            shown = ", ".join(
                f"({code & 255}, {code >> 8 & 255}, {code >> 16 & 255})" for code in unknown[:3].tolist()
            )
            more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
            return (f"{path}: {int((~known).sum())} pixels of colours {shown}{more} not in colors "
                    "(nor ignore_color)"), None  # fmt: skip
        return None, self._colour_labels[where]

    # --- listing -------------------------------------------------------------------------------

    def _list(self, split: str, location: Path) -> list[str]:
        """Ids of one split, registering each image's and mask's path; problems noted."""
        if location.suffix == ".txt" and location.is_file():
            images = self._listed_images(split, location)
        elif location.is_dir():
            unreadable: list[Path] = []  # its images cannot be read: the set is not whole
            images = sorted(path for path in walk(location, unreadable)
                            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())  # fmt: skip
            self.problems += [f"{folder}: {UNREADABLE_FOLDER} ({split})" for folder in unreadable]
            self._note_orphan_masks(split, location, images)
        else:
            images = []
        ids = []
        for image in images:
            image_id = self._id(image)
            masks = self._find_masks(image)
            if not masks:
                expected = self._mask_stem(image)
                where = expected.with_suffix(".png") if expected else "(no images folder in its path to swap)"
                self.problems.append(f"{image}: no mask ({split}; expected {where})")
                continue
            if len(masks) > 1:  # which one the user meant, nobody knows: neither is dropped silently
                self.problems.append(f"{image}: {len(masks)} masks ({', '.join(map(str, masks))}); "
                                     "keep the one that is its mask")  # fmt: skip
                continue
            mask = masks[0]
            if image_id in self._images and self._images[image_id] != image:  # `a\xff.jpg` written out
                self.problems.append(f"{image}: its id {image_id!r} is also {self._images[image_id]}'s; "
                                     "rename one")  # fmt: skip
                continue
            self._images[image_id], self._masks[image_id] = image, mask
            ids.append(image_id)
        shared = _shared_masks(self._masks, ids)
        self.problems += [f"{mask}: the mask of more than one image ({', '.join(names)})"
                          for mask, names in shared]  # fmt: skip
        if not images:
            self.problems.append(f"{location}: the {split} split holds no images")
        return ids

    def _listed_images(self, split: str, listing: Path) -> list[Path]:
        """A `.txt` split: one image per line, a stem or a path relative to the `images` folder."""
        base = self.root / IMAGES_FOLDER
        images = []
        first_line: dict[Path, int] = {}  # a repeated image would train twice an epoch
        try:
            lines = listing.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            self.problems.append(
                f"{listing}: cannot read the list ({getattr(error, 'strerror', None) or error})"
            )
            return []
        try:
            resolved_base = base.resolve()  # once, not per line
        except UNUSABLE_PATH as error:
            self.problems.append(f"{base}: cannot be used ({path_problem(error)})")
            return []
        for number, line in enumerate(lines, start=1):
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            try:
                outside = not (base / entry).resolve().is_relative_to(resolved_base)
                named = base / entry
                candidates = [named] if named.suffix.lower() in IMAGE_SUFFIXES else [
                    path for path in self._files_by_stem(named.parent).get(named.name, [])
                    if path.suffix.lower() in IMAGE_SUFFIXES]  # fmt: skip
                found = None if outside else next((path for path in candidates if path.is_file()), None)
            except UNUSABLE_PATH as error:  # a link loop, a name over the file system's limit
                self.problems.append(
                    f"{listing}:{number}: {quoted(entry)} cannot be used ({path_problem(error)})"
                )
                continue
            if outside:
                self.problems.append(f"{listing}:{number}: {entry!r} is outside {base}; list paths under it")
                continue
            if found is None:
                self.problems.append(f"{listing}:{number}: no image {entry!r} in {base}")
            elif len(candidates) > 1:  # a.jpg and a.png: either could be meant
                names = ", ".join(path.name for path in candidates)
                self.problems.append(f"{listing}:{number}: {entry!r} names {len(candidates)} images "
                                     f"({names}); write the one meant with its suffix")  # fmt: skip
            elif found in first_line:
                self.problems.append(f"{listing}:{number}: {entry!r} is the image of line "
                                     f"{first_line[found]} again; list each image once")  # fmt: skip
            else:
                first_line[found] = number
                images.append(found)
        return images

    def _id(self, image: Path) -> str:
        """The image's path under the YAML file's folder, with bytes that are not UTF-8 written as
        fastseg prints them (`\\xff`): every file an id goes into (split.json, report's CSVs and
        page) is UTF-8, which a name's lone surrogates cannot enter; `image_path` keeps the file."""
        try:
            relative = image.relative_to(self.root).as_posix()
        except ValueError:
            relative = image.as_posix()
        return bytes_escaped(relative)

    def _mask_stem(self, image: Path) -> Path | None:
        """The mask's path without suffix: the image's, with its `images` folder swapped for `masks`."""
        parts = list(PurePath(image).parts)
        try:
            relative = list(image.relative_to(self.root).parts)
            offset = len(parts) - len(relative)
        except ValueError:
            relative, offset = parts, 0
        if IMAGES_FOLDER not in relative:
            return None
        index = offset + relative.index(IMAGES_FOLDER)
        parts[index] = self.spec.masks
        return Path(*parts).with_suffix("")

    def _find_masks(self, image: Path) -> list[Path]:
        """Every file that could be the image's mask: its stem under the masks folder, a mask
        suffix in any case (`a.Png`); more than one is the user's to settle."""
        stem = self._mask_stem(image)
        if stem is None:
            return []
        return [path for path in self._files_by_stem(stem.parent).get(stem.name, [])
                if path.suffix.lower() in FOUND_MASK_SUFFIXES and path != image]  # fmt: skip

    def _files_by_stem(self, folder: Path) -> dict[str, list[Path]]:
        """The regular files of `folder` by stem, sorted, listed once per folder (not a stat per
        suffix per image); a folder that cannot be listed holds none (its images have no mask)."""
        if folder not in self._folders:
            found: dict[str, list[Path]] = {}
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if entry.is_file():
                            path = folder / entry.name
                            found.setdefault(path.stem, []).append(path)
            except UNUSABLE_PATH:
                found = {}
            self._folders[folder] = {stem: sorted(paths) for stem, paths in found.items()}
        return self._folders[folder]

    def _note_orphan_masks(self, split: str, location: Path, images: Iterable[Path]) -> None:
        """Masks under the split's masks folder whose image is missing: often a misnamed image."""
        placeholder = self._mask_stem(location / "placeholder")  # the masks folder, by the same swap
        if placeholder is None or not placeholder.parent.is_dir():
            return
        stems = {self._mask_stem(image) for image in images}
        unreadable: list[Path] = []
        for mask in sorted(walk(placeholder.parent, unreadable)):
            if mask.suffix.lower() not in FOUND_MASK_SUFFIXES or mask.with_suffix("") in stems:
                continue
            if mask.is_file():
                self.problems.append(f"{mask}: mask without an image ({split})")
        self.problems += [f"{folder}: {UNREADABLE_FOLDER} ({split})" for folder in unreadable]


def _mode_hint(mode: str) -> str:
    """What to do about an index mask of `mode`, which holds more than one channel of integers:
    the colour-mask hint misled for a grey mask with alpha or one of floating-point values."""
    if mode in ("LA", "La", "PA"):
        return "grey or palette with an alpha channel: save it without alpha"
    if mode == "F":
        return "floating-point values: save the class indices as integers"
    return "for colour masks set mask_format: rgb in dataset.yaml"


def _mask_file_problem(path: Path, image: Image.Image) -> str | None:
    """What makes an opened file no mask whatever its pixels: lossy compression (its edges hold
    values between the classes, which can read as other classes) or several frames (which one?)."""
    if image.format in LOSSY_FORMATS:
        return (f"{path}: mask is a JPEG: its lossy compression leaves values between the classes "
                "along every edge; save masks as PNG (lossless)")  # fmt: skip
    if getattr(image, "is_animated", False):  # asked first: a GIF's n_frames reads the whole file
        return (f"{path}: mask has {image.n_frames} frames (an animation or a multi-page file); "
                "save one per mask")  # fmt: skip
    if image.format == "WEBP" and _lossy_webp(path):  # after frames: an animation's are inside ANMF
        return (f"{path}: mask is a lossy WebP: its compression leaves values between the classes "
                "along every edge; save masks as PNG or lossless WebP")  # fmt: skip
    if image.format == "WEBP" and image.mode == "RGBA" and image.getextrema()[3][0] < 255:
        return (f"{path}: mask is a WebP with transparent pixels: WebP may drop their colours "
                "(libwebp's default), so they cannot be read as classes; save masks as PNG")  # fmt: skip
    return None


def _lossy_webp(path: Path) -> bool:
    """Whether a WebP file holds a lossy (`VP8 `) bitstream: Pillow opens lossy and lossless alike
    and says nothing of which, so the RIFF chunks are read (the first 64; a lossless file holds
    one `VP8L`, and extended files an `ALPH` before a lossy one). Unreadable counts as lossy."""
    try:
        with open(path, "rb") as file:
            if file.read(12)[8:] != b"WEBP":
                return True
            for _ in range(64):
                header = file.read(8)
                if len(header) < 8:
                    return True
                kind, size = header[:4], int.from_bytes(header[4:], "little")
                if kind in (b"VP8 ", b"VP8L"):
                    return kind == b"VP8 "
                file.seek(size + size % 2, os.SEEK_CUR)  # chunks are padded to an even length
    except OSError:
        return True
    return True


def _grey_if_equal_channels(image: Image.Image) -> Image.Image:
    """An RGB (or opaque RGBA) image whose three channels agree everywhere as its one channel
    (mode L), else as it is: WebP stores a grey index mask as RGB."""
    if image.mode == "RGBA":  # opaque here: transparent WebP masks are refused before
        image = image.convert("RGB")
    if image.mode != "RGB":
        return image
    pixels = np.asarray(image)
    if np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 0], pixels[..., 2]):
        return Image.fromarray(np.ascontiguousarray(pixels[..., 0]))
    return image


_INVALID = 256  # in the index lookup table: a value that is neither a class nor void


def _label_table(num_classes: int, ignore_index: int,
                 mask_values: dict[int, int] | None = None) -> np.ndarray:  # fmt: skip
    """Mask value -> class index (uint16): classes stay, `ignore_index` becomes 255, others invalid;
    `mask_values` (dataset.yaml) map stored values to classes or void over all of that."""
    table = np.full(256, _INVALID, dtype=np.uint16)
    table[:num_classes] = np.arange(num_classes)
    table[ignore_index] = VOID_LABEL
    for value, label in (mask_values or {}).items():
        table[value] = label
    return table


def _rgba_code(colour: Colour) -> int:
    """An opaque colour's RGBA bytes read as a little-endian 32-bit number (`_decode_colours`)."""
    red, green, blue = colour
    return red | green << 8 | blue << 16 | 255 << 24


def _colour_lookup(colors: tuple[Colour, ...], ignore_color: Colour | None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted RGBA colour codes and the class index of each (255 for `ignore_color`)."""
    pairs = {_rgba_code(colour): index for index, colour in enumerate(colors)}
    if ignore_color is not None:
        pairs[_rgba_code(ignore_color)] = VOID_LABEL
    codes = np.array(sorted(pairs), dtype="<u4")
    return codes, np.array([pairs[code] for code in codes.tolist()], dtype=np.uint8)


def _shared_masks(masks: dict[str, Path], ids: list[str]) -> list[tuple[Path, list[str]]]:
    """Masks claimed by two images of `ids` (`a.jpg` and `a.png` beside each other)."""
    owners: dict[Path, list[str]] = {}
    for image_id in ids:
        owners.setdefault(masks[image_id], []).append(image_id)
    return [(mask, names) for mask, names in owners.items() if len(names) > 1]
