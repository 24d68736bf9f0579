"""The generated demo dataset: VOC layout, mask values and borders, varied sizes, determinism,
colour as a learnable cue, and the palette PNG writer other modules reuse."""

import itertools
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastseg.data.demo_voc import DEMO_CLASSES, make_demo_voc
from fastseg.imaging.masks import VOID_LABEL, write_mask
from fastseg.imaging.palette import voc_palette

VOC_ID = re.compile(r"^\d{4}_\d{6}$")


def list_ids(voc: Path, split: str) -> list[str]:
    return (voc / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().splitlines()


def all_files(voc: Path) -> dict[str, bytes]:
    """Every file under `voc`, by relative path: the unit of the determinism promise."""
    return {str(path.relative_to(voc)): path.read_bytes() for path in voc.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_voc(tmp_path_factory.mktemp("demo"), n_train=12, n_val=8, seed=3)


def test_layout_and_list_files(voc: Path):
    assert voc.parts[-2:] == ("VOCdevkit", "VOC2012")
    train, val, trainval = (list_ids(voc, split) for split in ("train", "val", "trainval"))
    assert (len(train), len(val)) == (12, 8)
    assert trainval == train + val
    assert not set(train) & set(val)
    assert len(set(trainval)) == 20
    assert all(VOC_ID.match(image_id) for image_id in trainval)
    for image_id in trainval:
        assert (voc / "JPEGImages" / f"{image_id}.jpg").is_file()
        assert (voc / "SegmentationClass" / f"{image_id}.png").is_file()
    assert len(list((voc / "JPEGImages").iterdir())) == 20
    assert len(list((voc / "SegmentationClass").iterdir())) == 20


def test_masks_are_palette_pngs_with_classes_and_void_borders(voc: Path):
    seen: set[int] = set()
    for image_id in list_ids(voc, "trainval"):
        with Image.open(voc / "SegmentationClass" / f"{image_id}.png") as mask_image:
            assert mask_image.mode == "P"
            assert mask_image.getpalette()[: 21 * 3] == voc_palette()[: 21 * 3]
            mask = np.array(mask_image)
        values = set(np.unique(mask).tolist())
        assert values <= {0, *DEMO_CLASSES, VOID_LABEL}
        assert VOID_LABEL in values, image_id
        assert values - {0, VOID_LABEL}, f"{image_id}: no object class"
        assert 0 in values, f"{image_id}: no background"
        seen |= values
    assert len(seen & set(DEMO_CLASSES)) >= 3  # more than one class across the set


def test_void_surrounds_each_object(voc: Path):
    """Like VOC, a class pixel never touches background directly: void lies between them."""
    for image_id in list_ids(voc, "trainval"):
        mask = np.array(Image.open(voc / "SegmentationClass" / f"{image_id}.png"))
        for a, b in ((mask[:, :-1], mask[:, 1:]), (mask[:-1, :], mask[1:, :])):
            touching = ((a == 0) & (b != 0) & (b != VOID_LABEL)) | ((b == 0) & (a != 0) & (a != VOID_LABEL))
            assert not touching.any(), image_id


def test_images_are_rgb_jpegs_matching_their_masks_in_varied_sizes(voc: Path):
    sizes = []
    for image_id in list_ids(voc, "trainval"):
        with Image.open(voc / "JPEGImages" / f"{image_id}.jpg") as image:
            assert (image.format, image.mode) == ("JPEG", "RGB")
            size = image.size
        with Image.open(voc / "SegmentationClass" / f"{image_id}.png") as mask:
            assert mask.size == size, image_id
        assert all(48 <= side <= 96 for side in size)
        sizes.append(size)
    assert len(set(sizes)) > 10
    assert sum(width != height for width, height in sizes) > len(sizes) // 2


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path: Path):
    first = all_files(make_demo_voc(tmp_path / "a", n_train=6, n_val=4, seed=7))
    second = all_files(make_demo_voc(tmp_path / "b", n_train=6, n_val=4, seed=7))
    other = all_files(make_demo_voc(tmp_path / "c", n_train=6, n_val=4, seed=8))
    assert len(first) == 10 + 10 + 3
    assert first == second
    assert first.keys() == other.keys()
    jpegs = [name for name in first if name.endswith(".jpg")]
    assert all(first[name] != other[name] for name in jpegs)


def test_class_is_predictable_from_colour(voc: Path):
    """Mean RGB per class (background included) is far apart, so a model can learn the classes."""
    totals: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    for image_id in list_ids(voc, "trainval"):
        image = np.array(Image.open(voc / "JPEGImages" / f"{image_id}.jpg"), dtype=np.float64)
        mask = np.array(Image.open(voc / "SegmentationClass" / f"{image_id}.png"))
        for label in np.unique(mask):
            if label == VOID_LABEL:
                continue
            pixels = image[mask == label]
            totals[label] = totals.get(label, np.zeros(3)) + pixels.sum(0)
            counts[label] = counts.get(label, 0) + len(pixels)
    means = {label: totals[label] / counts[label] for label in totals}
    assert len(means) >= 4
    for a, b in itertools.combinations(sorted(means), 2):
        distance = float(np.linalg.norm(means[a] - means[b]))
        assert distance > 60, (a, b, distance)


def test_chosen_classes_only(tmp_path: Path):
    voc = make_demo_voc(tmp_path, n_train=4, n_val=2, seed=0, classes=[3, 20])
    values = set()
    for path in (voc / "SegmentationClass").iterdir():
        values |= set(np.unique(np.array(Image.open(path))).tolist())
    assert values - {0, VOID_LABEL} <= {3, 20}
    assert values & {3, 20}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"n_train": 0}, "n_train and n_val"),
        ({"min_size": 8, "max_size": 8}, "min_size"),
        ({"min_size": 64, "max_size": 32}, "min_size"),
        ({"classes": []}, "classes is empty"),
        ({"classes": [0, 7]}, r"\[0\]"),
        ({"classes": [7, 255]}, r"\[255\]"),
    ],
)
def test_bad_arguments_are_refused_before_writing(tmp_path: Path, arguments: dict, message: str):
    with pytest.raises(ValueError, match=message):
        make_demo_voc(tmp_path, **arguments)
    assert not any(tmp_path.iterdir())


def test_default_set_has_80_images(tmp_path: Path):
    # Its speed is not asserted here: a timed unit test fails on a loaded machine and proves nothing.
    voc = make_demo_voc(tmp_path)
    assert len(list_ids(voc, "trainval")) == 80


def test_write_mask_round_trips_every_label_and_uses_the_voc_palette(tmp_path: Path):
    labels = np.array([[*range(21), VOID_LABEL]] * 3, dtype=np.uint8)
    path = write_mask(tmp_path / "mask.png", labels)
    with Image.open(path) as image:
        assert (image.format, image.mode) == ("PNG", "P")
        palette = image.getpalette()
        np.testing.assert_array_equal(np.array(image), labels)
    assert palette[15 * 3 : 15 * 3 + 3] == [192, 128, 128]  # person
    assert palette[VOID_LABEL * 3 : VOID_LABEL * 3 + 3] == [224, 224, 192]  # void, cream
    assert palette[:768] == voc_palette()
