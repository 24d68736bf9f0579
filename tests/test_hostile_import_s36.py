"""`fastseg import`: what a stranger's hostile pass (session 36) found in the readers, each a test
that failed before its fix. Every import runs in a child process where a crash is possible: a
segmentation fault in pycocotools would take pytest with it."""

import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import yaml
from PIL import Image
from test_import import encode_brush

from fastseg.importing.labelstudio import decode_brush
from fastseg.importing.writer import MARKER

ONE_CAR = "<meta><task><labels><label><name>car</name><color>#fa3253</color></label></labels></task></meta>"


def write_image(path, width=40, height=30):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def import_in_child(*arguments):
    """`fastseg import ARGUMENTS` in its own process: (exit status, stdout + stderr)."""
    done = subprocess.run(
        [sys.executable, "-c", "from cli.main import main; main()", "import", *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


def cvat_export(root, shape):
    """annotations.xml: image a.png (40x30) holding `shape`, image b.png with nothing."""
    write_image(root / "images" / "a.png")
    write_image(root / "images" / "b.png")
    (root / "annotations.xml").write_text(
        f'<annotations>{ONE_CAR}<image id="0" name="a.png" width="40" height="30">{shape}</image>'
        '<image id="1" name="b.png" width="40" height="30"/></annotations>'
    )
    return root / "annotations.xml"


@pytest.mark.parametrize(
    "shape",
    [
        '<ellipse label="car" cx="20" cy="15" rx="1e9" ry="1e9"/>',  # was a segmentation fault
        '<ellipse label="car" cx="20" cy="15" rx="1e300" ry="1e300"/>',  # was a segmentation fault
        '<box label="car" xtl="-1e12" ytl="-1e12" xbr="1e12" ybr="1e12" rotation="10"/>',  # was empty
    ],
)
def test_a_cvat_shape_far_larger_than_its_image_covers_it(tmp_path, shape):
    """Only an ellipse's or a turned box's centre is checked against the image (CVAT lets their
    outline leave it), so an outline of vertices 10^9 pixels away reached pycocotools, whose
    integer arithmetic overflowed: the process died (SIGSEGV) or the mask came out empty. The
    polygon is now cut to a window around the image before it is drawn: such a shape covers the
    whole image."""
    out = tmp_path / "data"
    status, output = import_in_child(
        "cvat", cvat_export(tmp_path / "cvat", shape), "--out", out, "--quiet", "--test", 0, "--val", 0.5
    )
    assert status in (0, 1), output  # 1: check-data's note on the result, after the import
    assert "Traceback" not in output and (out / MARKER).is_file(), output
    masks = {path.stem: np.asarray(Image.open(path)) for path in (out / "masks").rglob("*.png")}
    assert (masks["a"] == 1).all() and (masks["b"] == 0).all()


def test_a_cvat_turned_box_past_floats_range_is_one_line(tmp_path):
    """Corners +-1.7e308 turned by 45 degrees leave float's range (inf): named, nothing created."""
    out = tmp_path / "data"
    shape = '<box label="car" xtl="-1.7e308" ytl="-1.7e308" xbr="1.7e308" ybr="1.7e308" rotation="45"/>'
    status, output = import_in_child("cvat", cvat_export(tmp_path / "cvat", shape), "--out", out, "--quiet")
    assert status == 1 and "Traceback" not in output, output
    assert "a.png box 0 (car)" in output and "not finite" in output and not out.exists()


def test_an_ade20k_class_list_with_an_index_of_5000_digits_is_one_line(tmp_path):
    """objectInfo150.txt's Idx column went through int(), which refuses more than 4,300 digits with
    a ValueError: a traceback. Such a row is no class row, passed over as a row of no number is."""
    root = ade20k_tree(tmp_path / "ADEChallengeData2016", extra_rows=[f"{'9' * 5000}\t0\t0\t0\tlast"])
    out = tmp_path / "data"
    status, output = import_in_child("ade20k", root, "--out", out, "--quiet")
    assert status == 0 and "Traceback" not in output, output
    names = yaml.safe_load((out / "dataset.yaml").read_text())["names"]
    assert names[0] == "thing1" and names[-1] == "thing150" and len(names) == 150


def test_a_label_studio_brush_with_a_long_tail_is_decoded_in_memory_bounded_by_its_image():
    """A brush's rle was unpacked whole into a Python list of bits (64 bytes of memory per byte of
    rle) before its runs were read: 10 million bytes after a 40x30 brush took 860 MB and 4 s. Only
    the bits a stream of the image's value count can use are unpacked now; the brush is the same."""
    rgba = np.zeros((30, 40, 4), dtype=np.uint8)
    rgba[3:12, 5:25] = (255, 0, 0, 255)
    rle = encode_brush(rgba.ravel().tolist()) + [0] * 2_000_000
    tracemalloc.start()
    try:
        alpha = decode_brush(rle, 30, 40)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(alpha, rgba[:, :, 3])
    assert peak < 20 * 1024**2, f"{peak / 1024**2:.0f} MiB"


def two_images_export(root):
    return cvat_export(root, '<polygon label="car" points="1,1;30,2;20,25"/>')


def run_cli(*arguments):
    from click.testing import CliRunner

    from cli.main import main

    return CliRunner().invoke(main, [str(argument) for argument in arguments])


@pytest.mark.parametrize("moment", ["before_aside", "before_install"])
def test_two_force_imports_into_one_out_at_once_never_trace_back(tmp_path, monkeypatch, moment):
    """Two `--force` imports into one --out: while one swapped its build in (two renames), the other
    found --out gone before its own first rename (FileNotFoundError), or a new folder there before
    its second (ENOTEMPTY): a traceback, the earlier import left aside under a hidden name. Now the
    first installs the build as a new import would; the second is the one line of a folder that
    appeared meanwhile, the other import's folder kept."""
    import fastseg.importing.writer as writer

    export = two_images_export(tmp_path / "cvat")
    out = tmp_path / "data"
    arguments = ("cvat", export, "--out", out, "--quiet", "--test", 0, "--val", 0.5, "--force")
    assert run_cli("import", *arguments).exit_code == 0
    real_rename = writer.os.rename

    def other_import_meanwhile(source, target):
        moving_aside = str(source) == str(out) and ".replaced." in str(target)
        if moment == "before_aside" and moving_aside:  # the other one moved it aside first
            real_rename(out, tmp_path / "gone")
        if moment == "before_install" and ".import." in str(source):  # and put its own there
            out.mkdir()
            (out / "other.txt").write_text("the other import's")
        real_rename(source, target)

    monkeypatch.setattr(writer.os, "rename", other_import_meanwhile)
    result = run_cli("import", *arguments)
    assert "Traceback" not in result.output and not isinstance(result.exception, OSError), result.exception
    if moment == "before_aside":
        assert result.exit_code == 0, result.output
        assert (out / MARKER).is_file() and len(list((out / "masks").rglob("*.png"))) == 2
    else:
        assert result.exit_code == 1 and "appeared while importing" in result.output, result.output
        assert [path.name for path in out.iterdir()] == ["other.txt"]
    assert not list(tmp_path.glob(".data.*"))


LONG = "n" * 5000


def cvat_masks_export(root, labelmap):
    write_image(root / "JPEGImages" / "a.png")
    (root / "SegmentationClass").mkdir(parents=True)
    Image.fromarray(np.zeros((30, 40, 3), dtype=np.uint8)).save(root / "SegmentationClass" / "a.png")
    (root / "labelmap.txt").write_text(labelmap)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "default.txt").write_text("a\n")
    return root


def labelstudio_export(root, image, task_id=1):
    write_image(root / "a.png")
    task = {"id": task_id, "data": {"image": image}, "annotations": []}
    (root / "export.json").write_text(__import__("json").dumps([task]))
    return root / "export.json"


def long_name_export(root, case):
    """(format, source) of an export whose `case` is a 5,000-character name."""
    if case == "labelmap line":
        return "cvat", cvat_masks_export(root, f"background:0,0,0\ncar:{LONG}\n")
    if case == "xml image name":
        write_image(root / "images" / "a.png")
        (root / "annotations.xml").write_text(
            f'<annotations>{ONE_CAR}<image id="0" name="{LONG}.png" width="40" height="30"/></annotations>'
        )
        return "cvat", root / "annotations.xml"
    if case == "xml label":
        return "cvat", cvat_export(root, f'<polygon label="{LONG}" points="1,1;5,1;5,5"/>')
    if case == "label studio image":
        return "labelstudio", labelstudio_export(root, f"/data/local-files/?d={LONG}")
    if case == "label studio escaping image":
        return "labelstudio", labelstudio_export(root, f"/data/local-files/?d=../{LONG}")
    return "labelstudio", labelstudio_export(root, "/x.png", task_id=LONG)


LONG_NAMES = [
    "labelmap line",
    "xml image name",
    "xml label",
    "label studio image",
    "label studio escaping image",
    "label studio task id",
]


@pytest.mark.parametrize("case", LONG_NAMES)
def test_a_name_of_5000_characters_in_an_export_is_cut_in_its_problem_line(tmp_path, case):
    """A label, list line, image name or task id of the export stood whole in its problem line: a
    5,000-character name made a 5,000-character line. Cut as every other name in an error line
    is (`fastseg.errors.clipped` / `quoted`: 200 characters and `...`)."""
    root = tmp_path / "export"
    root.mkdir()
    format_name, source = long_name_export(root, case)
    out = tmp_path / "data"
    result = run_cli("import", format_name, source, "--out", out, "--quiet")
    assert result.exit_code == 1 and not out.exists(), result.output
    assert "n" * 190 in result.output and "n" * 201 not in result.output, result.output
    assert "..." in result.output  # said to be cut
    assert max(map(len, result.output.splitlines())) < 600, result.output


def test_150_class_names_with_control_characters_are_one_line_of_bounded_length(tmp_path):
    """ADE20K's 150 names, each holding an escape character, were all listed in one problem line
    (2,500 characters; a name of 5,000 characters as long): the list is cut as names are."""
    root = tmp_path / "ADEChallengeData2016"
    rows = ["Idx\tRatio\tTrain\tVal\tName"]
    rows += [f"{index}\t0\t0\t0\t\x1b[31m{index}" for index in range(1, 151)]
    root.mkdir()
    (root / "objectInfo150.txt").write_text("\n".join(rows) + "\n")
    for folder, stem in (("training", "a"), ("training", "b"), ("validation", "c")):
        write_image(root / "images" / folder / f"{stem}.jpg", 3, 2)
        (root / "annotations" / folder).mkdir(parents=True, exist_ok=True)
        mask = np.ones((2, 3), dtype=np.uint8)
        Image.fromarray(mask, "L").save(root / "annotations" / folder / f"{stem}.png")
    out = tmp_path / "data"
    result = run_cli("import", "ade20k", root, "--out", out, "--quiet")
    assert result.exit_code == 1 and not out.exists(), result.output
    line = next(line for line in result.output.splitlines() if "hold control characters" in line)
    assert "\\x1b[31m1'" in line and len(line) < 400, line


def unreadable(monkeypatch, name):
    """Reading a file called `name` fails as an unreadable file's read does (EACCES; as root, whom
    permissions do not stop, the test cannot make a real one)."""
    import pathlib

    real = pathlib.Path.read_text

    def read_text(self, *args, **kwargs):
        if self.name == name:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", read_text)


def test_an_unreadable_cvat_image_list_is_one_line(tmp_path, monkeypatch):
    """ImageSets/Segmentation/train.txt that cannot be read was an OSError traceback."""
    root = cvat_masks_export(tmp_path / "cvat", "background:0,0,0\ncar:1,2,3\n")
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("a\n")
    unreadable(monkeypatch, "train.txt")
    out = tmp_path / "data"
    result = run_cli("import", "cvat", root, "--out", out, "--quiet")
    assert result.exit_code == 1 and not isinstance(result.exception, OSError), result.exception
    assert "train.txt: cannot read (Permission denied)" in result.output and not out.exists()


def test_an_unreadable_yolo_image_list_is_one_line(tmp_path, monkeypatch):
    """A YOLO data.yaml's `train: train.txt` list that cannot be read was an OSError traceback."""
    root = tmp_path / "yolo"
    write_image(root / "images" / "a.jpg")
    (root / "train.txt").write_text("images/a.jpg\n")
    (root / "data.yaml").write_text("path: .\ntrain: train.txt\nval: train.txt\nnames:\n  0: car\n")
    unreadable(monkeypatch, "train.txt")
    out = tmp_path / "data"
    result = run_cli("import", "yolo", root, "--out", out, "--quiet")
    assert result.exit_code == 1 and not isinstance(result.exception, OSError), result.exception
    assert "train.txt: cannot read (Permission denied)" in result.output and not out.exists()


@pytest.mark.parametrize(
    "shape, named",
    [
        ('<foo label="car"/>', "image a.png foo 0: <foo> is not a CVAT shape"),
        ("<a><b/></a>", "image a.png a 0: <a> is not a CVAT shape"),
        ('<polygon points="1,1;5,1;5,5"/>', "image a.png polygon 0: no label"),
        ('<polygon label="car" points="1,2,3;;x"/>', "polygon 0 (car): points must be 'x,y;x,y;...'"),
    ],
)
def test_an_element_that_is_no_cvat_shape_is_named_as_such(tmp_path, shape, named):
    """An element inside <image> that is no CVAT shape (an XInclude, a stray wrapper) or a shape
    without a label attribute was "label 'None' is not declared in <meta>", and points that are no
    numbers "polygon has 0 point(s)": the tag, the missing attribute, the format are named now."""
    out = tmp_path / "data"
    result = run_cli("import", "cvat", cvat_export(tmp_path / "cvat", shape), "--out", out, "--quiet")
    assert result.exit_code == 1 and named in result.output and "'None'" not in result.output, result.output
    assert not out.exists()


def cityscapes_tree(root, extra_image):
    ids = np.array([[7, 8, 26, 0], [33, 1, 24, 23], [11, 11, 31, 3]], dtype=np.uint8)
    for split, city, number in (("train", "aachen", 1), ("train", "bochum", 2), ("val", "frankfurt", 3)):
        prefix = f"{city}_000000_{number:06d}"
        write_image(root / "leftImg8bit" / split / city / f"{prefix}_leftImg8bit.png", 4, 3)
        (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
        Image.fromarray(ids, "L").save(root / "gtFine" / split / city / f"{prefix}_gtFine_labelIds.png")
    write_image(root / "leftImg8bit" / "train" / "aachen" / f"{extra_image}_leftImg8bit.png", 4, 3)
    return root


def ade20k_tree(root, extra_image=None, extra_rows=()):
    """A tiny ADE20K tree: its 150 class rows (and `extra_rows`), 3 images with masks, and
    `extra_image` without one."""
    rows = ["Idx\tRatio\tTrain\tVal\tName", *[f"{index}\t0\t0\t0\tthing{index}" for index in range(1, 151)]]
    rows += extra_rows
    root.mkdir()
    (root / "objectInfo150.txt").write_text("\n".join(rows) + "\n")
    for folder, stem in (("training", "a"), ("training", "b"), ("validation", "c")):
        write_image(root / "images" / folder / f"{stem}.jpg", 3, 2)
        (root / "annotations" / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ones((2, 3), dtype=np.uint8), "L").save(
            root / "annotations" / folder / f"{stem}.png"
        )
    if extra_image is not None:
        write_image(root / "images" / "training" / f"{extra_image}.jpg", 3, 2)
    return root


@pytest.mark.parametrize(
    "format_name, tree, said",
    [
        ("cityscapes", cityscapes_tree, "1 image(s) in leftImg8bit/train without a *_gtFine_labelIds.png"),
        ("ade20k", ade20k_tree, "1 image(s) in images/training without a mask in annotations/training"),
    ],
)
def test_benchmark_images_without_a_mask_are_said_to_be_left_out(tmp_path, format_name, tree, said):
    """An image of Cityscapes or ADE20K whose mask is missing (half a download, a mask deleted) was
    left out of the data set without a word; the import now says how many, and where."""
    out = tmp_path / "data"
    result = run_cli("import", format_name, tree(tmp_path / "tree", "extra"), "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert f"note: {said}: left out" in result.output, result.output
    assert len(list((out / "masks").rglob("*.png"))) == 3
