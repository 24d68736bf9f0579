import numpy as np
import pytest
from fastai.vision.core import PILMask
from PIL import Image

from fastseg.data.check import check_dataset
from fastseg.data.split import Split
from fastseg.data.voc import find_voc
from fastseg.errors import DatasetError
from fastseg.imaging.masks import read_mask, write_mask


def test_find_voc_accepts_three_spellings_of_the_root(voc_root):
    expected = voc_root / "VOCdevkit" / "VOC2012"
    for path in (voc_root, voc_root / "VOCdevkit", expected):
        assert find_voc(path).root == expected


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(DatasetError, match="nowhere"):
        find_voc(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="no VOC2012 dataset"):
        find_voc(tmp_path)


def test_missing_list_file_is_named(voc_copy):
    folder = find_voc(voc_copy)
    folder.list_path("train").unlink()
    with pytest.raises(DatasetError, match=r"train\.txt: list file not found"):
        folder.ids("train")


def test_missing_image_is_named_before_work_starts(voc_copy):
    folder = find_voc(voc_copy)
    ids = folder.ids("train")
    folder.image_path(ids[3]).unlink()
    with pytest.raises(DatasetError, match=rf"{ids[3]}\.jpg: file not found"):
        folder.require_files(ids)


def test_palette_indices_survive_reading(tmp_path):
    """fastai's PILMask converts palette PNGs to grey (class 15 -> 147); read_mask must not."""
    labels = np.array([[0, 15, 20], [255, 1, 15]], dtype=np.uint8)
    path = write_mask(tmp_path / "m.png", labels)
    np.testing.assert_array_equal(read_mask(path), labels)
    assert 147 in np.array(PILMask.create(path)), "fastai behaviour changed: revisit read_mask's reason"


def test_verify_reports_each_problem_once(voc_copy):
    folder = find_voc(voc_copy)
    ids = folder.ids("train")
    folder.image_path(ids[0]).write_bytes(b"not a jpeg")
    write_mask(folder.mask_path(ids[1]), np.zeros((5, 5), np.uint8))
    mask = read_mask(folder.mask_path(ids[2]))
    mask[0, 0] = 99
    write_mask(folder.mask_path(ids[2]), mask)
    with pytest.raises(DatasetError) as raised:
        check_dataset(folder, Split(train=ids, valid=[], test=[]))
    header, *problems = str(raised.value).splitlines()
    assert header.startswith("3 problem(s) in ") and header.endswith("training not started:")
    assert len(problems) == 3
    assert f"{ids[0]}.jpg: cannot read image" in problems[0]
    assert f"{ids[1]}.png: mask is 5x5" in problems[1]
    assert "[99]" in problems[2]
    assert folder.inspect_pair(ids[3])[0] is None


def test_rgb_mask_is_refused(tmp_path):
    path = tmp_path / "rgb.png"
    Image.new("RGB", (4, 4)).save(path)
    with pytest.raises(DatasetError, match="mode RGB"):
        read_mask(path)
