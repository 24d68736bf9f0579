"""`fastseg import`: each format's generated export -> a data set whose masks equal the reference
rasterisation (pycocotools for COCO and every polygon; labelme's `shape_to_mask` rules for LabelMe),
whose dataset.yaml holds the declared classes and colours; every bad input named at once with
nothing created; the data set written whole or not at all."""

import base64
import io
import json
import math
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image, ImageDraw
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO

from cli.main import main
from fastseg.classes import default_colors
from fastseg.importing.cityscapes import CLASSES as CITYSCAPES
from fastseg.importing.writer import MARKER

VOID = 255


def run_cli(*arguments):
    return CliRunner().invoke(main, [str(argument) for argument in arguments])


def write_image(path, width, height, seed=0, exif_orientation=None):
    """A small random picture (its content does not matter, its size does)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        image.save(path, exif=exif.tobytes())
    else:
        image.save(path)
    return path


def imported(out):
    """{image stem: (split, mask array)} of an imported data set, and its dataset.yaml."""
    masks = {}
    for path in sorted((out / "masks").rglob("*.png")):
        masks[path.stem] = (path.parent.name, np.asarray(Image.open(path)))
    return masks, yaml.safe_load((out / "dataset.yaml").read_text())


def paint(shape, layers):
    """Reference stacking: each (class, bool mask) painted in order on background 0."""
    labels = np.zeros(shape, dtype=np.uint8)
    for label, pixels in layers:
        labels[pixels.astype(bool)] = label
    return labels


def assert_imported(result, out):
    assert result.exit_code == 0, result.output
    assert (out / "dataset.yaml").is_file() and (out / MARKER).is_file()
    assert "no problems found" not in result.output  # import prints the table, not check-data's verdict


def assert_refused(result, out, *problems):
    """The import stopped (exit 1) on exactly these problems, each a text in the output (or several
    texts of one problem), and created nothing."""
    assert result.exit_code == 1, result.output
    for problem in problems:
        for text in (problem,) if isinstance(problem, str) else problem:
            assert text in result.output, (text, result.output)
    assert f"{len(problems)} problem(s)" in result.output and not out.exists()


# --- COCO -------------------------------------------------------------------------------------------

CATEGORIES = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}, {"id": 12, "name": "bird"}]


def coco_export(root, with_crowd=True):
    """4 images 40x30; polygons (one overlapping another), uncompressed and compressed RLE, a crowd."""
    images = [
        {"id": 100 + index, "file_name": f"photos/img{index}.png", "width": 40, "height": 30}
        for index in range(4)
    ]
    for index in range(4):
        write_image(root / "photos" / f"img{index}.png", 40, 30, seed=index)
    box = np.zeros((30, 40), dtype=np.uint8)
    box[5:20, 22:35] = 1
    compressed = coco_mask.encode(np.asfortranarray(box))
    annotations = [
        {
            "id": 1,
            "image_id": 100,
            "category_id": 3,
            "segmentation": [[2, 2, 20, 2, 20, 20, 2, 20]],
            "iscrowd": 0,
        },
        {
            "id": 2,
            "image_id": 100,
            "category_id": 7,
            "segmentation": [[10.5, 10, 30, 12, 25.5, 28]],
            "iscrowd": 0,
        },
        {
            "id": 3,
            "image_id": 101,
            "category_id": 12,
            "iscrowd": 0,
            "segmentation": {"size": [30, 40], "counts": [35, 10, 1155]},
        },
        {
            "id": 4,
            "image_id": 102,
            "category_id": 7,
            "iscrowd": 0,
            "segmentation": {"size": [30, 40], "counts": compressed["counts"].decode()},
        },
        {
            "id": 5,
            "image_id": 102,
            "category_id": 3,
            "segmentation": [[0, 0, 10, 0, 10, 10], [30, 25, 39, 25, 39, 29]],
            "iscrowd": 0,
        },
    ]
    if with_crowd:
        crowd = np.zeros((30, 40), dtype=np.uint8)
        crowd[22:28, 2:12] = 1
        encoded = coco_mask.encode(np.asfortranarray(crowd))
        annotations.append(
            {
                "id": 6,
                "image_id": 103,
                "category_id": 12,
                "iscrowd": 1,
                "segmentation": {"size": [30, 40], "counts": encoded["counts"].decode()},
            }
        )
    path = root / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return path


def coco_reference(path, crowd_as_class=False, order=None):
    """The masks pycocotools' own COCO API gives (annToMask), painted in annotation order."""
    coco = COCO(str(path))
    index = {category["id"]: position + 1 for position, category in enumerate(CATEGORIES)}
    expected = {}
    for image in coco.dataset["images"]:
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image["id"], iscrowd=None))
        layers = [
            (
                VOID if ann["iscrowd"] and not crowd_as_class else index[ann["category_id"]],
                coco.annToMask(ann),
            )
            for ann in annotations
        ]
        if order:
            layers.sort(key=lambda pair: -order.index(pair[0]) if pair[0] in order else -len(order) - 1)
        stem = image["file_name"].split("/")[-1].rsplit(".", 1)[0]
        expected[stem] = paint((image["height"], image["width"]), layers)
    return expected


def test_coco_polygons_and_rle_equal_pycocotools_masks(tmp_path):
    export = coco_export(tmp_path / "export")
    out = tmp_path / "data"
    result = run_cli("import", "coco", export, "--out", out, "--quiet")
    assert_imported(result, out)
    masks, values = imported(out)
    expected = coco_reference(export)
    assert set(masks) == set(expected)
    for stem, (_, mask) in masks.items():
        np.testing.assert_array_equal(mask, expected[stem], err_msg=stem)
    assert (masks["img3"][1] == VOID).sum() == 60  # the crowd region is void
    # sparse ids 3, 7, 12 -> 1, 2, 3 in id order; VOC's colours; void 255
    assert values["names"] == ["background", "cat", "dog", "bird"]
    assert values["colors"] == [list(colour) for colour in default_colors(4)]
    assert values["ignore_index"] == 255
    cat = coco_mask.decode(coco_mask.frPyObjects([[2, 2, 20, 2, 20, 20, 2, 20]], 30, 40)).squeeze(-1)
    dog = coco_mask.decode(coco_mask.frPyObjects([[10.5, 10, 30, 12, 25.5, 28]], 30, 40)).squeeze(-1)
    contested = int((cat & dog).sum())
    assert contested > 0 and f"{contested} pixel(s) contested" in result.output
    # the check-data table of the result follows
    assert "class" in result.output and "pairs" in result.output


def test_coco_crowd_as_class_and_order_by_class(tmp_path):
    export = coco_export(tmp_path / "export")
    out = tmp_path / "data"
    result = run_cli(
        "import", "coco", export, "--out", out, "--quiet", "--crowd-as-class", "--order", "cat,dog"
    )
    assert_imported(result, out)
    masks, _ = imported(out)
    expected = coco_reference(export, crowd_as_class=True, order=[1, 2])
    for stem, (_, mask) in masks.items():
        np.testing.assert_array_equal(mask, expected[stem], err_msg=stem)
    assert (masks["img3"][1] == 3).sum() == 60  # the crowd keeps its class (bird)
    first = masks["img0"][1]
    cat = (
        coco_mask.decode(coco_mask.frPyObjects([[2, 2, 20, 2, 20, 20, 2, 20]], 30, 40))
        .squeeze(-1)
        .astype(bool)
    )
    assert (first[cat] == 1).all()  # cat, named first, wins the shared pixels though drawn earlier


def test_splits_follow_the_fractions_and_seed(tmp_path):
    export = coco_export(tmp_path / "export")
    first = run_cli(
        "import", "coco", export, "--out", tmp_path / "a", "--quiet", "--val", 0.25, "--test", 0.25
    )
    again = run_cli(
        "import", "coco", export, "--out", tmp_path / "b", "--quiet", "--val", 0.25, "--test", 0.25
    )
    assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output
    splits_a = {stem: split for stem, (split, _) in imported(tmp_path / "a")[0].items()}
    splits_b = {stem: split for stem, (split, _) in imported(tmp_path / "b")[0].items()}
    assert splits_a == splits_b  # same seed, same split
    assert sorted(splits_a.values()) == ["test", "train", "train", "val"]


def test_images_are_hard_linked_or_copied_with_copy(tmp_path):
    export = coco_export(tmp_path / "export")
    linked = run_cli("import", "coco", export, "--out", tmp_path / "linked", "--quiet")
    copied = run_cli("import", "coco", export, "--out", tmp_path / "copied", "--quiet", "--copy")
    assert linked.exit_code == 0 and copied.exit_code == 0
    source = (export.parent / "photos" / "img0.png").stat().st_ino
    assert [path.stat().st_ino for path in (tmp_path / "linked" / "images").rglob("img0.png")] == [source]
    assert [path.stat().st_ino for path in (tmp_path / "copied" / "images").rglob("img0.png")] != [source]
    assert "linked 4, copied 0" in linked.output and "linked 0, copied 4" in copied.output


def test_classes_option_orders_the_classes_and_names_unlisted_labels(tmp_path):
    export = coco_export(tmp_path / "export")
    out = tmp_path / "data"
    result = run_cli("import", "coco", export, "--out", out, "--quiet", "--classes", "dog,cat,bird")
    assert_imported(result, out)
    masks, values = imported(out)
    assert values["names"] == ["background", "dog", "cat", "bird"]
    assert set(np.unique(masks["img0"][1]).tolist()) == {0, 1, 2}
    refused = run_cli("import", "coco", export, "--out", tmp_path / "other", "--quiet", "--classes", "cat")
    assert refused.exit_code == 1
    assert "label 'dog' is not in --classes (cat)" in refused.output
    assert "label 'bird' is not in --classes (cat)" in refused.output
    assert not (tmp_path / "other").exists()


# --- LabelMe ----------------------------------------------------------------------------------------


def labelme_reference(shape_shape, points, shape_type, line_width=10, point_size=5):
    """labelme 6.3.1's `labelme.utils.shape_to_mask` (MIT, Kentaro Wada), as published: the
    reference LabelMe exports are drawn with (labelme itself pulls in Qt, so its rules are here)."""
    mask = Image.fromarray(np.zeros(shape_shape[:2], dtype=np.uint8))
    draw = ImageDraw.Draw(mask)
    xy = [tuple(point) for point in points]
    if shape_type == "circle":
        (cx, cy), (px, py) = xy
        d = math.sqrt((cx - px) ** 2 + (cy - py) ** 2)
        draw.ellipse([cx - d, cy - d, cx + d, cy + d], outline=1, fill=1)
    elif shape_type == "rectangle":
        (x0, y0), (x1, y1) = xy
        draw.rectangle(((min(x0, x1), min(y0, y1)), (max(x0, x1), max(y0, y1))), outline=1, fill=1)
    elif shape_type in ("line", "linestrip"):
        draw.line(xy=xy, fill=1, width=line_width)
    else:
        draw.polygon(xy=xy, outline=1, fill=1)
    return np.array(mask, dtype=bool)


LABELME_SHAPES = [
    ("road", "polygon", [[1, 1], [30, 2], [28, 20], [3, 18]]),
    ("car", "rectangle", [[20, 10], [10, 25]]),
    ("tree", "circle", [[35, 8], [35, 14]]),
    ("car", "line", [[0, 29], [39, 20]]),
    ("tree", "linestrip", [[5, 5], [15, 8], [25, 3]]),
    ("car", "point", [[3, 3]]),
]


def labelme_file(folder, stem, shapes, embed=False, size=(40, 30), seed=0):
    image = write_image(folder / f"{stem}.png", *size, seed=seed)
    data = {
        "version": "5.5.0",
        "flags": {},
        "imagePath": image.name,
        "imageHeight": size[1],
        "imageWidth": size[0],
        "imageData": None,
        "shapes": [
            {
                "label": label,
                "points": points,
                "group_id": None,
                "description": "",
                "shape_type": kind,
                "flags": {},
                "mask": None,
            }
            for label, kind, points in shapes
        ],
    }
    if embed:
        data["imageData"] = base64.b64encode(image.read_bytes()).decode()
        image.unlink()
    (folder / f"{stem}.json").write_text(json.dumps(data))


def test_labelme_shapes_equal_labelmes_shape_to_mask(tmp_path):
    export = tmp_path / "labelme"
    labelme_file(export, "a", LABELME_SHAPES)
    labelme_file(export / "more", "b", LABELME_SHAPES[::-1], embed=True, seed=1)
    labelme_file(
        export,
        "c",
        [
            ("_background_", "polygon", [[0, 0], [10, 0], [5, 5]]),
            ("__ignore__", "rectangle", [[30, 20], [39, 29]]),
            ("road", "polygon", [[2, 2], [12, 2], [7, 9]]),
        ],
        seed=2,
    )
    out = tmp_path / "data"
    result = run_cli("import", "labelme", export, "--out", out, "--quiet", "--test", 0)
    assert_imported(result, out)
    masks, values = imported(out)
    assert values["names"] == ["background", "car", "road", "tree"]  # sorted labels after the background
    index = {name: position for position, name in enumerate(values["names"])}
    for stem, shapes in (("a", LABELME_SHAPES), ("b", LABELME_SHAPES[::-1])):
        expected = paint(
            (30, 40),
            [
                (index[label], labelme_reference((30, 40), points, kind))
                for label, kind, points in shapes
                if kind != "point"
            ],
        )
        np.testing.assert_array_equal(masks[stem][1], expected, err_msg=stem)
    expected_c = paint(
        (30, 40),
        [
            (0, labelme_reference((30, 40), [[0, 0], [10, 0], [5, 5]], "polygon")),
            (VOID, labelme_reference((30, 40), [[30, 20], [39, 29]], "rectangle")),
            (2, labelme_reference((30, 40), [[2, 2], [12, 2], [7, 9]], "polygon")),
        ],
    )
    np.testing.assert_array_equal(masks["c"][1], expected_c)
    assert "2 point shape(s) skipped" in result.output
    assert len(list((out / "images").rglob("b.png"))) == 1  # the embedded image, written out


def test_labelme_line_width_option(tmp_path):
    export = tmp_path / "labelme"
    labelme_file(export, "a", [("car", "line", [[0, 15], [39, 15]])])
    labelme_file(export, "b", [("car", "polygon", [[0, 0], [9, 0], [5, 5]])], seed=1)
    out = tmp_path / "data"
    result = run_cli("import", "labelme", export, "--out", out, "--quiet", "--line-width", 3, "--test", 0)
    assert_imported(result, out)
    expected = labelme_reference((30, 40), [[0, 15], [39, 15]], "line", line_width=3)
    np.testing.assert_array_equal(imported(out)[0]["a"][1], expected.astype(np.uint8))


# --- YOLO -------------------------------------------------------------------------------------------


def test_yolo_polygons_keep_the_splits_and_add_the_background(tmp_path):
    export = tmp_path / "yolo"
    polygons = {
        "train": {
            "t0": [(0, [0.1, 0.1, 0.6, 0.1, 0.6, 0.7, 0.1, 0.7]), (1, [0.4, 0.4, 0.9, 0.5, 0.5, 0.95])],
            "t1": [(1, [0.0, 0.0, 1.0, 0.0, 1.0, 0.3])],
            "t2": None,
        },
        "val": {"v0": [(0, [0.2, 0.2, 0.8, 0.2, 0.5, 0.9])]},
    }
    for split, images in polygons.items():
        for stem, lines in images.items():
            write_image(export / "images" / split / f"{stem}.jpg", 50, 40)
            if lines is not None:
                label = export / "labels" / split / f"{stem}.txt"
                label.parent.mkdir(parents=True, exist_ok=True)
                label.write_text("".join(f"{cls} {' '.join(map(str, coords))}\n" for cls, coords in lines))
    (export / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: car\n  1: person\n"
    )
    out = tmp_path / "data"
    result = run_cli("import", "yolo", export, "--out", out, "--quiet")
    assert_imported(result, out)
    masks, values = imported(out)
    assert values["names"] == ["background", "car", "person"]
    assert {stem: split for stem, (split, _) in masks.items()} == {
        "t0": "train",
        "t1": "train",
        "t2": "train",
        "v0": "val",
    }
    for images in polygons.values():
        for stem, lines in images.items():
            layers = [
                (
                    cls + 1,
                    coco_mask.decode(
                        coco_mask.frPyObjects(
                            [(np.array(coords).reshape(-1, 2) * [50, 40]).ravel().tolist()], 40, 50
                        )
                    ).squeeze(-1),
                )
                for cls, coords in lines or []
            ]
            np.testing.assert_array_equal(masks[stem][1], paint((40, 50), layers), err_msg=stem)
    assert "1 image(s) have no annotation: all background" in result.output


# --- CVAT -------------------------------------------------------------------------------------------


CVAT_LABELS = [("background", (0, 0, 0)), ("car", (250, 50, 83)), ("road", (51, 221, 255))]


def test_cvat_segmentation_mask_export_maps_its_colours(tmp_path):
    export = tmp_path / "cvat"
    (export / "SegmentationClass").mkdir(parents=True)
    (export / "ImageSets" / "Segmentation").mkdir(parents=True)
    (export / "labelmap.txt").write_text(
        "# label:color_rgb:parts:actions\n"
        + "".join(f"{name}:{','.join(map(str, colour))}::\n" for name, colour in CVAT_LABELS)
    )
    rng = np.random.default_rng(0)
    expected = {}
    for index in range(4):
        stem = f"frame_{index:06d}"
        write_image(export / "JPEGImages" / f"{stem}.jpg", 32, 24, seed=index)
        labels = rng.integers(0, 3, (24, 32)).astype(np.uint8)
        colours = np.array([colour for _, colour in CVAT_LABELS], dtype=np.uint8)[labels]
        Image.fromarray(colours).save(export / "SegmentationClass" / f"{stem}.png")
        expected[stem] = labels
    (export / "ImageSets" / "Segmentation" / "default.txt").write_text(
        "".join(f"{stem}\n" for stem in expected)
    )
    out = tmp_path / "data"
    result = run_cli("import", "cvat", export, "--out", out, "--quiet", "--test", 0)
    assert_imported(result, out)
    masks, values = imported(out)
    assert values["names"] == [name for name, _ in CVAT_LABELS]
    assert values["colors"] == [list(colour) for _, colour in CVAT_LABELS]
    for stem, labels in expected.items():
        np.testing.assert_array_equal(masks[stem][1], labels, err_msg=stem)
    # --classes reorders a drawn mask's classes too, and names a class it leaves out
    reordered = run_cli("import", "cvat", export, "--out", tmp_path / "reordered", "--quiet", "--test", 0,
                        "--classes", "road,car")  # fmt: skip
    assert_imported(reordered, tmp_path / "reordered")
    masks, values = imported(tmp_path / "reordered")
    assert values["names"] == ["background", "road", "car"]
    assert values["colors"] == [[0, 0, 0], [51, 221, 255], [250, 50, 83]]  # the colours follow their classes
    for stem, labels in expected.items():
        np.testing.assert_array_equal(masks[stem][1], np.array([0, 2, 1], np.uint8)[labels], err_msg=stem)
    refused = run_cli(
        "import", "cvat", export, "--out", tmp_path / "car", "--quiet", "--test", 0, "--classes", "car"
    )
    assert refused.exit_code == 1 and "frame_000000.png: pixels of 'road', not in --classes" in refused.output


def cvat_rle(mask):
    """CVAT's mask RLE: run lengths over the box, row by row, starting with a run of 0s."""
    flat = mask.ravel().tolist()
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return ", ".join(map(str, counts))


def test_cvat_xml_polygons_boxes_and_masks_in_z_order(tmp_path):
    export = tmp_path / "cvat"
    write_image(export / "images" / "a.png", 40, 30)
    write_image(export / "images" / "b.png", 40, 30, seed=1)
    write_image(export / "images" / "c.png", 40, 30, seed=2)
    blob = np.zeros((6, 8), dtype=np.uint8)
    blob[1:5, 2:7] = 1
    blob[0, 0] = 1
    xml = textwrap.dedent(f"""\
        <?xml version="1.0" encoding="utf-8"?>
        <annotations>
          <version>1.1</version>
          <meta><task><labels>
            <label><name>car</name><color>#fa3253</color><type>any</type></label>
            <label><name>road</name><color>#33ddff</color><type>any</type></label>
          </labels></task></meta>
          <image id="0" name="a.png" width="40" height="30">
            <polygon label="road" occluded="0" points="1.0,1.0;30.0,2.0;25.5,25.0" z_order="1"/>
            <box label="car" source="manual" occluded="0" xtl="10" ytl="5" xbr="20.5" ybr="15" z_order="0"/>
          </image>
          <image id="1" name="b.png" width="40" height="30">
            <mask label="car" source="manual" occluded="0" rle="{cvat_rle(blob)}" left="30" top="20"
                  width="8" height="6" z_order="0"/>
            <polyline label="road" points="0,0;10,10" z_order="0"/>
          </image>
          <image id="2" name="c.png" width="40" height="30"></image>
        </annotations>
        """)
    (export / "annotations.xml").write_text(xml)
    out = tmp_path / "data"
    result = run_cli("import", "cvat", export / "annotations.xml", "--out", out, "--quiet", "--test", 0)
    assert_imported(result, out)
    masks, values = imported(out)
    assert values["names"] == ["background", "car", "road"]
    assert values["colors"] == [[0, 0, 0], [250, 50, 83], [51, 221, 255]]

    def polygon(flat):
        return coco_mask.decode(coco_mask.frPyObjects([flat], 30, 40)).squeeze(-1)

    box = polygon([10, 5, 20.5, 5, 20.5, 15, 10, 15])
    road = polygon([1, 1, 30, 2, 25.5, 25])
    np.testing.assert_array_equal(masks["a"][1], paint((30, 40), [(1, box), (2, road)]))  # z_order 1 on top
    placed = np.zeros((30, 40), dtype=np.uint8)
    placed[20:26, 30:38] = blob
    np.testing.assert_array_equal(masks["b"][1], placed)
    assert "1 shape(s) without area" in result.output


def test_cvat_xml_ellipses_are_turned_72_gons_and_a_bad_rotation_is_named(tmp_path):
    """An ellipse is drawn as the 72-gon of its outline turned by `rotation` degrees (0 when left
    out); a rotation that is no finite number is a problem line (was a ValueError traceback)."""
    export = tmp_path / "cvat"
    for stem, seed in (("a", 0), ("b", 1)):
        write_image(export / "images" / f"{stem}.png", 40, 30, seed=seed)

    def export_with(rotations):
        images = []
        for number, (stem, rotation) in enumerate(zip("ab", rotations, strict=True)):
            turned = "" if rotation is None else f' rotation="{rotation}"'
            images.append(
                f'<image id="{number}" name="{stem}.png" width="40" height="30">'
                f'<ellipse label="car" cx="20" cy="15" rx="12" ry="4"{turned}/></image>'
            )
        labels = "<label><name>car</name><color>#fa3253</color></label>"
        (export / "annotations.xml").write_text(
            f"<annotations><meta><task><labels>{labels}</labels></task></meta>{''.join(images)}</annotations>"
        )
        return export / "annotations.xml"

    def reference(rotation):
        turn = math.radians(rotation)
        steps = np.linspace(0, 2 * math.pi, 72, endpoint=False)
        x, y = 12 * np.cos(steps), 4 * np.sin(steps)
        outline = np.stack(
            [20 + x * math.cos(turn) - y * math.sin(turn), 15 + x * math.sin(turn) + y * math.cos(turn)], 1
        )
        return coco_mask.decode(coco_mask.frPyObjects([outline.ravel().tolist()], 30, 40)).squeeze(-1)

    out = tmp_path / "data"
    result = run_cli("import", "cvat", export_with([None, "90"]), "--out", out, "--quiet", "--test", 0)
    assert_imported(result, out)
    masks, _ = imported(out)
    np.testing.assert_array_equal(masks["a"][1], reference(0))
    np.testing.assert_array_equal(masks["b"][1], reference(90))
    assert masks["a"][1][15, 30] == 1 and masks["b"][1][15, 30] == 0  # wide, then tall
    assert masks["b"][1][24, 20] == 1 and masks["a"][1][24, 20] == 0
    result = run_cli("import", "cvat", export_with(["ten", "nan"]), "--out", tmp_path / "bad", "--quiet")
    assert_refused(
        result,
        tmp_path / "bad",
        "image a.png ellipse 0 (car): cx, cy, rx, ry, rotation must be numbers",
        "image b.png ellipse 0 (car): cx, cy, rx, ry, rotation must be finite numbers",
    )


def test_cvat_xml_boxes_turn_about_their_centre_by_rotation(tmp_path):
    """`<box rotation="30">` was drawn upright. CVAT turns a box about its centre by `rotation`
    degrees, clockwise on the image (its own RotatedBoxesToPolygons, as its ellipses): the mask is
    the 4 turned corners rasterised by pycocotools; a box without rotation stays upright. A turned
    box's corners may leave the image (cut off, as CVAT draws it) while its centre lies inside; a
    centre outside, or a rotation that is no finite number, is a problem line naming the box."""
    export = tmp_path / "cvat"
    middle, edge = (8, 11, 32, 19), (0, 0, 20, 6)  # xtl, ytl, xbr, ybr
    for seed, stem in enumerate("abcde"):
        write_image(export / "images" / f"{stem}.png", 40, 30, seed=seed)

    def export_with(boxes):
        images = []
        for number, (stem, (box, rotation)) in enumerate(zip("abcde", boxes, strict=True)):
            turned = "" if rotation is None else f' rotation="{rotation}"'
            corners = " ".join(
                f'{key}="{value}"' for key, value in zip(("xtl", "ytl", "xbr", "ybr"), box, strict=True)
            )
            images.append(
                f'<image id="{number}" name="{stem}.png" width="40" height="30">'
                f'<box label="car" {corners}{turned}/></image>'
            )
        labels = "<label><name>car</name><color>#fa3253</color></label>"
        (export / "annotations.xml").write_text(
            f"<annotations><meta><task><labels>{labels}</labels></task></meta>{''.join(images)}</annotations>"
        )
        return export / "annotations.xml"

    def reference(box, rotation):
        (x0, y0, x1, y1), turn = box, math.radians(float(rotation or 0))
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        turned = [
            (cx + (x - cx) * math.cos(turn) - (y - cy) * math.sin(turn),
             cy + (x - cx) * math.sin(turn) + (y - cy) * math.cos(turn))
            for x, y in [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        ]  # fmt: skip
        flat = [value for corner in turned for value in corner]
        return coco_mask.decode(coco_mask.frPyObjects([flat], 30, 40)).squeeze(-1)

    out = tmp_path / "data"
    boxes = [(middle, None), (middle, "30"), (middle, "90"), (middle, "-45.5"), (edge, "45")]
    result = run_cli("import", "cvat", export_with(boxes), "--out", out, "--quiet", "--test", 0)
    assert_imported(result, out)
    masks, _ = imported(out)
    for stem, (box, rotation) in zip("abcde", boxes, strict=True):
        np.testing.assert_array_equal(masks[stem][1], reference(box, rotation), err_msg=stem)
    assert masks["a"][1][18, 9] == 1 and masks["b"][1][18, 9] == 0  # the corner turned away
    assert masks["c"][1][5, 20] == 1 and masks["a"][1][5, 20] == 0  # 90: tall, not wide
    assert masks["e"][1][0, 0] == 0 and masks["e"][1][3, 10] == 1  # its corner left the image
    outside = ((40, 28, 60, 40), "30")  # centre (50, 34) beyond the 40x30 image
    bad = [(middle, "ten"), (middle, "inf"), (middle, None), outside, (middle, "30")]
    result = run_cli("import", "cvat", export_with(bad), "--out", tmp_path / "bad", "--quiet")
    assert_refused(
        result,
        tmp_path / "bad",
        "image a.png box 0 (car): xtl, ytl, xbr, ybr, rotation must be numbers",
        "image b.png box 0 (car): xtl, ytl, xbr, ybr, rotation must be finite numbers",
        "image d.png box 0 (car): point (50, 34) lies outside the 40x30 image",
    )


def test_malformed_xml_is_one_line_and_nothing_is_created(tmp_path):
    export = tmp_path / "annotations.xml"
    export.write_text("<annotations><image name='a.png'></annotations>")
    result = run_cli("import", "cvat", export, "--out", tmp_path / "data", "--quiet")
    assert result.exit_code == 1
    assert "not valid XML (mismatched tag" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "data").exists()


# --- Label Studio -----------------------------------------------------------------------------------


def encode_brush(values, word_size=8, sizes=(3, 4, 8, 16)):
    """Label Studio's brush RLE (`@thi.ng/rle-pack`, as label-studio-converter's `encode_rle`
    writes it): every value a repeat run of at most 2**16."""
    bits = [f"{len(values):032b}", f"{word_size - 1:05b}", *(f"{size - 1:04b}" for size in sizes)]
    index = 0
    while index < len(values):
        end = index
        while end + 1 < len(values) and values[end + 1] == values[index] and end + 1 - index < 2**16 - 1:
            end += 1
        length = end - index  # run length - 1
        choice = next(position for position, size in enumerate(sizes) if length < 2**size)
        bits += ["1", f"{choice:02b}", f"{length:0{sizes[choice]}b}", f"{values[index]:0{word_size}b}"]
        index = end + 1
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    return [int(stream[position : position + 8], 2) for position in range(0, len(stream), 8)]


def test_labelstudio_brush_and_polygons(tmp_path):
    export = tmp_path / "ls"
    media = export / "media" / "upload" / "1"
    write_image(media / "8f2a91c3-street.png", 40, 30)
    write_image(media / "07bb1d22-park.png", 40, 30, seed=1)
    write_image(media / "aa-empty.png", 40, 30, seed=2)
    brush = np.zeros((30, 40), dtype=bool)
    brush[3:12, 5:25] = True
    rgba = np.zeros((30, 40, 4), dtype=np.uint8)
    rgba[brush] = (255, 0, 0, 255)
    polygon_percent = [[10, 10], [90, 20], [50, 90]]
    tasks = [
        {
            "id": 1,
            "data": {"image": "/data/upload/1/8f2a91c3-street.png"},
            "annotations": [
                {
                    "id": 9,
                    "result": [
                        {
                            "id": "r1",
                            "type": "brushlabels",
                            "from_name": "tag",
                            "to_name": "image",
                            "original_width": 40,
                            "original_height": 30,
                            "value": {
                                "format": "rle",
                                "rle": encode_brush(rgba.ravel().tolist()),
                                "brushlabels": ["person"],
                            },
                        },
                        {
                            "id": "r2",
                            "type": "polygonlabels",
                            "from_name": "poly",
                            "to_name": "image",
                            "original_width": 40,
                            "original_height": 30,
                            "value": {"points": polygon_percent, "polygonlabels": ["car"]},
                        },
                    ],
                }
            ],
        },
        {
            "id": 2,
            "data": {"image": "/data/upload/1/07bb1d22-park.png"},
            "annotations": [
                {
                    "id": 10,
                    "result": [
                        {
                            "id": "r3",
                            "type": "polygonlabels",
                            "original_width": 40,
                            "original_height": 30,
                            "value": {"points": [[0, 0], [50, 0], [0, 50]], "polygonlabels": ["person"]},
                        },
                        {"id": "r4", "type": "choices", "value": {"choices": ["sunny"]}},
                    ],
                }
            ],
        },
        {"id": 3, "data": {"image": "/data/upload/1/aa-empty.png"}, "annotations": []},
    ]
    (export / "export.json").write_text(json.dumps(tasks))
    out = tmp_path / "data"
    result = run_cli(
        "import",
        "labelstudio",
        export / "export.json",
        "--out",
        out,
        "--quiet",
        "--images",
        export / "media" / "upload" / "1",
        "--test",
        0,
    )
    assert_imported(result, out)
    masks, values = imported(out)
    assert values["names"] == ["background", "car", "person"]
    pixels = (np.array(polygon_percent) * [0.4, 0.3]).ravel().tolist()
    car = coco_mask.decode(coco_mask.frPyObjects([pixels], 30, 40)).squeeze(-1)
    np.testing.assert_array_equal(masks["8f2a91c3-street"][1], paint((30, 40), [(2, brush), (1, car)]))
    corner = coco_mask.decode(coco_mask.frPyObjects([[0, 0, 20, 0, 0, 15]], 30, 40)).squeeze(-1)
    np.testing.assert_array_equal(masks["07bb1d22-park"][1], paint((30, 40), [(2, corner)]))
    assert (masks["aa-empty"][1] == 0).all()
    assert "1 result(s) without area" in result.output


# --- Cityscapes and ADE20K --------------------------------------------------------------------------


def test_cityscapes_label_ids_become_the_19_train_ids(tmp_path):
    root = tmp_path / "cityscapes"
    ids = np.array([[7, 8, 26, 0], [33, 1, 24, 23], [11, 11, 31, 3]], dtype=np.uint8)
    expected = np.array([[0, 1, 13, VOID], [18, VOID, 11, 10], [2, 2, 16, VOID]], dtype=np.uint8)
    for split, city, number in (("train", "aachen", 19), ("train", "bochum", 42), ("val", "frankfurt", 5)):
        prefix = f"{city}_000000_{number:06d}"
        write_image(root / "leftImg8bit" / split / city / f"{prefix}_leftImg8bit.png", 4, 3)
        gt = root / "gtFine" / split / city
        gt.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ids, "L").save(gt / f"{prefix}_gtFine_labelIds.png")
        Image.fromarray(ids, "L").save(gt / f"{prefix}_gtFine_instanceIds.png")  # beside, as shipped
    write_image(root / "leftImg8bit" / "test" / "berlin" / "berlin_000000_000001_leftImg8bit.png", 4, 3)
    out = tmp_path / "data"
    result = run_cli("import", "cityscapes", root, "--out", out, "--quiet")
    assert_imported(result, out)
    masks, values = imported(out)
    assert values["names"] == [name for name, _, _ in CITYSCAPES] and len(values["names"]) == 19
    assert values["colors"][13] == [0, 0, 142] and values["colors"][0] == [128, 64, 128]
    assert sorted(split for split, _ in masks.values()) == ["train", "train", "val"]
    for _, mask in masks.values():
        np.testing.assert_array_equal(mask, expected)
    assert "test" not in values
    refused = run_cli("import", "cityscapes", root, "--out", tmp_path / "other", "--classes", "road")
    assert refused.exit_code == 2 and "--classes does not apply" in refused.output


def test_ade20k_values_shift_down_with_0_void(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    names = ["wall", "building, edifice", "sky", *[f"thing{index}" for index in range(4, 151)]]
    rows = [
        "Idx\tRatio\tTrain\tVal\tName",
        *[f"{index}\t0.01\t10\t1\t{name}" for index, name in enumerate(names, 1)],
    ]
    root.mkdir()
    (root / "objectInfo150.txt").write_text("\n".join(rows) + "\n")
    values = np.array([[0, 1, 2], [150, 3, 0]], dtype=np.uint8)
    for folder, stem in (
        ("training", "ADE_train_00000001"),
        ("training", "ADE_train_00000002"),
        ("validation", "ADE_val_00000001"),
    ):
        write_image(root / "images" / folder / f"{stem}.jpg", 3, 2)
        (root / "annotations" / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(values, "L").save(root / "annotations" / folder / f"{stem}.png")
    out = tmp_path / "data"
    result = run_cli("import", "ade20k", root, "--out", out, "--quiet")
    assert_imported(result, out)
    masks, dataset = imported(out)
    assert dataset["names"][:3] == ["wall", "building", "sky"] and len(dataset["names"]) == 150
    for _, mask in masks.values():
        np.testing.assert_array_equal(mask, [[VOID, 0, 1], [149, 2, VOID]])
    assert sorted(split for split, _ in masks.values()) == ["train", "train", "val"]


# --- bad input: every problem at once, nothing created -------------------------------------------------


def test_every_problem_of_an_export_is_named_at_once_and_nothing_is_created(tmp_path):
    export = tmp_path / "export"
    for name in ("a/x.png", "b/x.png", "ok.png", "small.png"):
        write_image(export / name, 40, 30)
    write_image(export / "small.png", 20, 10)
    images = [
        {"id": 1, "file_name": "ok.png", "width": 40, "height": 30},
        {"id": 2, "file_name": "missing.png", "width": 40, "height": 30},
        {"id": 3, "file_name": "small.png", "width": 40, "height": 30},
        {"id": 4, "file_name": "a/x.png", "width": 40, "height": 30},
        {"id": 5, "file_name": "b/x.png", "width": 40, "height": 30},
        {"id": 6, "file_name": "../../outside.png", "width": 40, "height": 30},
    ]
    annotations = [
        {"id": 10, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 5, 5]], "iscrowd": 0},
        {"id": 11, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 90, 1, 90, 20]], "iscrowd": 0},
        {"id": 12, "image_id": 1, "category_id": 99, "segmentation": [[1, 1, 9, 1, 9, 9]], "iscrowd": 0},
        {"id": 13, "image_id": 1, "category_id": 2, "segmentation": [[1, 1, 9, 1, 9, 9]], "iscrowd": 0},
        {"id": 14, "image_id": 77, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]], "iscrowd": 0},
    ]
    categories = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    path = export / "coco.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    out = tmp_path / "data"
    result = run_cli("import", "coco", path, "--out", out, "--quiet", "--classes", "cat")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    expected = [
        "annotation 10 polygon 0: polygon has 2 point(s); a polygon needs at least 3",
        "annotation 11: point (90, 1) lies outside the 40x30 image",
        "annotation 12: category id 99 is not among the categories",
        "annotation 13: label 'dog' is not in --classes (cat)",
        "annotation 14: image id 77 is not among the images",
        "image 2 (missing.png): image",  # ... not found
        "image 3 (small.png): image is 20x10, the annotation says 40x30",
        "duplicate file name 'x.png': 2 images",
        "image 6 (../../outside.png): image path '../../outside.png' leaves",
    ]
    for text in expected:
        assert sum(text in line for line in lines) == 1, (text, result.output)
    assert any("missing.png not found" in line for line in lines)
    assert "9 problem(s)" in result.output and "was not created" in result.output
    assert "Traceback" not in result.output
    assert not out.exists() and not any(tmp_path.glob(".data.*"))


def test_malformed_json_among_good_files_is_listed_with_the_others(tmp_path):
    export = tmp_path / "labelme"
    labelme_file(export, "good", [("car", "polygon", [[1, 1], [9, 1], [5, 8]])])
    (export / "broken.json").write_text('{"shapes": [')
    (export / "nan.json").write_text('{"shapes": [], "imageWidth": NaN}')
    labelme_file(export, "gone", [("car", "polygon", [[1, 1], [9, 1], [5, 8]])])
    (export / "gone.png").unlink()
    result = run_cli("import", "labelme", export, "--out", tmp_path / "data", "--quiet", "--test", 0)
    assert_refused(
        result,
        tmp_path / "data",
        "broken.json: not valid JSON",
        "nan.json: NaN is not a number JSON allows",
        ("gone.json: image", "gone.png not found"),
    )


def test_an_exif_rotated_image_is_drawn_upright_and_said(tmp_path):
    """LabelMe (as every tool) shows and annotates the upright view: orientation 6 turns the stored
    40x30 pixels into a 30x40 picture; the annotation's size is the upright one."""
    export = tmp_path / "labelme"
    image = write_image(export / "phone.jpg", 40, 30, exif_orientation=6)
    shapes = [{"label": "car", "points": [[2, 2], [20, 2], [20, 35]], "shape_type": "polygon"}]
    data = {"shapes": shapes, "imagePath": image.name, "imageData": None, "imageWidth": 30, "imageHeight": 40}
    (export / "phone.json").write_text(json.dumps(data))
    labelme_file(export, "plain", [("car", "polygon", [[1, 1], [9, 1], [5, 8]])])
    out = tmp_path / "data"
    result = run_cli("import", "labelme", export, "--out", out, "--quiet", "--test", 0)
    assert_imported(result, out)
    mask = imported(out)[0]["phone"][1]
    assert mask.shape == (40, 30)
    np.testing.assert_array_equal(mask, labelme_reference((40, 30), [[2, 2], [20, 2], [20, 35]], "polygon"))
    assert "1 image(s) carry an EXIF orientation: their masks are drawn on the upright view" in result.output
    # drawn on the stored pixels' size instead: named, with the reason
    data.update(imageWidth=40, imageHeight=30, shapes=[{**shapes[0], "points": [[2, 2], [20, 2], [20, 25]]}])
    (export / "phone.json").write_text(json.dumps(data))
    refused = run_cli("import", "labelme", export, "--out", tmp_path / "other", "--quiet")
    assert refused.exit_code == 1
    assert "the annotation is 40x30, the image's stored pixels, but the image carries EXIF orientation 6" in (
        refused.output
    )


def test_without_pycocotools_the_import_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    export = coco_export(tmp_path / "export")
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    monkeypatch.setitem(sys.modules, "pycocotools.mask", None)
    result = run_cli("import", "coco", export, "--out", tmp_path / "data", "--quiet")
    assert result.exit_code == 1
    from fastseg.extras import install_hint

    assert install_hint("import") in result.output and "Traceback" not in result.output
    assert "fastseg[" not in result.output  # PyPI's "fastseg" is another project
    assert not (tmp_path / "data").exists()


# --- the destination: never overwritten, replaced only when an import's, whole or absent -------------


def test_an_existing_dataset_is_kept_without_force_and_force_replaces_only_an_import(tmp_path):
    export = coco_export(tmp_path / "export")
    out = tmp_path / "data"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    refused = run_cli("import", "coco", export, "--out", out, "--quiet")
    assert refused.exit_code == 1 and "already exists" in refused.output
    forced = run_cli("import", "coco", export, "--out", out, "--quiet", "--force")
    assert forced.exit_code == 1 and "1 file(s) there are not its (notes.txt)" in forced.output
    assert (out / "notes.txt").read_text() == "mine" and not (out / "dataset.yaml").exists()

    (out / "notes.txt").unlink()
    out.rmdir()
    assert run_cli("import", "coco", export, "--out", out, "--quiet").exit_code == 0
    again = run_cli("import", "coco", export, "--out", out, "--quiet", "--force", "--test", 0)
    assert again.exit_code == 0, again.output
    assert "test" not in imported(out)[1]  # replaced by the second import
    (out / "images" / "train" / "extra.jpg").write_bytes(b"a user's file")
    kept = run_cli("import", "coco", export, "--out", out, "--quiet", "--force")
    assert kept.exit_code == 1 and "images/train/extra.jpg" in kept.output
    assert (out / "images" / "train" / "extra.jpg").exists()


KILLED_IMPORT = """
import os, signal, sys
from pathlib import Path
import fastseg.importing.writer as writer
from fastseg.importing.importer import import_dataset
from fastseg.importing.writer import ImportOptions

calls = []
real = writer.write_mask

def dying(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)

writer.write_mask = dying
import_dataset("coco", Path(sys.argv[1]), Path(sys.argv[2]), ImportOptions(threads=1))
"""


def test_a_killed_import_leaves_nothing_and_the_next_removes_its_temporary(tmp_path):
    export = coco_export(tmp_path / "export")
    out = tmp_path / "data"
    killed = subprocess.run([sys.executable, "-c", KILLED_IMPORT, str(export), str(out)], capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    assert not out.exists()
    left = list(tmp_path.glob(".data.import.*.tmp"))
    assert len(left) == 1 and any(left[0].rglob("*.png"))  # a partial build, hidden beside
    result = run_cli("import", "coco", export, "--out", out, "--quiet")
    assert_imported(result, out)
    assert not list(tmp_path.glob(".data.*"))
    assert len(list((out / "masks").rglob("*.png"))) == 4


def test_a_temporary_of_a_live_import_is_left_alone(tmp_path):
    export = coco_export(tmp_path / "export")
    busy = tmp_path / f".data.import.{os.getppid()}.tmp"  # a live process's (the test runner's parent)
    busy.mkdir()
    result = run_cli("import", "coco", export, "--out", tmp_path / "data", "--quiet")
    assert result.exit_code == 0 and busy.is_dir()


# --- the result trains -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_imported_coco_export_trains(tmp_path):
    export = tmp_path / "export"
    images, annotations = [], []
    rng = np.random.default_rng(0)
    for index in range(10):
        write_image(export / f"img{index}.png", 48, 40, seed=index)
        images.append({"id": index, "file_name": f"img{index}.png", "width": 48, "height": 40})
        x, y = rng.integers(2, 20, 2).tolist()
        annotations.append(
            {
                "id": index,
                "image_id": index,
                "category_id": 1 + index % 2,
                "iscrowd": 0,
                "segmentation": [[x, y, x + 20, y, x + 20, y + 15, x, y + 15]],
            }
        )
    path = export / "coco.json"
    path.write_text(
        json.dumps(
            {
                "images": images,
                "annotations": annotations,
                "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
            }
        )
    )
    data = tmp_path / "data"
    assert run_cli("import", "coco", path, "--out", data, "--quiet").exit_code == 0
    run = tmp_path / "run"
    trained = run_cli(
        "train",
        "--data",
        data,
        "--out",
        run,
        "--recipe",
        "seed",
        "--size",
        32,
        "--no-pretrained",
        "--num-workers",
        0,
        "--quiet",
        "--batch-size",
        2,
        "--epochs",
        1,
    )
    assert trained.exit_code == 0, trained.output
    from fastseg.model.checkpoint import load_model

    loaded = load_model(run)  # the model carries the imported classes and colours
    assert loaded.classes == ["background", "cat", "dog"]
    assert [list(colour) for colour in loaded.colors] == imported(data)[1]["colors"]


# --- each format's own bad inputs ------------------------------------------------------------------


def test_yolo_bad_lines_are_named_by_file_and_line(tmp_path):
    export = tmp_path / "yolo"
    for split in ("train", "val"):
        write_image(export / "images" / split / f"{split}.jpg", 50, 40)
        (export / "labels" / split).mkdir(parents=True)
    (export / "labels" / "train" / "train.txt").write_text(
        "0 0.5 0.5 0.2 0.2\n"  # a detection box
        "1 0.1 0.1 1.5 0.1 0.5 0.9\n"  # outside 0-1
        "7 0.1 0.1 0.9 0.1 0.5 0.9\n"  # no class 7
        "0 a b c d e f\n"  # not numbers
        "0 0.1 0.1 0.9 0.1 0.5\n"  # an odd count
    )
    (export / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [car, person]\n")
    result = run_cli("import", "yolo", export, "--out", tmp_path / "data", "--quiet")
    lines = ["a box (class cx cy w h) is detection", "coordinates outside 0-1",
             "class id 7 is not among the 2 names", "not numbers", "polygon has 5 coordinates"]  # fmt: skip
    assert_refused(
        result, tmp_path / "data", *(f"train.txt:{line}: {text}" for line, text in enumerate(lines, 1))
    )


def test_cvat_mask_colours_and_sizes_that_are_not_the_labelmaps_are_named(tmp_path):
    export = tmp_path / "cvat"
    (export / "SegmentationClass").mkdir(parents=True)
    (export / "labelmap.txt").write_text("background:0,0,0::\ncar:250,50,83::\n")
    for stem, size, colour in (
        ("a", (8, 6), (1, 2, 3)),
        ("b", (9, 9), (250, 50, 83)),
        ("c", (8, 6), (0, 0, 0)),
    ):
        write_image(export / "JPEGImages" / f"{stem}.jpg", 8, 6)
        Image.new("RGB", size, colour).save(export / "SegmentationClass" / f"{stem}.png")
    (export / "ImageSets" / "Segmentation").mkdir(parents=True)
    (export / "ImageSets" / "Segmentation" / "default.txt").write_text("a\nb\nc\n../../secret\n")
    result = run_cli("import", "cvat", export, "--out", tmp_path / "data", "--quiet", "--test", 0)
    assert_refused(
        result,
        tmp_path / "data",
        "../../secret: the name leaves SegmentationClass/",
        "a.png: colours (1, 2, 3) are no label's in labelmap.txt",
        "b.png: mask is 9x9, the image 8x6",
    )


def test_labelstudio_bad_regions_are_named(tmp_path):
    export = tmp_path / "ls"
    write_image(export / "a.png", 40, 30)
    size = {"original_width": 40, "original_height": 30}
    brush = {"format": "rle", "rle": [0, 0, 1], "brushlabels": ["x"]}
    results = [
        {**size, "type": "brushlabels", "value": brush},
        {**size, "type": "polygonlabels", "value": {"points": [[1, 1], [5, 5]], "polygonlabels": ["x"]}},
        {
            **size,
            "type": "polygonlabels",
            "value": {"points": [[1, 1], [5, 5], [9, 1]], "polygonlabels": ["x", "y"]},
        },
    ]
    tasks = [
        {"id": 1, "data": {"image": "/data/upload/1/a.png"}, "annotations": [{"result": results}]},
        {"id": 2, "data": {"image": "/data/upload/1/gone.png"}, "annotations": []},
    ]
    (export / "export.json").write_text(json.dumps(tasks))
    result = run_cli("import", "labelstudio", export / "export.json", "--out", tmp_path / "data", "--quiet")
    assert_refused(
        result,
        tmp_path / "data",
        "task 1 result 0 (x, brush): its rle cannot be decoded (it ends early)",
        "task 1 result 1 (x, polygon): polygon has 2 point(s)",
        "task 1 result 2: a region needs exactly one label",
        "task 2: image gone.png not found",
    )


def test_benchmark_trees_with_values_outside_their_classes_are_named(tmp_path):
    root = tmp_path / "cityscapes"
    prefix = "aachen_000000_000019"
    for split in ("train", "val"):
        write_image(root / "leftImg8bit" / split / "aachen" / f"{prefix}_leftImg8bit.png", 4, 3)
        (root / "gtFine" / split / "aachen").mkdir(parents=True)
        Image.fromarray(np.full((3, 4), 40, np.uint8), "L").save(
            root / "gtFine" / split / "aachen" / f"{prefix}_gtFine_labelIds.png"
        )
    result = run_cli("import", "cityscapes", root, "--out", tmp_path / "data", "--quiet")
    assert result.exit_code == 1 and "values [40] are not Cityscapes label ids (0-33)" in result.output
    ade = tmp_path / "ade"
    (ade / "annotations" / "training").mkdir(parents=True)
    write_image(ade / "images" / "training" / "ADE_train_00000001.jpg", 3, 2)
    Image.fromarray(np.full((2, 3), 200, np.uint8), "L").save(
        ade / "annotations" / "training" / "ADE_train_00000001.png"
    )
    result = run_cli("import", "ade20k", ade, "--out", tmp_path / "data", "--quiet")
    assert result.exit_code == 1
    assert "objectInfo150.txt (ADEChallengeData2016's class list) not found" in result.output
    assert "annotations/validation: not found" in result.output
    assert "values [200] are not ADE20K classes (0-150)" in result.output


def test_a_label_with_a_newline_is_named_not_written(tmp_path):
    export = tmp_path / "labelme"
    labelme_file(export, "a", [("car\nbus", "polygon", [[1, 1], [9, 1], [5, 8]])])
    labelme_file(export, "b", [("car", "polygon", [[1, 1], [9, 1], [5, 8]])], seed=1)
    result = run_cli("import", "labelme", export, "--out", tmp_path / "data", "--quiet", "--test", 0)
    assert result.exit_code == 1
    assert "class name(s) 'car\\nbus' hold control characters" in result.output
    labelme_file(export, "a", [("  ", "polygon", [[1, 1], [9, 1], [5, 8]])])
    result = run_cli("import", "labelme", export, "--out", tmp_path / "data", "--quiet", "--test", 0)
    assert result.exit_code == 1 and "a label is empty or blank" in result.output
    assert not (tmp_path / "data").exists()


def test_a_newline_inside_a_classes_name_is_one_usage_line(tmp_path):
    """`--classes` holding a newline (or a tab) inside a name: a usage error (exit 2) whose message
    is one line naming the option and the name, escaped; it was every shape's problem line with
    the raw newline in it, and advice to rename labels in the export."""
    export, out = tmp_path / "labelme", tmp_path / "data"
    labelme_file(export, "a", [("car", "polygon", [[1, 1], [9, 1], [5, 8]])])
    labelme_file(export, "b", [("bus", "polygon", [[1, 1], [9, 1], [5, 8]])], seed=1)
    for classes, shown in (("car\nbus", "'car\\nbus'"), ("car,bus\tcar", "'bus\\tcar'")):
        result = run_cli("import", "labelme", export, "--out", out, "--quiet", "--classes", classes)
        assert result.exit_code == 2, result.output
        error = [line for line in result.output.splitlines() if line.startswith("Error")]
        assert error == [f"Error: --classes: {shown}: a class name is one line of text, without control "
                         "characters (a newline, a tab)"], result.output  # fmt: skip
        assert result.output.endswith(error[0] + "\n")
    assert not out.exists()
    result = run_cli(
        "import", "labelme", export, "--out", out, "--quiet", "--test", 0, "--classes", "car,bus\n"
    )
    assert_imported(result, out)  # a newline at the end is white space, stripped


def test_many_missing_images_suggest_the_images_option(tmp_path):
    export = coco_export(tmp_path / "export")
    result = run_cli("import", "coco", export, "--out", tmp_path / "data", "--quiet", "--images", tmp_path)
    assert result.exit_code == 1
    assert "4 of 4 images not found: is --images the folder holding the export's images?" in result.output


def test_a_dataset_appearing_during_the_import_is_not_replaced(tmp_path, monkeypatch):
    """Two imports to one --out at once: the later rename finds the folder there and stops."""
    import fastseg.importing.writer as writer

    export = coco_export(tmp_path / "export")
    out = tmp_path / "data"
    real = writer._write_dataset_file

    def meanwhile(folder, *args):
        real(folder, *args)
        out.mkdir()
        (out / "other.txt").write_text("the other import's")

    monkeypatch.setattr(writer, "_write_dataset_file", meanwhile)
    result = run_cli("import", "coco", export, "--out", out, "--quiet")
    assert result.exit_code == 1 and "appeared while importing" in result.output
    assert [path.name for path in out.iterdir()] == ["other.txt"]
    assert not list(tmp_path.glob(".data.*"))


def test_a_dataset_inside_the_labelme_folder_is_not_read_as_labels_next_time(tmp_path):
    export = tmp_path / "labelme"
    for index in range(3):
        labelme_file(export, f"a{index}", [("car", "polygon", [[1, 1], [9, 1], [5, 8]])], seed=index)
    first = run_cli("import", "labelme", export, "--out", export / "data", "--quiet", "--test", 0)
    again = run_cli("import", "labelme", export, "--out", export / "data", "--quiet", "--test", 0, "--force")
    assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--val", "1.5"], "--val 1.5: a fraction from 0 to below 1"),
        (["--val", "nan"], "--val nan"),
        (["--val", "0.6", "--test", "0.5"], "leave no training images"),
        (["--val", "0"], "--val must be above 0"),
        (["--classes", "cat,,dog"], "--classes: a comma-separated list"),
        (["--classes", "cat,cat"], "cat named more"),
        (["--order", "cat,cat"], "Error: --order: cat named more than once"),
        (["--order", "dog, cat,dog ,cat"], "Error: --order: dog, cat named more than once"),
    ],
)
def test_option_mistakes_are_usage_errors(tmp_path, options, expected):
    export = coco_export(tmp_path / "export")
    result = run_cli("import", "coco", export, "--out", tmp_path / "data", "--quiet", *options)
    assert result.exit_code == 2 and expected in result.output, result.output
    assert not (tmp_path / "data").exists()


def test_a_large_export_is_read_past_the_config_size_limit(tmp_path, monkeypatch):
    """Exports are not configs: a COCO JSON past structured_files' 16 MB cap for configs is read."""
    import fastseg.structured_files as structured_files

    export = coco_export(tmp_path / "export")
    # the configs' cap, shrunk below this file's size
    assert export.stat().st_size > 1000
    monkeypatch.setattr(structured_files.read_utf8, "__defaults__", ("file", 1000))
    monkeypatch.setattr(structured_files.load_json, "__defaults__", ("JSON file", 1000))
    with pytest.raises(structured_files.StructuredFileError, match="too large"):
        structured_files.load_json(export)
    result = run_cli("import", "coco", export, "--out", tmp_path / "data", "--quiet")
    assert result.exit_code == 0, result.output


KILLED_REPLACE = """
import os, signal, sys
from pathlib import Path
import fastseg.importing.writer as writer
from fastseg.importing.importer import import_dataset
from fastseg.importing.writer import ImportOptions

real = os.rename

def dying(source, target):
    real(source, target)
    if ".replaced." in str(target):  # the earlier import moved aside, the new one not yet in place
        os.kill(os.getpid(), signal.SIGKILL)

writer.os.rename = dying
import_dataset("coco", Path(sys.argv[1]), Path(sys.argv[2]), ImportOptions(force=True, test=0))
"""


def test_a_kill_during_force_leaves_the_earlier_import_which_the_next_run_puts_back(tmp_path):
    export = coco_export(tmp_path / "export")
    out = tmp_path / "data"
    assert run_cli("import", "coco", export, "--out", out, "--quiet").exit_code == 0
    before = imported(out)[1]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_REPLACE, str(export), str(out)], capture_output=True
    )
    assert killed.returncode == -signal.SIGKILL and not out.exists()
    refused = run_cli("import", "coco", export, "--out", out, "--quiet")  # puts it back, then refuses
    assert refused.exit_code == 1 and "already exists" in refused.output
    assert imported(out)[1] == before and not list(tmp_path.glob(".data.*"))


def test_coco_without_image_sizes_uses_the_images_own(tmp_path):
    """Some exporters leave width and height out: the image's size decides, and an RLE must fit it."""
    export = coco_export(tmp_path / "export", with_crowd=False)
    data = json.loads(export.read_text())
    for image in data["images"]:
        del image["width"], image["height"]
    export.write_text(json.dumps(data))
    out = tmp_path / "data"
    first = run_cli("import", "coco", export, "--out", out, "--quiet")
    assert_imported(first, out)
    assert "note: 1 image(s) have no annotation: all background" in first.output  # img3, without its crowd
    masks = imported(out)[0]
    data["annotations"][2]["segmentation"]["size"] = [20, 60]
    data["annotations"][2]["segmentation"]["counts"] = [35, 10, 1155]
    export.write_text(json.dumps(data))
    refused = run_cli("import", "coco", export, "--out", tmp_path / "other", "--quiet")
    assert refused.exit_code == 1
    assert "annotation 3: RLE size [20, 60] is not the image's [height, width] [30, 40]" in refused.output
    assert len(masks) == 4 and (masks["img3"][1] == 0).all()


def test_labelme_images_may_sit_in_a_sibling_folder_but_not_outside_source(tmp_path):
    export = tmp_path / "project"
    for index in range(3):
        write_image(export / "images" / f"p{index}.png", 40, 30, seed=index)
        labelme_file(export / "annotations", f"p{index}", [("car", "polygon", [[1, 1], [9, 1], [5, 8]])])
        data = json.loads((export / "annotations" / f"p{index}.json").read_text())
        (export / "annotations" / f"p{index}.png").unlink()
        data["imagePath"] = f"..\\images\\p{index}.png"  # as labelme writes it on Windows
        (export / "annotations" / f"p{index}.json").write_text(json.dumps(data))
    out = tmp_path / "data"
    assert_imported(run_cli("import", "labelme", export, "--out", out, "--quiet", "--test", 0), out)
    data["imagePath"] = "../../elsewhere.png"
    (export / "annotations" / "p2.json").write_text(json.dumps(data))
    refused = run_cli("import", "labelme", export, "--out", tmp_path / "other", "--quiet", "--test", 0)
    assert refused.exit_code == 1 and "image path 'annotations/../../elsewhere.png' leaves" in refused.output


def test_labelme_mask_shapes_are_placed_in_their_box(tmp_path):
    """labelme 5's `mask` shape: a PNG of the box from its first point to its second, inclusive
    (labelme's shapes_to_label: mask[y1 : y2 + 1, x1 : x2 + 1] = shape['mask'])."""
    export = tmp_path / "labelme"
    blob = np.zeros((5, 7), dtype=bool)
    blob[1:4, 2:6] = True
    buffer = io.BytesIO()
    Image.fromarray(blob).save(buffer, format="PNG")
    shape = {"label": "car", "points": [[10, 20], [16, 24]], "shape_type": "mask",
             "mask": base64.b64encode(buffer.getvalue()).decode()}  # fmt: skip
    labelme_file(export, "a", [])
    data = json.loads((export / "a.json").read_text())
    data["shapes"] = [shape]
    (export / "a.json").write_text(json.dumps(data))
    labelme_file(export, "b", [("car", "polygon", [[1, 1], [9, 1], [5, 8]])], seed=1)
    out = tmp_path / "data"
    assert_imported(run_cli("import", "labelme", export, "--out", out, "--quiet", "--test", 0), out)
    expected = np.zeros((30, 40), dtype=np.uint8)
    expected[20:25, 10:17] = blob
    np.testing.assert_array_equal(imported(out)[0]["a"][1], expected)


def test_stacking_equals_painting_in_order_for_row_and_column_major_layers():
    """raster.stack reads only each layer's pixels (pycocotools' column-major masks without a
    copy): the same labels and contested count as painting whole arrays in order."""
    from fastseg.importing.raster import stack

    rng = np.random.default_rng(0)
    for trial in range(50):
        height, width = (int(side) for side in rng.integers(1, 40, 2))
        layers = []
        for _ in range(int(rng.integers(0, 6))):
            pixels = rng.random((height, width)) < rng.random()
            layers.append(
                (int(rng.choice([1, 2, 3, VOID])), np.asfortranarray(pixels) if trial % 2 else pixels)
            )
        labels, contested = stack(height, width, layers)
        expected = paint((height, width), layers)
        current = np.full((height, width), -1)
        taken = np.zeros((height, width), dtype=bool)
        for label, pixels in layers:
            taken |= pixels & (current >= 0) & (current != label)
            current = np.where(pixels, label, current)
        np.testing.assert_array_equal(labels, expected)
        assert contested == int(taken.sum()), trial


# --- a stranger's second hostile pass -----------------------------------------------------------------


def _one_line_refusal(result, words):
    """Exit 1 or 2 with one `Error:` line naming the problem, never a traceback."""
    assert result.exit_code in (1, 2), result.output
    assert not isinstance(result.exception, (ValueError, OSError)) or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert words in result.output, result.output


@pytest.mark.parametrize(
    "file_name, words",
    [("photos/img\u00000.png", "cannot be used"), ("a" * 5000 + ".png", "cannot be used")],
)
def test_coco_file_names_no_file_system_takes_are_problems_not_tracebacks(tmp_path, file_name, words):
    path = coco_export(tmp_path / "export")
    data = json.loads(path.read_text())
    data["images"][0]["file_name"] = file_name
    path.write_text(json.dumps(data))
    result = run_cli("import", "coco", path, "--out", tmp_path / "ds", "--quiet")
    _one_line_refusal(result, words)
    assert result.exit_code == 1 and not (tmp_path / "ds").exists()


def test_an_out_under_a_file_or_an_unwritable_folder_is_one_line(tmp_path):
    path = coco_export(tmp_path / "export")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for out in (blocker / "ds", blocker / "deeper" / "ds"):
        result = run_cli("import", "coco", path, "--out", out, "--quiet")
        _one_line_refusal(result, "is not a folder")
        assert blocker.read_text() == "not a folder"
    result = run_cli("import", "coco", path, "--out", tmp_path / ("d" * 300), "--quiet")
    _one_line_refusal(result, "File name too long")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file", "export"]
    if os.geteuid() != 0:  # root may write anywhere: the check cannot fail for it
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            result = run_cli("import", "coco", path, "--out", locked / "ds", "--quiet")
            _one_line_refusal(result, "is not writable")
            assert list(locked.iterdir()) == []
        finally:
            locked.chmod(0o700)


def test_a_negative_seed_is_a_usage_error(tmp_path):
    from fastseg.errors import OptionError
    from fastseg.importing.writer import ImportOptions

    path = coco_export(tmp_path / "export")
    result = run_cli("import", "coco", path, "--out", tmp_path / "ds", "--seed", "-1", "--quiet")
    _one_line_refusal(result, "--seed")
    assert result.exit_code == 2 and not (tmp_path / "ds").exists()
    with pytest.raises(OptionError, match="--seed -1"):
        ImportOptions(seed=-1).check()


@pytest.mark.parametrize("crowd", ["no", 2, [1]])
def test_an_iscrowd_other_than_0_or_1_is_a_problem_not_a_void_region(tmp_path, crowd):
    path = coco_export(tmp_path / "export")
    data = json.loads(path.read_text())
    data["annotations"][0]["iscrowd"] = crowd
    path.write_text(json.dumps(data))
    result = run_cli("import", "coco", path, "--out", tmp_path / "ds", "--quiet")
    _one_line_refusal(result, "annotation 1: iscrowd")
    assert result.exit_code == 1 and not (tmp_path / "ds").exists()


def test_labelme_embedded_images_are_not_held_in_memory_between_read_and_write(tmp_path):
    """Every imageData was decoded at the read and held until written: memory in proportion to the
    whole export (2 MiB a file measured: 86 MiB for 40 files). Now checked at the read, decoded
    again per image when written; a file changed meanwhile is a problem line, nothing created."""
    from fastseg.importing import labelme
    from fastseg.importing.source import ReadOptions

    folder = tmp_path / "export"
    for index in range(3):
        labelme_file(folder, f"img{index}", LABELME_SHAPES, embed=True, seed=index)
    source = labelme.read(folder, ReadOptions())
    assert len(source.items) == 3 and all(item.image_bytes is None for item in source.items)
    for item in source.items:
        with Image.open(io.BytesIO(item.embedded())) as picture:
            assert picture.size == (40, 30)
    data = json.loads((folder / "img1.json").read_text())
    data["imageData"] = None
    (folder / "img1.json").write_text(json.dumps(data))
    from fastseg.importing.source import ImportProblems
    from fastseg.importing.writer import ImportOptions, write_dataset

    with pytest.raises(ImportProblems, match="imageData cannot be read again"):
        write_dataset(source, tmp_path / "ds", ImportOptions(val=0.34, test=0), "labelme", folder)
    assert not (tmp_path / "ds").exists()


# --- every format's import trains (#22) -------------------------------------------------------------

W, H = 48, 40  # each generated image; 10 of them, 7 in train and 3 in val where the format has splits
TRAINING_SPLITS = ["train"] * 7 + ["val"] * 3


def two_boxes(index):
    """Image INDEX's two shapes as (class 0 or 1, [x0, y0, x1, y1]) in pixels, varying per image."""
    x, y = 2 + 3 * index % 20, 2 + 2 * index % 15
    return [(0, [x, y, x + 20, y + 14]), (1, [W - 18 - index, H - 16, W - 2 - index, H - 2])]


def box_polygon(box):
    x0, y0, x1, y1 = box
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def box_labels(index, values):
    """Image INDEX's two boxes painted with VALUES[class] on VALUES[2] (a raster export's mask)."""
    labels = np.full((H, W), values[2], dtype=np.uint8)
    for cls, (x0, y0, x1, y1) in two_boxes(index):
        labels[y0:y1, x0:x1] = values[cls]
    return labels


def coco_training_export(root):
    images = [{"id": index, "file_name": f"img{index}.png", "width": W, "height": H} for index in range(10)]
    annotations = [
        {"id": 2 * index + cls, "image_id": index, "category_id": 1 + cls, "iscrowd": 0,
         "segmentation": [box_polygon(box)]}
        for index in range(10)
        for cls, box in two_boxes(index)
    ]  # fmt: skip
    for index in range(10):
        write_image(root / f"img{index}.png", W, H, seed=index)
    categories = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    (root / "coco.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return [root / "coco.json"], ["background", "cat", "dog"]


def labelme_training_export(root):
    for index in range(10):
        (x0, y0, x1, y1), box = (box for _, box in two_boxes(index))
        shapes = [
            ("road", "polygon", [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]),
            ("car", "rectangle", [box[:2], box[2:]]),
        ]
        labelme_file(root, f"img{index}", shapes, size=(W, H), seed=index)
    return [root], ["background", "car", "road"]


def yolo_training_export(root):
    for index, split in enumerate(TRAINING_SPLITS):
        write_image(root / "images" / split / f"img{index}.jpg", W, H, seed=index)
        lines = "".join(
            f"{cls} {' '.join(str(value / (W, H)[position % 2]) for position, value in enumerate(polygon))}\n"
            for cls, box in two_boxes(index)
            for polygon in [box_polygon(box)]
        )
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split / f"img{index}.txt").write_text(lines)
    (root / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: car\n  1: person\n"
    )
    return [root], ["background", "car", "person"]


def cvat_mask_training_export(root):
    (root / "SegmentationClass").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "labelmap.txt").write_text(
        "# label:color_rgb:parts:actions\n"
        + "".join(f"{name}:{','.join(map(str, colour))}::\n" for name, colour in CVAT_LABELS)
    )
    palette = np.array([colour for _, colour in CVAT_LABELS], dtype=np.uint8)
    for index, split in enumerate(TRAINING_SPLITS):
        write_image(root / "JPEGImages" / f"frame_{index:06d}.jpg", W, H, seed=index)
        Image.fromarray(palette[box_labels(index, [1, 2, 0])]).save(
            root / "SegmentationClass" / f"frame_{index:06d}.png"
        )
        with (root / "ImageSets" / "Segmentation" / f"{split}.txt").open("a") as listing:
            listing.write(f"frame_{index:06d}\n")
    return [root], [name for name, _ in CVAT_LABELS]


def cvat_xml_training_export(root):
    images = []
    for index, split in enumerate(TRAINING_SPLITS):
        write_image(root / "images" / f"img{index}.png", W, H, seed=index)
        (cx0, cy0, cx1, cy1), (rx0, ry0, rx1, ry1) = (box for _, box in two_boxes(index))
        images.append(
            f'<image id="{index}" name="img{index}.png" width="{W}" height="{H}" subset="{split}">'
            f'<box label="car" occluded="0" xtl="{cx0}" ytl="{cy0}" xbr="{cx1}" ybr="{cy1}" z_order="0"/>'
            f'<polygon label="road" occluded="0" z_order="1"'
            f' points="{rx0},{ry0};{rx1},{ry0};{rx1},{ry1};{rx0},{ry1}"/>'
            "</image>"
        )
    (root / "annotations.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?><annotations><version>1.1</version><meta><task><labels>'
        "<label><name>car</name><color>#fa3253</color><type>any</type></label>"
        "<label><name>road</name><color>#33ddff</color><type>any</type></label>"
        f"</labels></task></meta>{''.join(images)}</annotations>"
    )
    return [root / "annotations.xml"], ["background", "car", "road"]


def labelstudio_training_export(root):
    media = root / "media" / "upload" / "1"
    tasks = []
    for index in range(10):
        write_image(media / f"{index:02d}ab-img{index}.png", W, H, seed=index)
        results = [
            {"id": f"r{index}-{cls}", "type": "polygonlabels", "original_width": W, "original_height": H,
             "value": {"points": [[x * 100 / W, y * 100 / H] for x, y in pairs],
                       "polygonlabels": [["car", "person"][cls]]}}
            for cls, box in two_boxes(index)
            for polygon in [box_polygon(box)]
            for pairs in [zip(polygon[::2], polygon[1::2], strict=True)]
        ]  # fmt: skip
        tasks.append({"id": index, "data": {"image": f"/data/upload/1/{index:02d}ab-img{index}.png"},
                      "annotations": [{"id": 100 + index, "result": results}]})  # fmt: skip
    (root / "export.json").write_text(json.dumps(tasks))
    return [root / "export.json", "--images", media], ["background", "car", "person"]


def cityscapes_training_export(root):
    for index, split in enumerate(TRAINING_SPLITS):
        prefix = f"city{index}_000000_{index:06d}"
        write_image(
            root / "leftImg8bit" / split / f"city{index}" / f"{prefix}_leftImg8bit.png", W, H, seed=index
        )
        gt = root / "gtFine" / split / f"city{index}"
        gt.mkdir(parents=True)
        Image.fromarray(box_labels(index, [26, 7, 8]), "L").save(
            gt / f"{prefix}_gtFine_labelIds.png"
        )  # car, road, sidewalk
    return [root], [name for name, _, _ in CITYSCAPES]


def ade20k_training_export(root):
    names = ["wall", "building", "sky", *[f"thing{index}" for index in range(4, 151)]]
    root.mkdir()
    (root / "objectInfo150.txt").write_text(
        "Idx\tRatio\tTrain\tVal\tName\n"
        + "".join(f"{index}\t0.01\t10\t1\t{name}\n" for index, name in enumerate(names, 1))
    )
    for index, split in enumerate(TRAINING_SPLITS):
        folder, stem = {
            "train": ("training", f"ADE_train_{index:08d}"),
            "val": ("validation", f"ADE_val_{index:08d}"),
        }[split]
        write_image(root / "images" / folder / f"{stem}.jpg", W, H, seed=index)
        (root / "annotations" / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(box_labels(index, [1, 3, 0]), "L").save(root / "annotations" / folder / f"{stem}.png")
    return [root], names


TRAINING_EXPORTS = {
    "coco": ("coco", coco_training_export),
    "labelme": ("labelme", labelme_training_export),
    "yolo": ("yolo", yolo_training_export),
    "cvat-mask": ("cvat", cvat_mask_training_export),
    "cvat-xml": ("cvat", cvat_xml_training_export),
    "labelstudio": ("labelstudio", labelstudio_training_export),
    "cityscapes": ("cityscapes", cityscapes_training_export),
    "ade20k": ("ade20k", ade20k_training_export),
}


@pytest.mark.slow
@pytest.mark.parametrize("export_kind", list(TRAINING_EXPORTS))
def test_every_imported_format_trains(tmp_path, export_kind):
    """#22: each import format's data set trains an epoch, and the model carries its classes and colours."""
    from fastseg.model.checkpoint import load_model

    command, build = TRAINING_EXPORTS[export_kind]
    source, names = build(tmp_path / "export")
    data, run = tmp_path / "data", tmp_path / "run"
    assert_imported(run_cli("import", command, *source, "--out", data, "--quiet"), data)
    masks, dataset = imported(data)
    assert dataset["names"] == names
    assert len(masks) == 10 and {split for split, _ in masks.values()} >= {"train", "val"}
    if export_kind not in ("coco", "labelme", "labelstudio"):  # the export's own splits are kept
        assert sorted(split for split, _ in masks.values()) == sorted(TRAINING_SPLITS)
    for stem, (_, mask) in masks.items():  # both shapes drawn, so the epoch learns real classes
        assert len(set(np.unique(mask).tolist()) - {VOID}) >= 2, stem
    trained = run_cli(
        "train", "--data", data, "--out", run, "--epochs", 1, "--size", 32,  # the default (fast) recipe
        "--batch-size", 2, "--no-pretrained", "--num-workers", 0, "--quiet",
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    loaded = load_model(run)
    assert loaded.classes == names
    assert [list(colour) for colour in loaded.colors] == dataset["colors"]


def test_the_writer_names_the_dataset_file_by_the_data_sets_own_constant():
    """importing/writer.py kept its own `DATASET_FILE = "dataset.yaml"` beside fastseg.data.factory's:
    two constants that could drift apart, and an import whose file `--data` no longer finds."""
    import ast
    import inspect

    import fastseg.data.factory as factory
    import fastseg.importing.writer as writer

    assert writer.DATASET_FILE is factory.DATASET_FILE
    assigned = [
        target.id
        for node in ast.walk(ast.parse(inspect.getsource(writer)))
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    ]
    assert "DATASET_FILE" not in assigned


def two_image_coco(folder, segmentation):
    """`folder/coco.json` over two 40x30 images, a.png and b.png: annotation 7 on a.png holds
    `segmentation`, annotation 8 on b.png a good triangle, so annotation 7 is the only problem."""
    for stem in "ab":
        write_image(folder / f"{stem}.png", 40, 30)
    annotations = [
        {"id": 7, "image_id": 1, "category_id": 1, "segmentation": segmentation, "iscrowd": 0},
        {"id": 8, "image_id": 2, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]], "iscrowd": 0},
    ]
    images = [{"id": number, "file_name": f"{stem}.png", "width": 40, "height": 30}
              for number, stem in enumerate("ab", start=1)]  # fmt: skip
    path = folder / "coco.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "cat"}]}))  # fmt: skip
    return path


@pytest.mark.parametrize("bad", [True, False, "3", 10**350], ids=["true", "false", "string", "huge"])
def test_a_coordinate_that_is_no_json_number_is_a_problem_naming_the_file(tmp_path, bad):
    """JSON `true` / `false` were read as 1 / 0 (bool is an int to Python) and a string "3" as 3
    (numpy parses it) in COCO polygons, LabelMe points and Label Studio points and rectangles; a
    number past float's range was an OverflowError traceback. Each is a problem line naming the file
    and the shape, as a word in place of a number was; nothing is created."""
    coco = two_image_coco(tmp_path / "coco", [[1, 1, bad, 1, 9, 9]])
    result = run_cli("import", "coco", coco, "--out", tmp_path / "d1", "--quiet", "--test", 0)
    assert_refused(
        result, tmp_path / "d1", "coco.json: annotation 7 polygon 0: polygon coordinates are not numbers"
    )

    labelme = tmp_path / "labelme"
    labelme_file(labelme, "b", [("car", "polygon", [[1, 1], [9, 1], [9, 9]])])
    labelme_file(labelme, "a", [("car", "polygon", [[1, 1], [bad, 1], [9, 9]]),
                                ("car", "rectangle", [[1, 1], [9, bad]])])  # fmt: skip
    result = run_cli("import", "labelme", labelme, "--out", tmp_path / "d2", "--quiet", "--test", 0)
    assert_refused(
        result,
        tmp_path / "d2",
        "a.json: shape 0 (car, polygon): polygon coordinates are not numbers",
        "a.json: shape 1 (car, rectangle): points must be [x, y] pairs of numbers",
    )

    studio = tmp_path / "ls"
    for stem in "ab":
        write_image(studio / f"{stem}.png", 40, 30)
    size = {"original_width": 40, "original_height": 30}
    results = [
        {**size, "type": "polygonlabels",
         "value": {"points": [[1, 1], [bad, 1], [9, 9]], "polygonlabels": ["car"]}},
        {**size, "type": "rectanglelabels",
         "value": {"x": 1, "y": bad, "width": 5, "height": 5, "rectanglelabels": ["car"]}},
        {**size, "type": "rectanglelabels",
         "value": {"x": 1, "y": 1, "width": 5, "height": 5, "rotation": bad, "rectanglelabels": ["car"]}},
    ]  # fmt: skip
    tasks = [
        {"id": 1, "data": {"image": "/data/upload/1/a.png"}, "annotations": [{"result": results}]},
        {"id": 2, "data": {"image": "/data/upload/1/b.png"}, "annotations": []},
    ]
    (studio / "export.json").write_text(json.dumps(tasks))
    result = run_cli(
        "import", "labelstudio", studio / "export.json", "--out", tmp_path / "d3", "--quiet", "--test", 0
    )
    assert_refused(
        result,
        tmp_path / "d3",
        "export.json: task 1 result 0 (car, polygon): points must be [x, y] pairs of numbers",
        "export.json: task 1 result 1 (car, rectangle): x, y, width and height must be numbers",
        "export.json: task 1 result 2 (car, rectangle): x, y, width and height must be numbers",
    )
    assert "Traceback" not in result.output


def test_a_coco_rle_count_past_floats_range_is_a_problem_not_a_traceback(tmp_path):
    """`counts: [1e350 as a whole number]` (JSON takes up to 400 digits) raised OverflowError in
    structured_files.finite_number: a traceback; it is a problem line naming the annotation."""
    export = two_image_coco(tmp_path / "coco", {"size": [30, 40], "counts": [10**350, 1200]})
    result = run_cli("import", "coco", export, "--out", tmp_path / "data", "--quiet", "--test", 0)
    assert_refused(
        result, tmp_path / "data", "coco.json: annotation 7: RLE counts must be a list of run lengths"
    )
    assert "Traceback" not in result.output
