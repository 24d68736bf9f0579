"""`fastseg import`: a labelling tool's export (or a benchmark's official tree) -> a `dataset.yaml`
data set that `train` reads. One module per format turns its files into a `Source` (classes and,
per image, the shapes to draw or the mask to map); `writer` checks it whole, draws the masks and
writes the data set atomically. Importing this package is cheap: the CLI's `--help` lists
`FORMATS` from here."""

from __future__ import annotations

# format name -> its module in this package (imported only when that format runs)
FORMATS: dict[str, str] = {
    "coco": "coco",
    "labelme": "labelme",
    "yolo": "yolo",
    "cvat": "cvat",
    "labelstudio": "labelstudio",
    "cityscapes": "cityscapes",
    "ade20k": "ade20k",
}
