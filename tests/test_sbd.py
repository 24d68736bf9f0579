"""SBD trainaug on generated SBD-format data: conversion, the union rule, no val leak, CLI, training list."""

import hashlib
import io
import tarfile

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy.io import savemat

from cli.main import main
from fastseg.data.sbd import build_trainaug, read_sbd_mask, trainaug_ids
from fastseg.data.split import seed_split
from fastseg.data.voc import find_voc
from fastseg.errors import DatasetError
from fastseg.imaging.masks import read_mask


def make_sbd(dataset, ids_train, ids_val, voc, size=(24, 20)):
    """`benchmark_RELEASE/dataset` layout: cls/<id>.mat (GTcls.Segmentation), img/<id>.jpg, lists."""
    (dataset / "cls").mkdir(parents=True)
    (dataset / "img").mkdir()
    for index, image_id in enumerate(ids_train + ids_val):
        labels = np.zeros(size[::-1], np.uint8)
        labels[2:10, 3:12] = 1 + index % 20
        savemat(dataset / "cls" / f"{image_id}.mat", {"GTcls": {"Segmentation": labels, "Boundaries": []}})
        Image.new("RGB", size, (index, 0, 0)).save(dataset / "img" / f"{image_id}.jpg")
    (dataset / "train.txt").write_text("\n".join(ids_train) + "\n")
    (dataset / "val.txt").write_text("\n".join(ids_val) + "\n")


def test_trainaug_rule_is_union_minus_voc_val():
    ids = trainaug_ids(voc_train=["a", "b"], voc_val=["c", "d"], sbd=["b", "c", "e", "f"])
    assert ids == ["a", "b", "e", "f"]


def test_mat_labels_are_read_as_class_indices(tmp_path):
    labels = np.array([[0, 15], [20, 3]], np.uint8)
    savemat(tmp_path / "x.mat", {"GTcls": {"Segmentation": labels}})
    np.testing.assert_array_equal(read_sbd_mask(tmp_path / "x.mat"), labels)
    (tmp_path / "bad.mat").write_bytes(b"nope")
    with pytest.raises(DatasetError, match="bad.mat"):
        read_sbd_mask(tmp_path / "bad.mat")


def test_build_trainaug_converts_only_what_voc_lacks_and_never_leaks_val(voc_copy):
    voc = find_voc(voc_copy)
    voc_train, voc_val = voc.ids("train"), voc.ids("val")
    sbd_only = ["2011_000001", "2011_000002"]
    # SBD also holds a VOC train id and a VOC val id: the first keeps VOC's mask, the second is dropped
    make_sbd(voc_copy / "sbd", sbd_only + [voc_train[0]], [voc_val[0]], voc)
    ids = build_trainaug(voc, voc_copy / "sbd")
    assert ids == sorted(set(voc_train) | set(sbd_only))
    assert not set(ids) & set(voc_val)
    assert voc.ids("trainaug") == ids
    assert voc.mask_path(sbd_only[0]).parent.name == "SegmentationClassAug"
    assert read_mask(voc.mask_path(sbd_only[1])).max() == 2  # labels[...] = 1 + index
    assert voc.mask_path(voc_train[0]).parent.name == "SegmentationClass"
    assert voc.image_path(sbd_only[0]).is_file()  # JPEG brought over from SBD
    split = seed_split(voc.ids("trainaug"), voc_val)
    assert not set(split.train) & (set(split.valid) | set(split.test))


def test_a_training_list_overlapping_val_is_refused():
    with pytest.raises(DatasetError, match="leak"):
        seed_split(["a", "b"], ["b", "c"])


def test_missing_trainaug_list_says_how_to_build_it(voc_root):
    with pytest.raises(DatasetError, match="download --sbd"):
        find_voc(voc_root).ids("trainaug")


def test_cli_download_sbd_from_a_tar_put_by_hand(voc_copy):
    """No network: VOC is extracted already, benchmark.tgz lies in the root with its MD5 given."""
    sbd_root = voc_copy / "staging"
    make_sbd(sbd_root / "benchmark_RELEASE" / "dataset", ["2011_000007"], ["2011_000008"], None)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(sbd_root / "benchmark_RELEASE", arcname="benchmark_RELEASE")
    (voc_copy / "benchmark.tgz").write_bytes(buffer.getvalue())
    md5 = hashlib.md5(buffer.getvalue()).hexdigest()
    result = CliRunner().invoke(main, ["download", "--root", str(voc_copy), "--sbd", "--sbd-md5", md5,
                                       "--sbd-url", "http://127.0.0.1:9/never-used", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    voc = find_voc(voc_copy)
    assert {"2011_000007", "2011_000008"} <= set(voc.ids("trainaug"))
    assert "--train-set trainaug" in result.output
