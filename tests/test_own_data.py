"""Own data sets (`dataset.yaml`) through train -> predict -> report: their classes, colours and
void value everywhere, and every data problem named in one line with nothing created."""

import csv
import json

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from demo_folder import make_demo_folder
from PIL import Image

from cli.main import main
from fastseg.classes import default_colors
from fastseg.data.factory import open_dataset
from fastseg.data.folder_dataset import FolderDataset
from fastseg.data.voc import VOCFolder
from fastseg.errors import DatasetError
from fastseg.inference.prediction_log import FIXED_FIELDS
from fastseg.model.checkpoint import load_model

THIRTY = [f"class{index:02d}" for index in range(30)]
OWN_COLOURS = [(10, 20, 30), (200, 40, 40), (40, 200, 40), (40, 40, 200)]

DATA_SETS = {
    # name: (names, make_demo_folder options)
    "three-classes-ignore-3": (["background", "road", "car"], {"ignore_index": 3}),
    "thirty-classes": (THIRTY, {}),
    "colour-masks": (
        ["background", "cell", "nucleus", "debris"],
        {"mask_format": "rgb", "colors": OWN_COLOURS},
    ),
    "binary-no-test": (["background", "defect"], {"counts": {"train": 10, "val": 8}}),
}

TINY = ["--recipe", "seed", "--size", 32, "--no-pretrained", "--num-workers", 0, "--quiet"]


def run_cli(*arguments: str):
    return CliRunner().invoke(main, [str(argument) for argument in arguments])


def train_predict_report(data, tmp_path):
    run = tmp_path / "run"
    trained = run_cli("train", "--data", data, "--out", run, *TINY, "--batch-size", 4, "--epochs", 2)
    assert trained.exit_code == 0, trained.output
    predicted = run_cli("predict", "--model", run, "--out", tmp_path / "predicted", "--quiet",
                        "--num-workers", 0, "--overlay", data.parent / "images" / "val")  # fmt: skip
    assert predicted.exit_code == 0, predicted.output
    reported = run_cli("report", "--model", run, "--quiet", "--num-workers", 0)
    assert reported.exit_code == 0, reported.output
    return run, tmp_path / "predicted", run / "report"


def raw_void_pixels(data, ids, ignore_index):
    """Labelled (non-void) pixels of `ids`' masks, counted from the files themselves."""
    folder = open_dataset(data)
    return sum(
        int((np.asarray(Image.open(folder.mask_path(image_id))) != ignore_index).sum()) for image_id in ids
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DATA_SETS))
def test_an_own_data_set_runs_train_predict_report_in_its_own_classes(name, tmp_path):
    names, options = DATA_SETS[name]
    data = make_demo_folder(tmp_path / "data", names, seed=3, **options)
    run, predicted, report = train_predict_report(data, tmp_path)
    colours = [tuple(colour) for colour in options.get("colors", default_colors(len(names)))]
    ignore_index = options.get("ignore_index", 255)

    loaded = load_model(run)  # the model file carries names, colours and the void value
    assert (loaded.classes, loaded.colors, loaded.ignore_index) == (names, colours, ignore_index)
    assert loaded.model.config.num_classes == len(names)

    weights = json.loads((run / "class_weights.json").read_text())
    split = json.loads((run / "split.json").read_text())
    assert weights["classes"] == names and len(weights["weights"]) == len(names)
    if options.get("mask_format") != "rgb":  # void never counted: the files' own non-void pixels
        assert sum(weights["pixel_counts"]) == raw_void_pixels(data, split["train"], ignore_index)

    with (predicted / "predictions.csv").open() as file:
        rows = list(csv.reader(file))
    assert rows[0] == [*FIXED_FIELDS, *names] and all(row[3] == "ok" for row in rows[1:])
    mask = Image.open(next(predicted.glob("*.png")))
    assert mask.mode == "P" and np.asarray(mask).max() < len(names)
    assert [tuple(mask.getpalette()[3 * i : 3 * i + 3]) for i in range(len(names))] == colours
    assert next(predicted.glob("*.overlay.jpg")).is_file()

    per_class = list(csv.DictReader((report / "per_class.csv").open()))
    assert [row["class"] for row in per_class] == names
    metrics = json.loads((report / "metrics.json").read_text())
    assert list(metrics["class_iou"]) == names
    with (report / "confusion_matrix.csv").open() as file:
        confusion = list(csv.reader(file))
    assert confusion[0][1:] == names and len(confusion) == len(names) + 1
    if options.get("mask_format") != "rgb":  # every labelled test pixel counted once, void never
        counted = sum(int(value) for row in confusion[1:] for value in row[1:])
        assert counted == raw_void_pixels(data, split["test"], ignore_index)
    if name == "binary-no-test":
        assert split["test_from"] == "val" and len(split["valid"]) + len(split["test"]) == 8
        assert not set(split["valid"]) & set(split["test"])
    else:
        assert "test_from" not in split


def test_data_accepts_the_yaml_its_folder_or_a_voc_root(tmp_path, voc_root):
    data = make_demo_folder(tmp_path / "data", ["a", "b"], counts={"train": 2, "val": 2})
    assert isinstance(open_dataset(data), FolderDataset)
    assert isinstance(open_dataset(data.parent), FolderDataset)
    assert isinstance(open_dataset(voc_root), VOCFolder)
    with pytest.raises(DatasetError, match="no dataset.yaml and no VOC2012 data set here"):
        open_dataset(tmp_path)


def test_without_test_the_val_split_is_halved_the_seeds_way_and_said(tmp_path):
    data = make_demo_folder(tmp_path / "data", ["a", "b"], counts={"train": 4, "val": 7})
    split = open_dataset(data).split(None, 42)
    again = open_dataset(data).split(None, 42)
    assert split == again and (len(split.valid), len(split.test)) == (4, 3)
    result = run_cli("train", "--data", data, "--out", tmp_path / "run", "--size", 32, "--batch-size", 2,
                     "--epochs", 1, "--no-pretrained", "--num-workers", 0, "--recipe", "seed")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "no test split, so val is halved (seed 42): 4 validation and 3 test images" in result.output


# --- masks -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "suffix"), [("L", ".png"), ("P", ".png"), ("I;16", ".png"), ("L", ".bmp"),
                                              ("L", ".tif")])  # fmt: skip
def test_single_channel_masks_of_any_format_are_read_as_class_indices(tmp_path, mode, suffix):
    data = make_demo_folder(tmp_path / "data", ["a", "b", "c"], counts={"train": 1, "val": 1}, ignore_index=7)
    folder = open_dataset(data)
    image_id = folder.ids["train"][0]
    original = np.asarray(Image.open(folder.mask_path(image_id)))
    folder.mask_path(image_id).unlink()
    if mode == "I;16":  # 16-bit greyscale, as some labelling tools write
        picture = Image.fromarray(original.astype(np.uint16))
    elif mode == "P":  # a palette PNG (with a whole palette, as VOC's and every labelling tool's)
        picture = Image.fromarray(original, "P")
        picture.putpalette([channel for index in range(256) for channel in (index, index, index)])
    else:
        picture = Image.fromarray(original, "L")
    picture.save(folder.mask_path(image_id).with_suffix(suffix))
    labels = open_dataset(data).read_mask(image_id)
    expected = np.where(original == 7, 255, original)  # the data set's void becomes fastseg's 255
    np.testing.assert_array_equal(labels, expected)


def test_a_32_bit_mask_with_negative_values_is_refused_not_wrapped(tmp_path):
    """A mode-I TIFF holding -1 and -255 was read as void and class 1 (uint8 wrap-around)."""
    data = make_demo_folder(tmp_path / "data", ["a", "b", "c"], counts={"train": 1, "val": 1})
    folder = open_dataset(data)
    image_id = folder.ids["train"][0]
    values = np.asarray(Image.open(folder.mask_path(image_id))).astype(np.int32)
    values[0, :2] = (-255, -1)
    folder.mask_path(image_id).unlink()
    Image.fromarray(values, "I").save(folder.mask_path(image_id).with_suffix(".tif"))
    with pytest.raises(DatasetError, match=r"\.tif: mask values down to -255; class indices must be 0-255"):
        open_dataset(data).read_mask(image_id)


def test_colour_masks_map_each_colour_to_its_class_and_void(tmp_path):
    data = make_demo_folder(tmp_path / "data", ["a", "b", "c", "d"], counts={"train": 1, "val": 1},
                            mask_format="rgb", colors=OWN_COLOURS, ignore_color=(255, 255, 255))  # fmt: skip
    folder = open_dataset(data)
    image_id = folder.ids["train"][0]
    pixels = np.asarray(Image.open(folder.mask_path(image_id)).convert("RGB"))
    labels = folder.read_mask(image_id)
    for label, colour in enumerate(OWN_COLOURS):
        assert (np.all(pixels == colour, axis=-1) == (labels == label)).all()
    assert (np.all(pixels == (255, 255, 255), axis=-1) == (labels == 255)).all()


# --- every problem one line, nothing created ---------------------------------------------------


def write_yaml(data, **changes):
    values = yaml.safe_load(data.read_text())
    values.update(changes)
    values = {key: value for key, value in values.items() if value is not None}
    data.write_text(yaml.safe_dump(values))


def assert_refused(data, tmp_path, *expected):
    """train and check-data both fail naming every `expected` text; train creates no run folder."""
    run = tmp_path / "refused-run"
    trained = run_cli("train", "--data", data, "--out", run, "--size", 32, "--epochs", 1, "--no-pretrained",
                      "--num-workers", 0, "--quiet", "--batch-size", 2)  # fmt: skip
    checked = run_cli("check-data", data, "--quiet")
    for result in (trained, checked):
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        for text in expected:
            assert sum(text in line for line in result.output.splitlines()) == 1, (text, result.output)
    assert not run.exists()


@pytest.fixture
def own(tmp_path):
    return make_demo_folder(tmp_path / "data", ["background", "road", "car"], counts={"train": 4, "val": 3},
                            ignore_index=3)  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"colour": "red"}, "unknown key(s) colour"),
        ({"names": None}, "names is missing"),
        ({"colors": [[0, 0, 0], [1, 1, 1]]}, "colors: 2 colours for 3 classes"),
        ({"ignore_index": 1}, "ignore_index 1 is the index of class 'road'"),
        ({"val": None}, "val is missing: name a validation folder"),
        ({"names": {0: "a", 2: "b"}}, "names: a mapping's keys must be the indices 0 .. 1"),
        ({"mask_format": "palette"}, "mask_format 'palette': choose one of index, rgb"),
        ({"train": "images/nowhere"}, "train: "),
    ],
)
def test_dataset_yaml_errors_are_named_one_line_each(own, tmp_path, changes, expected):
    write_yaml(own, **changes)
    assert_refused(own, tmp_path, expected)


def test_several_yaml_errors_are_named_together(own, tmp_path):
    write_yaml(own, names=None, extra=1)
    assert_refused(own, tmp_path, "names is missing", "unknown key(s) extra")


def test_invalid_yaml_is_one_line(own, tmp_path):
    own.write_text("names: [a, b\ntrain: images/train\n")
    assert_refused(own, tmp_path, "not valid YAML")


def test_mask_values_that_are_neither_a_class_nor_void_are_named(own, tmp_path):
    folder = open_dataset(own)
    path = folder.mask_path(folder.ids["train"][1])
    values = np.asarray(Image.open(path)).copy()
    values[0, :4] = 9
    Image.fromarray(values, "L").save(path)
    assert_refused(own, tmp_path, f"{path}: mask values [9] are neither a class (0-2) nor ignore_index 3")


def test_a_mask_whose_size_is_not_its_images_is_named(own, tmp_path):
    folder = open_dataset(own)
    path = folder.mask_path(folder.ids["val"][0])
    Image.open(path).crop((0, 0, 20, 20)).save(path)
    assert_refused(own, tmp_path, f"{path}: mask is 20x20, image is")


def test_images_without_masks_and_masks_without_images_are_named(own, tmp_path):
    folder = open_dataset(own)
    folder.mask_path(folder.ids["train"][0]).unlink()
    orphan = own.parent / "masks" / "val" / "lonely.png"
    Image.new("L", (8, 8)).save(orphan)
    assert_refused(own, tmp_path, f"{folder.image_path(folder.ids['train'][0])}: no mask (train",
                   f"{orphan}: mask without an image (val)")  # fmt: skip


def test_an_empty_split_is_named(own, tmp_path):
    empty = own.parent / "images" / "empty"
    empty.mkdir()
    write_yaml(own, test="images/empty")
    assert_refused(own, tmp_path, "the test split holds no images")


def test_unreadable_files_are_named(own, tmp_path):
    folder = open_dataset(own)
    image, mask = folder.image_path(folder.ids["train"][0]), folder.mask_path(folder.ids["train"][1])
    image.write_bytes(b"not a jpeg")
    mask.write_bytes(b"not a png")
    assert_refused(own, tmp_path, f"{image}: cannot read image", f"{mask}: cannot read mask")


def test_an_unknown_colour_in_a_colour_mask_is_named_not_made_void(tmp_path):
    data = make_demo_folder(tmp_path / "data", ["a", "b", "c", "d"], counts={"train": 3, "val": 2},
                            mask_format="rgb", colors=OWN_COLOURS)  # fmt: skip
    folder = open_dataset(data)
    path = folder.mask_path(folder.ids["train"][0])
    pixels = np.asarray(Image.open(path).convert("RGB")).copy()
    pixels[0, 0] = (1, 2, 3)
    Image.fromarray(pixels).save(path)
    assert_refused(data, tmp_path, f"{path}: 1 pixels of colours (1, 2, 3) not in colors")


def test_train_set_is_voc_only(own, tmp_path):
    result = run_cli("train", "--data", own, "--out", tmp_path / "run", "--train-set", "train")
    assert result.exit_code == 2 and "--train-set is VOC-only" in result.output
    assert not (tmp_path / "run").exists()


def test_check_data_prints_images_and_class_shares_per_split(own):
    result = run_cli("check-data", own, "--quiet")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{own}: 3 classes, ignore_index 3, index masks"
    header = lines[1].split()
    assert header == ["class", "train", "val"]
    shares = {
        line.split()[0]: [float(value.rstrip("%")) for value in line.split()[1:]] for line in lines[2:6]
    }
    assert list(shares) == ["background", "road", "car", "(void)"]
    for column in range(2):
        assert sum(values[column] for values in shares.values()) == pytest.approx(100, abs=0.05)
    assert lines[6].split() == ["pairs", "4", "3"]
    assert "no test split" in result.output and lines[-1] == "no problems found"


def test_a_model_of_other_classes_is_refused_by_report(own, tmp_path, voc_root):
    run = tmp_path / "run"
    trained = run_cli("train", "--data", own, "--out", run, *TINY, "--batch-size", 2, "--epochs", 1)
    assert trained.exit_code == 0, trained.output
    result = run_cli("report", "--model", run, "--data", voc_root, "--quiet", "--out", tmp_path / "report")
    assert result.exit_code == 1 and "classes are not the model's 3" in result.output
    assert not (tmp_path / "report").exists()


def test_splits_may_be_txt_lists_of_stems_and_masks_another_folder(tmp_path):
    data = make_demo_folder(tmp_path / "data", ["a", "b"], counts={"train": 3, "val": 2})
    root = data.parent
    (root / "masks").rename(root / "labels")
    (root / "train.txt").write_text("train/train_0000\ntrain/train_0002.jpg\n\n# a comment\n")
    (root / "val.txt").write_text("val/val_0000\nval/val_0001\n")
    data.write_text(yaml.safe_dump({"names": {0: "a", 1: "b"}, "train": "train.txt", "val": "val.txt",
                                    "masks": "labels"}))  # fmt: skip
    folder = open_dataset(data)
    assert folder.problems == []
    assert folder.ids["train"] == ["images/train/train_0000.jpg", "images/train/train_0002.jpg"]
    assert folder.mask_path(folder.ids["val"][1]) == root / "labels" / "val" / "val_0001.png"
    assert folder.classes.names == ("a", "b")
    (root / "val.txt").write_text("val/val_0000\nval/missing\n")
    assert open_dataset(data).problems == [
        f"{root / 'val.txt'}:2: no image 'val/missing' in {root / 'images'}"
    ]


def test_show_data_draws_an_own_data_set_in_its_colours(tmp_path):
    data = make_demo_folder(tmp_path / "data", ["a", "b", "c", "d"], counts={"train": 4, "val": 2},
                            mask_format="rgb", colors=OWN_COLOURS)  # fmt: skip
    result = run_cli("show-data", "--data", data, "--out", tmp_path / "samples", "--rows", 2, "--size", 32)
    assert result.exit_code == 0, result.output
    for name in ("train_ds_sample.png", "val_ds_sample.png"):
        picture = np.asarray(Image.open(tmp_path / "samples" / name).convert("RGB"))
        assert np.all(picture == OWN_COLOURS[0], axis=-1).any()  # background in its own colour, not black


@pytest.mark.slow
def test_an_onnx_export_predicts_in_the_data_sets_classes_and_colours(tmp_path):
    """The exported file carries names, colours and the void value as model.pth does."""
    from fastseg.classes import Classes
    from fastseg.model.checkpoint import save_model
    from fastseg.model.config import ModelConfig
    from fastseg.model.network import SegmentationModel

    classes = Classes.create(["sky", "leaf", "bark", "fruit"], OWN_COLOURS, ignore_index=9)
    config = ModelConfig(num_classes=4)
    model = save_model(tmp_path / "model.pth", SegmentationModel(config).eval(), config, 32, classes=classes)
    exported = run_cli("export", model, "--out", tmp_path / "model.onnx")
    assert exported.exit_code == 0, exported.output
    images = make_demo_folder(tmp_path / "data", list(classes.names), counts={"train": 2}).parent / "images"
    for name in ("model.pth", "model.onnx"):
        out = tmp_path / f"predicted-{name}"
        options = ["--out", out, "--quiet", "--num-workers", 0]
        predicted = run_cli("predict", "--model", tmp_path / name, *options, images / "train")
        assert predicted.exit_code == 0, predicted.output
        with (out / "predictions.csv").open() as file:
            assert next(csv.reader(file))[len(FIXED_FIELDS) :] == ["sky", "leaf", "bark", "fruit"]
        mask = Image.open(out / "train_0000.png")
        assert [tuple(mask.getpalette()[3 * i : 3 * i + 3]) for i in range(4)] == OWN_COLOURS
    assert load_model(tmp_path / "model.pth").ignore_index == 9


def test_an_unreadable_split_list_is_one_line(own, tmp_path):
    listing = own.parent / "val.txt"
    listing.write_bytes(b"\xff\xfe\x00binary")
    write_yaml(own, val="val.txt")
    assert_refused(own, tmp_path, f"{listing}: cannot read the list")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"names: [background, caf\xe9]\n", "not UTF-8 text (byte 0xe9"),  # was a UnicodeDecodeError
        (b"names: [a, b]\nnames: [c, d]\n", "key 'names' is given twice"),  # was the last one, silently
        (b'names: [background, "road\\nside", car]\n', "control characters"),  # garbled the table
    ],
)
def test_a_dataset_file_is_read_by_the_one_strict_loader(own, tmp_path, content, expected):
    """Issue #19 (3, 4, 7): dataset.yaml goes through fastseg.structured_files like every file."""
    own.write_bytes(content)
    assert_refused(own, tmp_path, expected)


def test_an_exif_rotated_photo_trains_upright_against_its_mask(tmp_path):
    """Issue #19 (6): training decoded through fastai's PILImage.create, which ignores EXIF
    orientation, while check-data, predict and report applied it: a phone photo (orientation 6)
    whose mask was drawn on the upright view trained on its side. Now one decoder serves all."""
    from fastseg.imaging.geometry import fit_image
    from fastseg.imaging.images import load_rgb
    from fastseg.imaging.normalise import normalise
    from fastseg.training.data import build_dataloaders

    data = make_demo_folder(tmp_path / "data", ["background", "road", "car"], counts={"train": 4, "val": 2},
                            min_size=40, max_size=56)  # fmt: skip
    photo = data.parent / "images" / "val" / "val_0000.jpg"
    upright = Image.open(photo).convert("RGB")
    assert upright.width != upright.height or pytest.skip("needs a non-square image")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": stored on its side
    upright.transpose(Image.Transpose.ROTATE_90).save(photo, exif=exif, quality=95)
    assert load_rgb(photo).size == upright.size  # what every reader now sees

    checked = run_cli("check-data", data, "--quiet")
    assert checked.exit_code == 0, checked.output
    folder = open_dataset(data)
    splits = folder.listed_splits()
    valid = sorted(splits["val"])
    assert "val_0000" in valid[0]
    dls = build_dataloaders(folder, sorted(splits["train"])[:2], valid, size=32, batch_size=2, num_workers=0,
                            seed=0)  # fmt: skip
    images, masks = dls.valid.one_batch()
    expected = normalise(fit_image(load_rgb(photo), 32, "squish"))
    assert (images[0].as_subclass(torch.Tensor) - expected).abs().max() < 1e-5
    run = tmp_path / "run"
    trained = run_cli("train", "--data", data, "--out", run, *TINY, "--batch-size", 2, "--epochs", 1)
    assert trained.exit_code == 0, trained.output
    reported = run_cli("report", "--model", run, "--quiet", "--num-workers", 0, "--split", "val")
    assert reported.exit_code == 0, reported.output
    predicted = run_cli("predict", "--model", run, photo, "--out", tmp_path / "masks", "--quiet")
    assert predicted.exit_code == 0, predicted.output
    assert Image.open(tmp_path / "masks" / "val_0000.png").size == upright.size


@pytest.mark.parametrize("where", ["../elsewhere", "/tmp", "images/../../x"])
def test_a_split_folder_outside_the_data_folder_is_refused(own, tmp_path, where):
    """Issue #19 (7): the README says splits are folders or lists under the data folder; `../`
    and absolute paths were followed."""
    (own.parent.parent / "elsewhere").mkdir(exist_ok=True)
    write_yaml(own, val=where)
    assert_refused(own, tmp_path, "is outside the data folder")


def test_a_list_entry_outside_images_is_refused(own, tmp_path):
    listing = own.parent / "val.txt"
    listing.write_text("../../secret\n")
    write_yaml(own, val="val.txt")
    assert_refused(own, tmp_path, "val.txt:1: '../../secret' is outside")


def binary_255(tmp_path):
    """A binary set whose masks hold 0 and 255, as most labelling tools export them."""
    data = make_demo_folder(tmp_path / "binary", ["background", "crack"], counts={"train": 4, "val": 2})
    for mask in (data.parent / "masks").rglob("*.png"):
        values = np.asarray(Image.open(mask))
        Image.fromarray(np.where(values == 1, 255, values).astype(np.uint8)).save(mask)
    return data


def test_binary_masks_of_0_and_255_are_named_with_the_fix(tmp_path):
    """Issue #19 (7): with the default ignore_index such a set trained background against void and
    reported mIoU over one class. check-data and train now say so in one line, with the fix."""
    data = binary_255(tmp_path)
    assert_refused(data, tmp_path, "add `mask_values: {0: 0, 255: 1}` to dataset.yaml")


def test_mask_values_map_stored_values_to_classes(tmp_path):
    data = binary_255(tmp_path)
    write_yaml(data, mask_values={0: 0, 255: 1})
    folder = open_dataset(data)
    image_id = sorted(folder.listed_splits()["train"])[0]
    stored = np.asarray(Image.open(folder.mask_path(image_id)))
    assert set(np.unique(stored)) <= {0, 255}
    assert np.array_equal(folder.read_mask(image_id), (stored == 255).astype(np.uint8))
    checked = run_cli("check-data", data, "--quiet")
    assert checked.exit_code == 0, checked.output
    cases = [
        ({0: 0, 255: 2}, "255 -> 2: expected a class index 0-1"),
        ([1], "expected a mapping"),
        ({300: 1}, "300 is not a mask value"),
    ]
    for bad, expected in cases:
        write_yaml(data, mask_values=bad)
        assert_refused(data, tmp_path, expected)


def test_an_image_listed_twice_in_a_txt_split_is_a_problem_naming_both_lines(tmp_path):
    """A repeated line trained that image twice an epoch and wrote a split.json that report then
    refuses (an id twice in a split); a stem and its file name are the same image."""
    data = make_demo_folder(tmp_path / "data", ["a", "b"], counts={"train": 3, "val": 2})
    root = data.parent
    (root / "train.txt").write_text("train/train_0000\ntrain/train_0001\ntrain/train_0000.jpg\n")
    data.write_text(yaml.safe_dump({"names": {0: "a", 1: "b"}, "train": "train.txt", "val": "images/val"}))
    assert open_dataset(data).problems == [
        f"{root / 'train.txt'}:3: 'train/train_0000.jpg' is the image of line 1 again; list each image once"
    ]
