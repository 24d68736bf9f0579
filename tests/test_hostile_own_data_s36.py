"""A stranger's hostile pass over a user's own data set (`dataset.yaml`) through `check-data`:
each test is a defect it found, and failed before its fix. The promise: a clear line naming the
file and the problem, never a mask read other than the user meant (turned against its image,
classes taken from a lossy file's in-between values, one of two files silently dropped)."""

import os

import numpy as np
import pytest
from click.testing import CliRunner
from demo_folder import make_demo_folder
from PIL import Image

from cli.main import main
from fastseg.data.folder_dataset import FolderDataset

ORIENTATION = 0x0112  # the EXIF tag; 6: shown turned 90 degrees clockwise


def run_cli(*arguments):
    return CliRunner().invoke(main, [str(argument) for argument in arguments])


def data_set(tmp_path):
    """Three classes, 3 training and 2 validation pairs: `(dataset.yaml, images/train, masks/train)`."""
    data = make_demo_folder(tmp_path / "data", ["background", "road", "car"], counts={"train": 3, "val": 2})
    return data, data.parent / "images" / "train", data.parent / "masks" / "train"


def picture(height=30, width=40):
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8))


def labels(height=30, width=40):
    """Classes 0, 1 and 2 in blocks: a JPEG of it holds 0-2 at and between the blocks' edges."""
    mask = np.zeros((height, width), np.uint8)
    mask[5:15, 5:20] = 1
    mask[18:25, 20:35] = 2
    return mask


def exif(orientation):
    values = Image.Exif()
    values[ORIENTATION] = orientation
    return values.tobytes()


def problem_lines(result):
    assert "Traceback" not in result.output
    return [line for line in result.output.splitlines()
            if line.startswith("/") and "dataset.yaml:" not in line]  # fmt: skip


def test_a_mask_holding_a_jpeg_is_refused_whatever_its_suffix(tmp_path):
    """A mask saved as JPEG (a .png holding JPEG bytes) was read as classes: its edges' in-between
    values 0-2 all look like classes here, so check-data said 'no problems found'."""
    data, images, masks = data_set(tmp_path)
    picture().save(images / "x.jpg")
    Image.fromarray(labels()).save(masks / "x.png", format="JPEG")
    result = run_cli("check-data", "--data", data)
    assert result.exit_code == 1, result.output
    [line] = problem_lines(result)
    assert line.startswith(f"{masks / 'x.png'}: mask is a JPEG") and "lossy" in line and "PNG" in line


def test_a_jpg_mask_beside_its_image_is_named_as_a_jpeg_not_as_missing(tmp_path):
    """masks/train/x.jpg was passed over: 'no mask (expected masks/train/x.png)' while the user's
    mask lay beside it; it is now found and refused for what it is."""
    data, images, masks = data_set(tmp_path)
    picture().save(images / "x.jpg")
    Image.fromarray(labels()).save(masks / "x.jpg")
    [line] = problem_lines(run_cli("check-data", "--data", data))
    assert line.startswith(f"{masks / 'x.jpg'}: mask is a JPEG")


def test_a_mask_carrying_its_images_exif_orientation_is_turned_with_it(tmp_path):
    """A phone photo tagged 'turn 90 degrees' and a mask drawn on its stored pixels carrying the same
    tag (a tool copying the EXIF): the image was turned, the mask not, so the pair was refused as
    'mask is 40x30, image is 30x40' (a square one trained on a mask turned against its image)."""
    data, images, masks = data_set(tmp_path)
    picture(30, 40).save(images / "x.jpg", exif=exif(6))
    Image.fromarray(labels(30, 40)).save(masks / "x.png", exif=exif(6))
    result = run_cli("check-data", "--data", data)
    assert result.exit_code == 0, result.output
    mask = FolderDataset.from_file(data).read_mask("images/train/x.jpg")
    assert np.array_equal(mask, np.rot90(labels(30, 40), k=-1))  # as the image: turned clockwise


def test_a_mask_drawn_on_a_turned_photos_stored_pixels_is_told_so(tmp_path):
    """The image's EXIF turns it, its mask (no tag) has the stored pixels' size: the line said only
    'mask is 40x30, image is 30x40', though both files are 40x30 on disk."""
    data, images, masks = data_set(tmp_path)
    picture(30, 40).save(images / "x.jpg", exif=exif(6))
    Image.fromarray(labels(30, 40)).save(masks / "x.png")
    [line] = problem_lines(run_cli("check-data", "--data", data))
    assert line.startswith(f"{masks / 'x.png'}: mask is 40x30, image is 30x40") and "EXIF orientation" in line


def test_two_masks_of_one_image_are_named_not_one_dropped(tmp_path):
    """masks/train/x.png and x.tif for images/train/x.jpg: x.png was used and x.tif passed over
    without a word (which one the user meant, nobody knows)."""
    data, images, masks = data_set(tmp_path)
    picture().save(images / "x.jpg")
    Image.fromarray(labels()).save(masks / "x.png")
    Image.fromarray(labels() * 0).save(masks / "x.tif")
    result = run_cli("check-data", "--data", data)
    assert result.exit_code == 1, result.output
    [line] = problem_lines(result)
    assert line.startswith(f"{images / 'x.jpg'}: 2 masks") and "x.png" in line and "x.tif" in line


def test_a_listed_stem_naming_two_images_is_named_not_one_dropped(tmp_path):
    """A .txt split listing 'train/x' while images/train holds x.jpg and x.png: x.jpg was taken
    (the first suffix in sorted order) and x.png passed over without a word."""
    data, images, masks = data_set(tmp_path)
    picture().save(images / "x.jpg")
    picture().save(images / "x.png")
    Image.fromarray(labels()).save(masks / "x.png")
    (data.parent / "train.txt").write_text("train/x\ntrain/train_0000\n")
    data.write_text(data.read_text().replace("train: images/train", "train: train.txt"))
    result = run_cli("check-data", "--data", data)
    assert result.exit_code == 1, result.output
    [line] = problem_lines(result)
    assert line.startswith(f"{data.parent / 'train.txt'}:1: 'train/x' names 2 images")
    assert "x.jpg" in line and "x.png" in line


def test_a_mask_suffix_in_mixed_case_is_found(tmp_path):
    """y.Png (as some cameras and Windows tools write it) was looked for as .png and .PNG only:
    'no mask (expected masks/train/y.png)' with the mask beside it."""
    data, images, masks = data_set(tmp_path)
    picture().save(images / "y.Jpg")
    Image.fromarray(labels()).save(masks / "y.Png", format="PNG")
    result = run_cli("check-data", "--data", data)
    assert result.exit_code == 0, result.output
    dataset = FolderDataset.from_file(data)
    assert dataset.mask_path("images/train/y.Jpg") == masks / "y.Png"
    assert np.array_equal(dataset.read_mask("images/train/y.Jpg"), labels())


@pytest.mark.parametrize("suffix", [".gif", ".tif"])
def test_a_mask_of_several_frames_is_refused_not_read_as_its_first(tmp_path, suffix):
    """An animated GIF or multi-page TIFF mask was read as its first frame without a word."""
    data, images, masks = data_set(tmp_path)
    picture().save(images / "x.jpg")
    frames = [Image.fromarray(labels()), Image.fromarray(labels() * 0)]
    frames[0].save(masks / f"x{suffix}", save_all=True, append_images=frames[1:])
    [line] = problem_lines(run_cli("check-data", "--data", data))
    assert line.startswith(f"{masks / f'x{suffix}'}: mask has 2 frames")


def bad_name_data_set(tmp_path):
    """A data set whose one test image is named `bad\\xff.jpg` (bytes that are not UTF-8, as a
    Latin-1 camera or an old Windows share writes them)."""
    data = make_demo_folder(tmp_path / "data", ["background", "road", "car"],
                            counts={"train": 3, "val": 1, "test": 1})  # fmt: skip
    for kind, suffix, pixels in (("images", ".jpg", picture()), ("masks", ".png", Image.fromarray(labels()))):
        folder = os.fsencode(data.parent / kind / "test")
        with open(folder + b"/bad\xff" + suffix.encode(), "wb") as file:
            pixels.save(file, format="JPEG" if suffix == ".jpg" else "PNG")
    return data


def test_an_image_named_in_bytes_that_are_not_utf8_has_an_id_utf8_can_hold(tmp_path):
    """Its id was the name's lone surrogate (U+DCFF), which split.json hid as an escape but every
    UTF-8 file `report` writes (per_image.csv) could not hold: a UnicodeEncodeError traceback. The
    id is now the name as fastseg prints it (`bad\\xff.jpg`, errors.bytes_escaped), still naming
    the file."""
    dataset = FolderDataset.from_file(bad_name_data_set(tmp_path))
    [bad] = [image_id for image_id in dataset.ids["test"] if image_id.startswith("images/test/bad")]
    assert bad == "images/test/bad\\xff.jpg"
    assert bad.encode("utf-8")
    assert os.fsencode(dataset.image_path(bad)).endswith(b"/bad\xff.jpg")
    assert dataset.read_mask(bad).shape == (30, 40)


@pytest.mark.slow
def test_report_writes_its_tables_for_an_image_named_in_bytes_that_are_not_utf8(tmp_path):
    data = bad_name_data_set(tmp_path)
    run = tmp_path / "run"
    tiny = ["--recipe", "seed", "--size", 32, "--no-pretrained", "--num-workers", 0, "--quiet"]
    trained = run_cli("train", "--data", data, "--out", run, *tiny, "--batch-size", 4, "--epochs", 1)
    assert trained.exit_code == 0, trained.output
    reported = run_cli("report", "--model", run, "--quiet", "--num-workers", 0)
    assert reported.exit_code == 0, reported.output
    assert "images/test/bad\\xff.jpg" in (run / "report" / "per_image.csv").read_text(encoding="utf-8")


def test_two_images_whose_ids_would_be_one_are_named_not_one_dropped(tmp_path):
    """With ids spelling such bytes `\\xff`, `bad\\xff.jpg` (bytes) and a file literally named
    `bad\\\\xff.jpg` share an id; the listing passed over a second image of an id without a word (it
    could not happen before, when ids were the names themselves). Both are named now."""
    data = bad_name_data_set(tmp_path)
    images, masks = data.parent / "images" / "test", data.parent / "masks" / "test"
    picture().save(images / "bad\\xff.jpg")
    Image.fromarray(labels()).save(masks / "bad\\xff.png")
    result = run_cli("check-data", "--data", data)
    assert result.exit_code == 1, result.output
    [line] = problem_lines(result)
    assert "its id 'images/test/bad\\\\xff.jpg' is also" in line and "rename one" in line


def test_a_mask_whose_exif_cannot_be_read_is_one_line(tmp_path):
    """Turning masks by their EXIF (above) read a damaged eXIf chunk, which Pillow raises as
    SyntaxError: a traceback out of check-data's threads. It is the 'cannot read mask' line now,
    as the same chunk in an image is load_rgb's 'corrupt or truncated image'."""
    data, images, masks = data_set(tmp_path)
    picture().save(images / "x.jpg")
    Image.fromarray(labels()).save(masks / "x.png", exif=b"garbage")
    result = run_cli("check-data", "--data", data)
    assert result.exit_code == 1, result.output
    [line] = problem_lines(result)
    assert line.startswith(f"{masks / 'x.png'}: cannot read mask (") and "TIFF" in line
