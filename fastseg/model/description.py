"""What a model file says about its model besides the weights, checked field by field: the one
reading of `model.pth` (`fastseg.model.checkpoint`) and of an exported file's description
(`fastseg.model.exported`), so a crafted or hand-edited file of either kind is one
`CheckpointError` naming the file and the field.

No torch here: `fastseg predict` on an ONNX file reads its description through this module and
never imports torch (1.2-1.4 s of a run's start-up; issue #24).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastseg.classes import Classes, default_colors
from fastseg.errors import CheckpointError, clipped
from fastseg.imaging.geometry import RESIZE_MODES, SQUISH
from fastseg.model.config import MAX_SIZE, MIN_SIZE, MODEL_FILENAME, ModelConfig
from fastseg.paths import expanded
from fastseg.structured_files import file_kind

if TYPE_CHECKING:
    from fastseg.model.network import SegmentationModel

FORMAT = "fastseg-model/2"  # /2: encoder read before each pool, full-resolution skip


@dataclass
class LoadedModel:
    model: SegmentationModel | None  # None for an exported file (ONNX): its runtime holds the graph
    size: int
    resize: str  # how images are fitted into size² (fastseg.imaging.geometry): squish or letterbox
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    metadata: dict[str, Any]
    colors: list[tuple[int, int, int]] | None = None  # VOC's colour map when None (older files)
    ignore_index: int = 255  # the training data's void value, for the record
    export: dict[str, Any] | None = None  # an exported file's own metadata (fastseg.model.exported)

    @classmethod
    def from_fields(
        cls, model: SegmentationModel | None, fields: dict[str, Any], **extra: Any
    ) -> LoadedModel:
        """From `checked_fields`' values: one way for `model.pth` and an exported file alike."""
        names = ("size", "resize", "classes", "mean", "std", "metadata", "colors", "ignore_index")
        return cls(model=model, **{name: fields[name] for name in names}, **extra)

    @property
    def class_set(self) -> Classes:
        """Names, colours and void value together (`fastseg.classes`)."""
        return Classes.create(self.classes, self.colors, self.ignore_index)


def resolve_model_path(model: Path | str) -> Path:
    """Accept a run folder (its `model.pth`) or a model file."""
    path = expanded(model)  # `~nosuchuser/run` stays as written: "not found", not a traceback
    if path.is_dir():
        path = path / MODEL_FILENAME
    if not path.is_file():
        if path.exists():  # a FIFO or a device: opening it would block, or read forever
            kind = file_kind(path.stat().st_mode)
            raise CheckpointError(f"{path}: {kind}, not a regular file; a model must be a file on disk")
        raise CheckpointError(f"{path}: model file not found (pass a run folder or its model.pth)")
    return path


def _no_weight(value: Any) -> bool:  # noqa: ANN401 - anything a file holds
    """An exported file's description holds no weights: any value there is not one."""
    return False


MAX_MEAN, MIN_STD, MAX_STD = 10.0, 1e-4, 100.0  # normalisation of 0-1 images: ImageNet's is 0.4, 0.2
REQUIRED_FIELDS = ("state_dict", "model_config", "size", "classes", "mean", "std")


def checked_fields(path: Path, state: dict[str, Any], is_weight: Callable[[Any], bool] = _no_weight,
                   ) -> dict[str, Any]:  # fmt: skip
    """The fields of a model file's dict, each checked; the weights only for their type
    (`is_weight`: whether a value is a tensor, for `model.pth`; an exported file's description
    holds none)."""
    for name in REQUIRED_FIELDS:
        if name not in state:
            raise CheckpointError(f"{path}: field {name!r} is missing")
    weights, config = state["state_dict"], state["model_config"]
    size, classes = state["size"], state["classes"]
    named_tensors = isinstance(weights, dict) and all(
        isinstance(key, str) and is_weight(value) for key, value in weights.items()
    )
    _require(named_tensors, path, "state_dict", "must be a dict of named tensors", weights)
    _require(isinstance(config, dict), path, "model_config", "must be a dict", config)
    try:
        config = ModelConfig.from_dict(config)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
    _require(type(size) is int and MIN_SIZE <= size <= MAX_SIZE, path, "size",
             f"must be a whole number of pixels from {MIN_SIZE} to {MAX_SIZE}", size)  # fmt: skip
    resize = state.get("resize", SQUISH)  # files written before letterboxing existed squish
    if resize not in RESIZE_MODES:
        expected = " or ".join(RESIZE_MODES)
        raise CheckpointError(f"{path}: unknown resize mode {resize!r} (expected {expected})")
    count = config.num_classes
    wrong_length = isinstance(classes, list) and len(classes) != count
    names = isinstance(classes, list) and not wrong_length and all(isinstance(name, str) for name in classes)
    _require(names, path, "classes", f"must be a list of {count} names (one per class)",
             len(classes) if wrong_length else classes)  # fmt: skip
    # as dataset.yaml's names (fastseg.data.dataset_file): a file fastseg wrote is trusted no more
    unprintable = [name for name in classes if not name.strip() or not name.isprintable()]
    _require(not unprintable, path, "classes", "must be names without control characters (newlines, "
             "tabs), none empty", unprintable[:1])  # fmt: skip
    repeated = sorted({name for name in classes if classes.count(name) > 1})
    _require(not repeated, path, "classes", "must name each class once", repeated[:3])
    colors = state.get("colors", default_colors(count))  # files written before own data sets: VOC's
    rgb = isinstance(colors, list) and len(colors) == count and all(
        isinstance(colour, (list, tuple)) and len(colour) == 3
        and all(type(channel) is int and 0 <= channel <= 255 for channel in colour) for colour in colors
    )  # fmt: skip
    _require(rgb, path, "colors", f"must be {count} RGB triples of 0-255", colors)
    ignore_index = state.get("ignore_index", 255)
    _require(type(ignore_index) is int and 0 <= ignore_index <= 255, path, "ignore_index",
             "must be an integer 0-255", ignore_index)  # fmt: skip
    metadata = state.get("metadata", {})
    _require(isinstance(metadata, dict), path, "metadata", "must be a dict", metadata)
    mean, std = state["mean"], state["std"]
    _require(_three_finite(mean), path, "mean", "must be 3 finite numbers", mean)
    _require(_three_finite(std) and min(std) > 0, path, "std", "must be 3 positive finite numbers", std)
    # finite to Python is not enough: 1e300 is inf in the float32 input, 1e-300 divides by 0
    _require(all(-MAX_MEAN <= value <= MAX_MEAN for value in mean), path, "mean",
             f"must lie from {-MAX_MEAN:g} to {MAX_MEAN:g} (images are 0-1)", mean)  # fmt: skip
    _require(all(MIN_STD <= value <= MAX_STD for value in std), path, "std",
             f"must lie from {MIN_STD:g} to {MAX_STD:g}", std)  # fmt: skip
    return {"config": config, "size": size, "resize": resize, "classes": list(classes),
            "mean": tuple(map(float, mean)), "std": tuple(map(float, std)),
            "metadata": dict(metadata), "colors": [tuple(colour) for colour in colors],
            "ignore_index": ignore_index}  # fmt: skip


def _three_finite(values: Any) -> bool:
    """One finite number per RGB channel (a list or tuple of int / float, never bool)."""
    return (
        isinstance(values, (list, tuple))
        and len(values) == 3
        and all(type(value) in (int, float) and math.isfinite(value) for value in values)
    )


def _require(condition: bool, path: Path, name: str, problem: str, value: Any) -> None:
    """`CheckpointError` "PATH: field 'NAME' PROBLEM, got VALUE" unless `condition` holds."""
    if not condition:
        shown = clipped(repr(value), 60)  # a crafted value may be megabytes long
        raise CheckpointError(f"{path}: field {name!r} {problem}, got {shown}")
