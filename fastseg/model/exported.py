"""What an exported model file (`fastseg export`: ONNX) carries beside its graph: everything
`fastseg predict` needs that `model.pth` holds, as one JSON text under one metadata key.

The same fields as `model.pth` (classes, colours, void value, input size, resize mode, mean/std,
model config, the run's metadata) and the same checks on reading (`fastseg.model.checkpoint`), so
a file from outside, or one whose JSON was edited by hand, is one `CheckpointError` naming the
file and the field. No onnx or onnxruntime import here: the runtime hands over the text.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any, BinaryIO

from fastseg.errors import CheckpointError, clipped, first_line
from fastseg.model.description import FORMAT, LoadedModel, checked_fields
from fastseg.structured_files import StructuredFileError, parse_json

EXPORT_FORMAT = "fastseg-export/1"
METADATA_KEY = "fastseg"  # the ONNX `metadata_props` entry holding the JSON
# One mIoU point: the most an INT8 export may lose on validation, both for `fastseg export --int8`
# (refused past it without --accept-int8-loss) and for `predict --runtime auto` reading the check
MAX_MIOU_DROP = 0.01
# What an export records so that `predict --runtime auto` knows, without torch, that a run's INT8
# file is that run's model.pth's export, its description as written (issue #24): the SHA-256 of the
# model.pth bytes it was made from, and of the description's fields (an edit after export, e.g.
# renamed classes, breaks it; `auto` then compares the fields with model.pth's, as before)
SOURCE_DIGEST = "source_sha256"
DESCRIPTION_DIGEST = "description_sha256"
DESCRIBED = ("model_config", "size", "resize", "classes", "colors", "ignore_index", "mean", "std", "metadata")


def file_sha256(source: Path | BinaryIO) -> str:
    """The SHA-256 of a file's bytes, hex, from its path or an open file (read from where it is):
    70 ms for a 75 MiB `model.pth`, where reading its fields with torch costs importing torch
    (1.2-1.7 s). Not `hashlib.file_digest`: Python 3.11+, and 3.10 is supported."""
    digest = hashlib.sha256()
    with Path(source).open("rb") if isinstance(source, (str, Path)) else nullcontext(source) as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def description_sha256(values: dict[str, Any]) -> str:
    """The SHA-256 of the `DESCRIBED` fields of an export's description (its JSON values), in one
    canonical JSON text."""
    described = {name: values.get(name) for name in DESCRIBED}
    text = json.dumps(described, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def description_json(loaded: LoadedModel, **extra: Any) -> str:
    """The JSON text stored in an exported file: `model.pth`'s fields without the weights, plus
    `extra` (the graph's precision, INT8's calibration and validation figures)."""
    values = {
        "format": EXPORT_FORMAT,
        "source_format": FORMAT,
        "model_config": loaded.model.config.to_dict() if loaded.model else loaded.export["model_config"],
        "size": loaded.size,
        "resize": loaded.resize,
        "classes": list(loaded.classes),
        "colors": [list(colour) for colour in loaded.class_set.colors],
        "ignore_index": loaded.ignore_index,
        "mean": list(loaded.mean),
        "std": list(loaded.std),
        "metadata": loaded.metadata,
        **extra,
    }
    try:  # what the strict reader (`described_model`) would refuse is refused here, at export
        text = json.dumps(values, allow_nan=False)
        read_back = parse_json(text, "the model's metadata", "model description")
    except (TypeError, ValueError, RecursionError, StructuredFileError) as error:
        reason = clipped(first_line(error), 160)
        raise CheckpointError(f"its metadata holds a value an exported file cannot carry ({reason}); "
                              "only JSON numbers, text, lists and mappings export") from None  # fmt: skip
    values[DESCRIPTION_DIGEST] = description_sha256(read_back)  # the values as predict will read them
    return json.dumps(values, allow_nan=False)


def described_model(path: Path, text: str | None) -> LoadedModel:
    """A `LoadedModel` without a torch network (`model=None`) from an exported file's JSON text
    (None: the file has none, so it was not made by `fastseg export`)."""
    if text is None:
        raise CheckpointError(f"{path}: not a fastseg model (no {METADATA_KEY!r} metadata; make one with "
                              "`fastseg export`)")  # fmt: skip
    try:  # the one strict JSON reader of every file a user or tool can edit: no NaN, no 1e999
        values = parse_json(text, f"{path}: its {METADATA_KEY!r} metadata", "model description")
    except StructuredFileError as error:
        raise CheckpointError(str(error)) from None
    if not isinstance(values, dict) or values.get("format") != EXPORT_FORMAT:
        found = values.get("format") if isinstance(values, dict) else type(values).__name__
        raise CheckpointError(f"{path}: not a fastseg export of this version (format {found!r}, "
                              f"expected {EXPORT_FORMAT})")  # fmt: skip
    fields = checked_fields(path, {**values, "state_dict": {}})  # the checks of model.pth, no weights
    return LoadedModel.from_fields(None, fields, export=values)
