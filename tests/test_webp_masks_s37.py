"""WebP masks in a user's own data set: a lossless one is read (WebP has no grey mode, so a grey
index mask comes back as RGB of equal channels), a lossy one is refused as a JPEG is. Before,
a `.webp` mask was not looked for: check-data said "no mask" while the mask lay beside it."""

import numpy as np
import pytest
from click.testing import CliRunner
from demo_folder import make_demo_folder
from PIL import Image

from cli.main import main
from fastseg.data.dataset_file import read_dataset_file
from fastseg.data.folder_dataset import FolderDataset, _lossy_webp


def data_set(tmp_path):
    data = make_demo_folder(tmp_path / "data", ["background", "road", "car"], counts={"train": 3, "val": 2})
    return data, data.parent / "images" / "train", data.parent / "masks" / "train"


def labels(height=30, width=40):
    mask = np.zeros((height, width), np.uint8)
    mask[5:15, 5:20] = 1
    mask[18:25, 20:35] = 2
    return mask


def picture(height=30, width=40):
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8))


def check_data(data):
    result = CliRunner().invoke(main, ["check-data", "--data", str(data)])
    assert "Traceback" not in result.output
    return result


def read_back(data):
    """The mask of images/train/x.jpg as the data set reads it."""
    dataset = FolderDataset(read_dataset_file(data))
    [image_id] = [i for i in dataset.ids["train"] if i.endswith("x.jpg")]
    return dataset.read_mask(image_id)


def problem_lines(result):
    lines = result.output.splitlines()
    return [line for line in lines if line.startswith("/") and "dataset.yaml:" not in line]


def test_a_lossless_webp_index_mask_is_read_as_its_classes(tmp_path):
    data, images, masks = data_set(tmp_path)
    picture().save(images / "x.jpg")
    Image.fromarray(labels()).save(masks / "x.webp", lossless=True)
    result = check_data(data)
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(read_back(data), labels())


def test_a_lossy_webp_mask_is_refused_whatever_its_suffix(tmp_path):
    data, images, masks = data_set(tmp_path)
    picture().save(images / "x.jpg")
    Image.fromarray(labels()).save(masks / "x.png", format="WEBP", quality=80)  # a .png holding lossy WebP
    result = check_data(data)
    assert result.exit_code == 1, result.output
    [line] = problem_lines(result)
    assert line.startswith(f"{masks / 'x.png'}: mask is a lossy WebP") and "PNG" in line


def test_a_lossy_webp_with_alpha_is_found_lossy_past_its_alpha_chunk(tmp_path):
    """An extended WebP (VP8X) carries ALPH before its lossy VP8 bitstream."""
    rgba = Image.fromarray(np.dstack([labels()] * 3 + [np.full((30, 40), 200, np.uint8)]))
    rgba.save(tmp_path / "a.webp", quality=80)
    assert (tmp_path / "a.webp").read_bytes()[12:16] == b"VP8X"
    assert _lossy_webp(tmp_path / "a.webp")
    rgba.save(tmp_path / "b.webp", lossless=True)
    assert not _lossy_webp(tmp_path / "b.webp")


DAMAGED = [b"", b"RIFF\x00\x00\x00\x00WEBP", b"RIFF\x10\x00\x00\x00WEBPVP8X\xff\xff\xff\x7f", b"not a webp"]


@pytest.mark.parametrize("content", DAMAGED)
def test_a_damaged_webp_counts_as_lossy_never_as_a_mask(tmp_path, content):
    (tmp_path / "m.webp").write_bytes(content)
    assert _lossy_webp(tmp_path / "m.webp")


def test_a_colour_webp_index_mask_gets_the_colour_hint(tmp_path):
    data, images, masks = data_set(tmp_path)
    picture().save(images / "x.jpg")
    colour = np.dstack([labels() * 100, labels() * 50, labels()])
    Image.fromarray(colour).save(masks / "x.webp", lossless=True)
    [line] = problem_lines(check_data(data))
    assert line.startswith(f"{masks / 'x.webp'}: mask has mode RGB") and "mask_format: rgb" in line


def test_a_lossless_webp_colour_mask_is_read_by_its_colours(tmp_path):
    colours = [(0, 0, 0), (200, 30, 30), (30, 200, 30)]
    data = make_demo_folder(tmp_path / "data", ["background", "road", "car"], counts={"train": 3, "val": 2},
                            colors=colours, mask_format="rgb")  # fmt: skip
    images, masks = data.parent / "images" / "train", data.parent / "masks" / "train"
    picture().save(images / "x.jpg")
    Image.fromarray(np.array(colours, np.uint8)[labels()]).save(masks / "x.webp", lossless=True)
    assert check_data(data).exit_code == 0
    np.testing.assert_array_equal(read_back(data), labels())


def test_two_masks_one_webp_one_png_are_named(tmp_path):
    data, images, masks = data_set(tmp_path)
    picture().save(images / "x.jpg")
    Image.fromarray(labels()).save(masks / "x.png")
    Image.fromarray(labels()).save(masks / "x.webp", lossless=True)
    result = check_data(data)
    assert result.exit_code == 1
    assert any("x.png" in line and "x.webp" in line for line in problem_lines(result)), result.output


def test_an_animated_lossless_webp_mask_is_named_for_its_frames_not_as_lossy(tmp_path):
    """Its VP8L bitstreams sit inside ANMF chunks, so the chunk reader found none and said "lossy":
    the wrong advice (review)."""
    data, images, masks = data_set(tmp_path)
    picture().save(images / "x.jpg")
    frames = [Image.fromarray(labels()), Image.fromarray(labels()[::-1].copy())]
    frames[0].save(masks / "x.webp", save_all=True, append_images=frames[1:], lossless=True)
    [line] = problem_lines(check_data(data))
    assert line.startswith(f"{masks / 'x.webp'}: mask has 2 frames"), line


@pytest.mark.parametrize("mask_format", ["index", "rgb"])
def test_a_webp_mask_with_transparent_pixels_is_refused(tmp_path, mask_format):
    """libwebp's lossless default drops the colour under alpha 0 (to 0,0,0): read with alpha dropped,
    those pixels became black, a class if black is one; an index mask got the colour-mask hint."""
    colours = [(0, 0, 0), (200, 30, 30), (30, 200, 30)]
    data = make_demo_folder(tmp_path / "data", ["background", "road", "car"], counts={"train": 3, "val": 2},
                            colors=colours, mask_format=mask_format)  # fmt: skip
    images, masks = data.parent / "images" / "train", data.parent / "masks" / "train"
    picture().save(images / "x.jpg")
    alpha = np.full((30, 40), 255, np.uint8)
    alpha[:5] = 0
    painted = np.array(colours, np.uint8)[labels()] if mask_format == "rgb" else np.dstack([labels()] * 3)
    Image.fromarray(np.dstack([painted, alpha])).save(masks / "x.webp", lossless=True)
    [line] = problem_lines(check_data(data))
    assert line.startswith(f"{masks / 'x.webp'}: mask is a WebP with transparent pixels"), line


def test_an_opaque_rgba_webp_grey_mask_is_read_as_its_classes(tmp_path):
    data, images, masks = data_set(tmp_path)
    picture().save(images / "x.jpg")
    opaque = np.dstack([labels()] * 3 + [np.full((30, 40), 255, np.uint8)])
    Image.fromarray(opaque).save(masks / "x.webp", lossless=True)
    assert check_data(data).exit_code == 0
    np.testing.assert_array_equal(read_back(data), labels())
