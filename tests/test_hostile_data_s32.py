"""A stranger's hostile pass over the data-facing commands (`fastseg import`, `check-data`,
`runs`): each test is a defect found by it, and failed before its fix. A user's mistake is one
line naming the file and a non-zero exit, never a traceback; a damaged export never gives a mask
made of whatever memory pycocotools left uninitialised."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from test_import import encode_brush, write_image

from cli.main import main
from fastseg.importing import raster


def run_cli(*arguments):
    return CliRunner().invoke(main, [str(argument) for argument in arguments])


def assert_one_line_refusal(result, out, *texts):
    """Exit 1, no traceback, each text in the output, and nothing created at `out`."""
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, (TypeError, ValueError, RuntimeError, OverflowError, OSError)), (
        result.exception
    )
    assert "Traceback" not in result.output
    for text in texts:
        assert text in result.output, (text, result.output)
    if out is not None:
        assert not out.exists()


# --- COCO -------------------------------------------------------------------------------------------


def coco(folder, images=None, annotations=None):
    """`folder/c.json` over four 40x30 images i0..i3.png and one class `cat`."""
    for index in range(4):
        write_image(folder / f"i{index}.png", 40, 30, seed=index)
    images = images or [
        {"id": index, "file_name": f"i{index}.png", "width": 40, "height": 30} for index in range(4)
    ]
    annotations = annotations or [
        {"id": 1, "image_id": 0, "category_id": 1, "segmentation": [[1, 1, 10, 1, 10, 10]], "iscrowd": 0}
    ]
    path = folder / "c.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "cat"}]}))  # fmt: skip
    return path


@pytest.mark.parametrize("counts", ["", "0", "12", "zzzzzzzz", "1" * 40])
def test_a_compressed_rle_short_of_its_size_is_a_problem_not_uninitialised_memory(tmp_path, counts):
    """pycocotools decodes a compressed RLE string whose runs do not add up to its size without a
    word: the mask came out of uninitialised memory (values other than 0 and 1, different on each
    run), and the import drew it as the class."""
    rle = {"size": [30, 40], "counts": counts}
    path = coco(tmp_path / "export", annotations=[
        {"id": 1, "image_id": 0, "category_id": 1, "segmentation": rle, "iscrowd": 0}])  # fmt: skip
    result = run_cli("import", "coco", path, "--out", tmp_path / "ds", "--quiet")
    assert_one_line_refusal(result, tmp_path / "ds", "c.json: annotation 1", "RLE", "1 problem(s)")


def test_a_valid_compressed_rle_still_decodes_as_pycocotools_does():
    from pycocotools import mask as coco_mask

    box = np.zeros((30, 40), dtype=np.uint8)
    box[5:20, 7:33] = 1
    box[0, 0] = box[29, 39] = 1
    encoded = coco_mask.encode(np.asfortranarray(box))
    drawn = raster.coco_rle({"size": [30, 40], "counts": encoded["counts"].decode()}, 30, 40)
    assert np.array_equal(drawn, box.astype(bool))
    with pytest.raises(ValueError, match="cover"):
        raster.coco_rle({"size": [30, 41], "counts": encoded["counts"].decode()}, 30, 41)


@pytest.mark.parametrize(
    "where, value",
    [("image id", [0]), ("image id", {"a": 1}), ("image_id", [0]), ("category_id", [1]), ("category_id", {})],
)
def test_coco_ids_that_are_lists_or_objects_are_problems_not_tracebacks(tmp_path, where, value):
    """`image_id: [0]` was `TypeError: unhashable type: 'list'` (dict lookups of the ids)."""
    images = [{"id": index, "file_name": f"i{index}.png", "width": 40, "height": 30} for index in range(4)]
    annotation = {
        "id": 1,
        "image_id": 0,
        "category_id": 1,
        "segmentation": [[1, 1, 10, 1, 10, 10]],
        "iscrowd": 0,
    }
    if where == "image id":
        images[0]["id"] = value
        annotation["image_id"] = 1
    else:
        annotation[where] = value
    path = coco(tmp_path / "export", images=images, annotations=[annotation])
    result = run_cli("import", "coco", path, "--out", tmp_path / "ds", "--quiet")
    assert_one_line_refusal(result, tmp_path / "ds", "c.json", "1 problem(s)")


@pytest.mark.parametrize("crowd", [{}, [], "", 1.5])
def test_an_iscrowd_that_is_no_0_or_1_is_a_problem_even_when_empty(tmp_path, crowd):
    """`iscrowd: {}`, `[]` or `""` were read as 0 (`or 0`): a malformed field passed as a class."""
    triangle = [[1, 1, 10, 1, 10, 10]]
    annotation = {"id": 1, "image_id": 0, "category_id": 1, "segmentation": triangle, "iscrowd": crowd}
    path = coco(tmp_path / "export", annotations=[annotation])
    result = run_cli("import", "coco", path, "--out", tmp_path / "ds", "--quiet")
    assert_one_line_refusal(result, tmp_path / "ds", "iscrowd", "neither 0 nor 1")


# --- Label Studio -----------------------------------------------------------------------------------


def labelstudio(folder, first):
    """`folder/t.json`: task 0 is `first` (changed by the test), tasks 1-3 plain images i1..i3."""
    for index in range(4):
        write_image(folder / f"i{index}.png", 40, 30, seed=index)
    tasks = [
        first,
        *({"id": index, "data": {"image": f"/data/upload/1/i{index}.png"}} for index in range(1, 4)),
    ]
    path = folder / "t.json"
    path.write_text(json.dumps(tasks))
    return path


def brush(rle):
    value = {"format": "rle", "rle": rle, "brushlabels": ["cat"]}
    return {"type": "brushlabels", "original_width": 40, "original_height": 30, "value": value}


TASK = {"id": 0, "data": {"image": "/data/upload/1/i0.png"}}
WIDE_WORDS = np.zeros((30, 40, 4), dtype=np.int64)
WIDE_WORDS[..., 3] = 300  # a 16-bit word above a byte


@pytest.mark.parametrize(
    "task, texts",
    [
        ({**TASK, "annotations": 5}, ["task 0", "annotations"]),
        ({**TASK, "annotations": [{"result": 7}]}, ["task 0", "result"]),
        ({**TASK, "annotations": [{"result": [{"type": [], "value": {}}]}]}, ["task 0 result 0"]),
        ({**TASK, "data": {"image": "http://[::1/i0.png"}}, ["task 0", "image"]),
        (
            {**TASK, "annotations": [{"result": [brush(encode_brush(WIDE_WORDS.ravel().tolist(), 16))]}]},
            ["task 0 result 0 (cat, brush)", "rle"],
        ),
    ],
    ids=["annotations-number", "result-number", "type-list", "bad-url", "brush-16-bit-words"],
)
def test_labelstudio_malformed_fields_are_problems_not_tracebacks(tmp_path, task, texts):
    """Each was a TypeError, ValueError (urlparse's "Invalid IPv6 URL") or OverflowError (a brush
    word past a byte stored in a uint8 array) traceback."""
    path = labelstudio(tmp_path / "export", task)
    result = run_cli("import", "labelstudio", path, "--out", tmp_path / "ds", "--quiet")
    assert_one_line_refusal(result, tmp_path / "ds", "t.json", *texts)


# --- CVAT, label PNGs -------------------------------------------------------------------------------


def cvat_xml(folder, shape):
    for index in range(4):
        write_image(folder / "images" / f"i{index}.png", 40, 30, seed=index)
    shapes = [shape, "", "", ""]
    images = "".join(
        f'<image id="{index}" name="i{index}.png" width="40" height="30">{shapes[index]}</image>'
        for index in range(4)
    )
    meta = "<meta><task><labels><label><name>cat</name><color>#ff0000</color></label></labels></task></meta>"
    path = folder / "annotations.xml"
    path.write_text(f"<annotations>{meta}{images}</annotations>")
    return path


@pytest.mark.parametrize(
    "corner, expected", [((-1, -1), (slice(0, 4), slice(0, 4))), ((36, 26), (slice(26, 30), slice(36, 40)))]
)
def test_a_cvat_mask_a_pixel_past_the_edge_is_cut_off_not_a_traceback(tmp_path, corner, expected):
    """A mask box starting at -1 (within the edge tolerance every shape gets) was a numpy broadcast
    ValueError traceback; its pixels inside the image are drawn, as at the far edge."""
    left, top = corner
    path = cvat_xml(
        tmp_path / "export", f'<mask label="cat" left="{left}" top="{top}" width="5" height="5" rle="0,25"/>'
    )
    result = run_cli("import", "cvat", path, "--out", tmp_path / "ds", "--quiet", "--test", 0, "--val", 0.25)
    assert result.exit_code == 0, (result.output, result.exception)
    mask = np.asarray(Image.open(next((tmp_path / "ds" / "masks").rglob("i0.png"))))
    wanted = np.zeros((30, 40), dtype=np.uint8)
    wanted[expected] = 1
    assert np.array_equal(mask, wanted)


def test_a_cvat_mask_is_not_unpacked_before_its_box_is_checked_against_the_image(tmp_path, monkeypatch):
    """A 100000x30000 mask of one run was unpacked (3 GB) while the XML was read, before its box
    was found to lie outside the 40x30 image."""
    unpacked = []
    monkeypatch.setattr(
        raster, "runs", lambda *args, **kwargs: unpacked.append(args) or np.zeros((1, 1), bool)
    )
    path = cvat_xml(
        tmp_path / "export",
        '<mask label="cat" left="0" top="0" width="100000" height="30000" rle="0,3000000000"/>',
    )
    result = run_cli("import", "cvat", path, "--out", tmp_path / "ds", "--quiet")
    assert_one_line_refusal(result, tmp_path / "ds", "lies outside the 40x30 image")
    assert unpacked == []


def cityscapes(root, first_mask):
    """Three Cityscapes pairs (2 train, 1 val), 40x30, road everywhere; the first mask's bytes given."""
    for split, stems in (("train", ("t0", "t1")), ("val", ("v0",))):
        for stem in stems:
            write_image(root / "leftImg8bit" / split / "c" / f"{stem}_leftImg8bit.png", 40, 30)
            mask = root / "gtFine" / split / "c" / f"{stem}_gtFine_labelIds.png"
            mask.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((30, 40), 7, np.uint8)).save(mask)
    (root / "gtFine" / "train" / "c" / "t0_gtFine_labelIds.png").write_bytes(first_mask)


def test_a_label_png_past_pillows_pixel_limit_is_a_problem_not_a_traceback(tmp_path, monkeypatch):
    """`Image.DecompressionBombError` (a mask of more pixels than Pillow opens) escaped
    `label_values` (Cityscapes, ADE20K), the CVAT colour masks and LabelMe's mask shapes: a
    traceback from the drawing thread. The limit is lowered so a small mask is "too large" (not
    the 40x30 images)."""
    import io

    encoded = io.BytesIO()
    Image.fromarray(np.full((100, 100), 7, np.uint8)).save(encoded, "PNG")
    cityscapes(tmp_path / "city", encoded.getvalue())
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # the mask's 10000 pixels: past twice it
    result = run_cli("import", "cityscapes", tmp_path / "city", "--out", tmp_path / "ds", "--quiet")
    assert_one_line_refusal(result, tmp_path / "ds", "t0_gtFine_labelIds.png", "cannot read")


# --- symbolic link loops and names no file system takes ----------------------------------------------


def test_an_image_path_through_a_symlink_loop_is_a_problem_not_a_traceback(tmp_path):
    """Python 3.11's `Path.resolve` raises RuntimeError("Symlink loop") where later versions raise
    OSError: `image_under`, which caught only OSError and ValueError, let it through."""
    images = [{"id": index, "file_name": f"i{index}.png", "width": 40, "height": 30} for index in range(4)]
    images.append({"id": 9, "file_name": "loop/x.png", "width": 40, "height": 30})
    path = coco(tmp_path / "export", images=images)
    os.symlink("loop", tmp_path / "export" / "loop")
    result = run_cli("import", "coco", path, "--out", tmp_path / "ds", "--quiet")
    assert_one_line_refusal(result, tmp_path / "ds", "image 9 (loop/x.png)", "cannot be used")


def test_a_cvat_mask_list_naming_a_loop_or_an_overlong_name_is_a_problem(tmp_path):
    root = tmp_path / "cvat"
    (root / "SegmentationClass").mkdir(parents=True)
    (root / "labelmap.txt").write_text("background:0,0,0::\ncat:255,0,0::\n")
    os.symlink("loop.png", root / "SegmentationClass" / "loop.png")
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text(f"loop\n{'x' * 300}\n")
    result = run_cli("import", "cvat", root, "--out", tmp_path / "ds", "--quiet")
    assert_one_line_refusal(result, tmp_path / "ds", "loop: ", "x" * 300 + ": ", "cannot be used")


def own_data(root, **changes):
    """A dataset.yaml folder: 3 train and 2 val 40x30 pairs of classes bg, cat; `changes` to the YAML."""
    for split, count in (("train", 3), ("val", 2)):
        for index in range(count):
            write_image(root / "images" / split / f"{split}{index}.png", 40, 30, seed=index)
            (root / "masks" / split).mkdir(parents=True, exist_ok=True)
            mask = np.zeros((30, 40), np.uint8)
            mask[:10] = 1
            Image.fromarray(mask).save(root / "masks" / split / f"{split}{index}.png")
    values = {"names": ["bg", "cat"], "train": "images/train", "val": "images/val", **changes}
    (root / "dataset.yaml").write_text(json.dumps(values))  # JSON is YAML
    return root / "dataset.yaml"


@pytest.mark.parametrize(
    "changes, texts",
    [
        ({"train": "images/loop"}, ["train: 'images/loop' cannot be used"]),
        ({"train": "images/loop/x"}, ["train: 'images/loop/x' cannot be used"]),
        ({"train": "t" * 300}, ["train: ", "cannot be used (File name too long)"]),
        ({"masks": "m" * 300}, ["masks: ", "cannot be used (File name too long)"]),
    ],
    ids=["split-loop", "split-through-loop", "split-too-long", "masks-too-long"],
)
def test_dataset_yaml_paths_through_a_loop_or_too_long_are_named_not_tracebacks(tmp_path, changes, texts):
    """check-data on a split or masks folder a file system cannot open was RuntimeError (a symlink
    loop, Python 3.11) or OSError ENAMETOOLONG: a traceback, where every other problem of
    dataset.yaml is a line naming it."""
    data = own_data(tmp_path / "data", **changes)
    os.symlink("loop", tmp_path / "data" / "images" / "loop")
    result = run_cli("check-data", "--data", data, "--quiet")
    assert_one_line_refusal(result, None, "dataset.yaml: ", *texts)


def test_a_split_list_entry_through_a_loop_or_too_long_is_a_problem_of_its_line(tmp_path):
    data = own_data(tmp_path / "data", train="train.txt")
    (tmp_path / "data" / "train.txt").write_text(f"train/train0\nloop/x\n{'y' * 300}\ntrain/train1\n")
    os.symlink("loop", tmp_path / "data" / "images" / "loop")
    result = run_cli("check-data", "--data", data, "--quiet")
    assert_one_line_refusal(result, None, "train.txt:2: 'loop/x' cannot be used", "train.txt:3: ")
    assert "2 problem(s)" in result.output


# --- check-data: what train refuses --------------------------------------------------------------


def test_check_data_names_images_in_two_splits_which_train_refuses(tmp_path):
    """`val: images/train` passed check-data ("no problems found") while `train` refused the same
    data set at once (images in both train and val: the scores would leak)."""
    data = own_data(tmp_path / "data", val="images/train")
    result = run_cli("check-data", "--data", data, "--quiet")
    assert result.exit_code == 1, result.output
    assert "3 images are in both train and val" in result.output
    assert "no problems found" not in result.output


# --- ~user -------------------------------------------------------------------------------------------

UNKNOWN_HOME = "~no-such-user-s32"


def test_an_unknown_users_home_in_data_is_a_missing_folder_not_a_traceback(tmp_path):
    """`Path.expanduser` raises RuntimeError for `~name` of no user (the shell leaves it as
    written): check-data was a traceback."""
    result = run_cli("check-data", "--data", f"{UNKNOWN_HOME}/data", "--quiet")
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, RuntimeError), result.exception
    assert f"{UNKNOWN_HOME}/data: data folder not found" in result.output  # as any missing folder


def test_runs_shows_a_run_whose_data_names_an_unknown_users_home(tmp_path):
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "config.json").write_text(
        json.dumps({"train": {"recipe": "fast", "data": f"{UNKNOWN_HOME}/cats"}})
    )
    (run / "history.csv").write_text("epoch,valid_miou,valid_pixel_accuracy,time\n0,0.5,0.8,00:10\n")
    result = run_cli("runs", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    row = result.output.splitlines()[1].split()
    assert row[:3] == ["r1", "fast", "cats"] and "damaged" not in result.output


def test_a_model_folder_under_an_unknown_users_home_is_not_a_run_folder():
    from fastseg.errors import FastsegError
    from fastseg.runs.folder import RunFolder

    with pytest.raises(FastsegError, match="not a run folder"):
        RunFolder.of_model(f"{UNKNOWN_HOME}/run")


# --- show-data ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["train_ds_sample.png", "val_ds_sample.png"])
def test_show_data_never_replaces_a_users_file_of_a_samples_name(tmp_path, name):
    """show-data wrote its samples over whatever --out held under their names (a user's photo,
    any file): an output may replace only fastseg's own file of that role."""
    data = own_data(tmp_path / "data")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / name).write_bytes(b"my holiday photo")
    result = run_cli("show-data", "--data", data, "--out", tmp_path / "out", "--size", 32, "--rows", 1)
    assert_one_line_refusal(result, None, name, "fastseg did not write")
    assert (tmp_path / "out" / name).read_bytes() == b"my holiday photo"
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [name]


@pytest.mark.slow
def test_show_data_replaces_its_own_samples_and_fits_rows_to_a_small_data_set(tmp_path):
    """3 training images and the default 4 rows: fastai's training loader (drop_last) held no batch,
    a `ValueError: This DataLoader does not contain any batches` traceback. The rows shrink to
    the images there are; a second run replaces the first run's samples."""
    data = own_data(tmp_path / "data")
    for _ in range(2):
        result = run_cli("show-data", "--data", data, "--out", tmp_path / "out", "--size", 32)
        assert result.exit_code == 0, (result.output, result.exception)
        assert "note: 1 row(s)" in result.output  # val's 2 images halved: 1 validation image
    for name in ("train_ds_sample.png", "val_ds_sample.png"):
        with Image.open(tmp_path / "out" / name) as image:
            assert image.format == "PNG" and image.info.get("fastseg") == "data sample"  # guard reads it


# --- runs --------------------------------------------------------------------------------------------


def test_runs_keeps_one_line_per_run_whatever_its_folder_or_data_name_holds(tmp_path):
    """A run folder named with a newline (or a config.json's data with one, or a NUL) broke the
    table's one row per run: the name was printed as it is, across two lines."""
    runs = tmp_path / "runs"
    for name, data in (("a\nb<i>", "cats/dataset.yaml"), ("r2", "dogs\n\x00x")):
        (runs / name).mkdir(parents=True)
        (runs / name / "config.json").write_text(json.dumps({"train": {"recipe": "fast", "data": data}}))
        (runs / name / "history.csv").write_text(
            "epoch,valid_miou,valid_pixel_accuracy,time\n0,0.5,0.8,00:10\n"
        )
    result = run_cli("runs", runs)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3, lines
    assert "\x00" not in result.output
    assert any(line.startswith("a\\nb<i> ") for line in lines)
    rows = json.loads(run_cli("runs", runs, "--json").output)  # JSON: the names as they are
    assert sorted(row["name"] for row in rows) == ["a\nb<i>", "r2"]


# --- YOLO: paths a file system cannot open --------------------------------------------------------


def yolo_export(root, **changes):
    for split, count in (("train", 3), ("val", 1)):
        for index in range(count):
            write_image(root / "images" / split / f"{split}{index}.png", 40, 30, seed=index)
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split / f"{split}{index}.txt").write_text("0 0.1 0.1 0.5 0.1 0.5 0.5\n")
    values = {"names": ["cat"], "train": "images/train", "val": "images/val", **changes}
    (root / "data.yaml").write_text(json.dumps(values))
    return root / "data.yaml"


@pytest.mark.parametrize(
    "changes, texts",
    [
        ({"path": "p" * 300}, ["data.yaml: path: ", "cannot be used (File name too long)"]),
        ({"train": "t" * 300}, ["data.yaml: train: ", "cannot be used (File name too long)"]),
        ({"train": "list.txt"}, ["zzzz", "cannot be used (File name too long)"]),
    ],
    ids=["path", "split", "list-line"],
)
def test_yolo_names_past_the_file_systems_limit_are_problems_not_tracebacks(tmp_path, changes, texts):
    """data.yaml's `path`, a split, or a line of a split's .txt list longer than a file name may
    be was an OSError ENAMETOOLONG traceback (from the reader, or from the writer's threads)."""
    data = yolo_export(tmp_path / "yolo", **changes)
    (tmp_path / "yolo" / "list.txt").write_text(f"images/train/train0.png\n{'z' * 300}.png\n")
    result = run_cli("import", "yolo", data, "--out", tmp_path / "ds", "--quiet")
    assert_one_line_refusal(result, tmp_path / "ds", *texts)


# --- import: the destination -------------------------------------------------------------------------


def test_a_refused_import_leaves_no_folder_it_made_for_out(tmp_path):
    """`--out new/deeper/ds`, refused for an image found missing while writing, said "ds was not
    created" but left the empty folders new/deeper it had made for its temporary folder."""
    path = coco(tmp_path / "export")
    (tmp_path / "export" / "i2.png").unlink()  # no problem of the JSON: found while writing
    (tmp_path / "work").mkdir()
    result = run_cli("import", "coco", path, "--out", tmp_path / "work" / "new" / "deeper" / "ds", "--quiet")
    assert_one_line_refusal(result, None, "i2.png", "not found", "was not created")
    assert list((tmp_path / "work").iterdir()) == []


@pytest.mark.parametrize("out", ["x/..", "y/../ds"])
def test_an_out_through_dot_dot_is_the_folder_it_names_and_leaves_no_stray_folder(tmp_path, out):
    """`--out work/x/..` made work/x (the temporary's parent), then failed to rename onto `..` and
    blamed "another import"; `work/y/../ds` imported into work/ds but left an empty work/y."""
    path = coco(tmp_path / "export")
    (tmp_path / "work").mkdir()
    result = run_cli("import", "coco", path, "--out", f"{tmp_path / 'work'}/{out}", "--quiet")
    if out == "x/..":  # work itself: it exists
        assert_one_line_refusal(result, None, "already exists")
        assert list((tmp_path / "work").iterdir()) == []
    else:
        assert result.exit_code == 0, result.output
        assert sorted(path.name for path in (tmp_path / "work").iterdir()) == ["ds"]


def test_a_labelstudio_brush_is_not_decoded_before_its_image_size_is_checked(tmp_path, monkeypatch):
    """A brush whose header claims a 32768 x 32767 RGBA image (4 GB of values, in a few bytes of
    JSON) was decoded while the export was read, before the 40x30 image refused it."""
    from fastseg.importing import labelstudio as reader

    decoded = []
    monkeypatch.setattr(reader, "decode_brush", lambda *args: decoded.append(args) or np.zeros((1, 1)))
    width, height = 32768, 32767
    header = list((width * height * 4).to_bytes(4, "big")) + [0] * 8
    claim = {**brush(header), "original_width": width, "original_height": height}
    path = labelstudio(tmp_path / "export", {**TASK, "annotations": [{"result": [claim]}]})
    result = run_cli("import", "labelstudio", path, "--out", tmp_path / "ds", "--quiet")
    assert_one_line_refusal(result, tmp_path / "ds", "image is 40x30, the annotation says 32768x32767")
    assert decoded == []


def test_check_data_names_training_masks_that_label_no_pixel_which_train_refuses(tmp_path):
    """Every training mask all void (255): check-data said "no problems found", train refused the
    data set at once ("the training masks label no pixel")."""
    data = own_data(tmp_path / "data", names=["bg", "cat", "dog"])
    for mask in (tmp_path / "data" / "masks" / "train").glob("*.png"):
        Image.fromarray(np.full((30, 40), 255, np.uint8)).save(mask)
    result = run_cli("check-data", "--data", data, "--quiet")
    assert result.exit_code == 1, result.output
    assert "the training masks label no pixel (all 3 are void)" in result.output
    assert "no problems found" not in result.output


@pytest.mark.parametrize("files", [5, None, [[1]], "dataset.yaml"], ids=["number", "null", "nested", "text"])
def test_a_damaged_import_marker_makes_the_folder_foreign_not_a_traceback(tmp_path, files):
    """`.fastseg-import.json` whose `files` is no list of names (edited by hand, damaged) was a
    TypeError traceback under --force; the folder is then not known to be an import's: refused,
    every file kept."""
    path = coco(tmp_path / "export")
    assert run_cli("import", "coco", path, "--out", tmp_path / "ds", "--quiet").exit_code == 0
    marker = tmp_path / "ds" / ".fastseg-import.json"
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "files": files}))
    before = sorted(str(path.relative_to(tmp_path)) for path in (tmp_path / "ds").rglob("*"))
    result = run_cli("import", "coco", path, "--out", tmp_path / "ds", "--quiet", "--force")
    assert_one_line_refusal(result, None, "--force replaces only what an earlier fastseg import wrote")
    assert sorted(str(path.relative_to(tmp_path)) for path in (tmp_path / "ds").rglob("*")) == before


def test_a_label_png_that_is_a_named_pipe_is_a_problem_not_a_hang(tmp_path):
    """Cityscapes / ADE20K label PNGs are globbed, not checked to be files: a FIFO named like one
    blocked the import forever in Pillow's open (structured files refuse FIFOs; masks did not)."""
    import threading

    cityscapes(tmp_path / "city", b"")
    mask = tmp_path / "city" / "gtFine" / "train" / "c" / "t0_gtFine_labelIds.png"
    mask.unlink()
    os.mkfifo(mask)
    outcome = []
    worker = threading.Thread(
        target=lambda: outcome.append(
            run_cli("import", "cityscapes", tmp_path / "city", "--out", tmp_path / "ds", "--quiet")
        ),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=10)  # the import itself takes well under a second
    if worker.is_alive():  # unblock the reader, so the thread ends, then fail
        with open(mask, "wb"):
            pass
        worker.join(timeout=30)
        pytest.fail("the import blocked on a named pipe")
    assert_one_line_refusal(outcome[0], tmp_path / "ds", "t0_gtFine_labelIds.png", "not a regular file")


def test_a_cvat_subset_list_that_is_a_named_pipe_is_a_problem_not_a_hang(tmp_path):
    import threading

    root = tmp_path / "cvat"
    (root / "SegmentationClass").mkdir(parents=True)
    (root / "labelmap.txt").write_text("background:0,0,0::\ncat:255,0,0::\n")
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    listing = root / "ImageSets" / "Segmentation" / "train.txt"
    os.mkfifo(listing)
    outcome = []
    worker = threading.Thread(
        target=lambda: outcome.append(run_cli("import", "cvat", root, "--out", tmp_path / "ds", "--quiet")),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():
        with open(listing, "wb"):
            pass
        worker.join(timeout=30)
        pytest.fail("the import blocked on a named pipe")
    assert_one_line_refusal(outcome[0], tmp_path / "ds", "train.txt: not a regular file")


def test_classes_picks_from_an_export_of_more_than_256_categories(tmp_path):
    """--classes on a COCO export declaring 300 categories (LVIS declares 1203) was an IndexError
    traceback: the drawn-mask lookup of 256 entries was filled for every declared category."""
    path = coco(tmp_path / "export")
    data = json.loads(path.read_text())
    data["categories"] = [{"id": index, "name": f"c{index}"} for index in range(1, 301)]
    path.write_text(json.dumps(data))
    result = run_cli("import", "coco", path, "--out", tmp_path / "ds", "--quiet", "--classes", "c1")
    assert result.exit_code == 0, (result.output, result.exception)
    mask = np.asarray(Image.open(next((tmp_path / "ds" / "masks").rglob("i0.png"))))
    assert set(np.unique(mask).tolist()) == {0, 1}


def test_the_run_lock_never_writes_through_a_symbolic_link(tmp_path):
    """`RUN/.fastseg.lock` as a symbolic link to another file: train's lock opened it through the
    link, truncated it and wrote its process id there (a user's file, anywhere root can write)."""
    from fastseg.errors import FastsegError
    from fastseg.folder_lock import LOCK, holding

    precious = tmp_path / "precious.txt"
    precious.write_text("a user's notes")
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(precious, run / LOCK)
    with pytest.raises(FastsegError, match="symbolic link"), holding(run, "train", "hint"):
        pass
    assert precious.read_text() == "a user's notes"
    assert (run / LOCK).is_symlink()


def test_check_data_keeps_one_line_per_problem_when_a_file_name_holds_a_newline(tmp_path):
    """An image named "a\\nb.png" without a mask printed its problem across two lines (the import
    escapes such names; check-data printed them raw)."""
    data = own_data(tmp_path / "data")
    write_image(tmp_path / "data" / "images" / "train" / "a\nb.png", 40, 30)
    result = run_cli("check-data", "--data", data, "--quiet")
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    problem = [line for line in lines if "no mask" in line]
    assert len(problem) == 1 and "a\\nb.png: no mask" in problem[0], lines
    assert not any(line.startswith("b.png") for line in lines)


def test_an_ade20k_class_list_with_a_superscript_digit_index_is_a_problem_not_a_traceback(tmp_path):
    """`"²".isdigit()` is True and `int("²")` a ValueError: a damaged objectInfo150.txt row was a
    traceback instead of the list's one-line problem."""
    root = tmp_path / "ADEChallengeData2016"
    rows = ["Idx\tRatio\tTrain\tVal\tName", "²\t0.01\t10\t1\twall"]
    rows += [f"{index}\t0.01\t10\t1\tthing{index}" for index in range(2, 151)]
    root.mkdir()
    (root / "objectInfo150.txt").write_text("\n".join(rows) + "\n")
    for folder in ("training", "validation"):
        (root / "annotations" / folder).mkdir(parents=True)
    result = run_cli("import", "ade20k", root, "--out", tmp_path / "ds", "--quiet")
    assert_one_line_refusal(result, tmp_path / "ds", "objectInfo150.txt: expected 150 rows Idx 1-150")


def test_digits_int_refuses_are_no_process_id_epoch_or_time(tmp_path):
    """`str.isdigit` is True for "²", which `int()` refuses: a folder `.ds.import.².tmp` beside
    --out made every import a ValueError traceback; a history.csv time `0²:10` made `runs` call
    the run damaged and an epoch `²` made resume's `rows_before` a traceback."""
    from fastseg.runs.history import rows_before

    path = coco(tmp_path / "export")
    (tmp_path / ".ds.import.².tmp").mkdir()
    result = run_cli("import", "coco", path, "--out", tmp_path / "ds", "--quiet")
    assert result.exit_code == 0, (result.output, result.exception)
    assert (tmp_path / ".ds.import.².tmp").is_dir()  # not ours: left alone

    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"train": {"recipe": "fast", "data": "cats/dataset.yaml"}}))
    history = "epoch,valid_miou,valid_pixel_accuracy,time\n0,0.5,0.8,00:10\n²,0.6,0.9,0²:10\n"
    (run / "history.csv").write_text(history)
    result = run_cli("runs", tmp_path / "runs")
    assert result.exit_code == 0 and "damaged" not in result.output, result.output
    assert "0m10s" in result.output
    assert rows_before(run / "history.csv", 5) == ["0,0.5,0.8,00:10"]


def test_a_history_that_is_not_utf8_is_one_line_for_resume(tmp_path):
    """resume keeps history.csv's earlier rows (`rows_before`), read with the locale's codec and
    no error handling: a damaged (not UTF-8) file was a UnicodeDecodeError traceback, where every
    other reader of history.csv names the file."""
    from fastseg.errors import FastsegError
    from fastseg.runs.history import rows_before

    path = tmp_path / "history.csv"
    path.write_bytes(b"epoch,valid_miou\n0,0.5\n\xff\xfe,1\n")
    with pytest.raises(FastsegError, match="history.csv: not UTF-8 text"):
        rows_before(path, 5)
