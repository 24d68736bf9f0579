"""Class scores from an ONNX graph (numpy arrays) at the image's own size, and their argmax,
without torch: bilinear upsampling (half-pixel centres, as `F.interpolate(align_corners=False)`)
and the argmax run in onnxruntime, which the scores came from anyway.

Why not torch: importing it is 1.2-1.7 s, a third of `predict` over 50 images on INT8 (issue
#24). Why not numpy: its gathers took 21 ms a VOC-sized image against onnxruntime's 5 (and
torch's 4-11), on the thread that runs beside the model.

The graph (Resize, then ArgMax and a cast to uint8) is written here as protobuf bytes: the onnx
package, which could build it, takes 0.8 s to import and is needed only to export.
tests/test_onnx_without_torch.py reads these bytes back with onnx and compares the values with
torch's: onnxruntime computes each source coordinate in another order than torch, so scores
differ by up to about 2.5e-4 of the logits' spread (4e-4 at a spread of 3, 7e-3 at 30), and a
pixel whose two best classes are closer than that may take the other one (1 to 4 pixels of a
VOC-sized image on random scores).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from fastseg.errors import clipped
from fastseg.imaging.geometry import content_size
from fastseg.inference.segmented import labels_of, rows_per_band

_FLOAT, _UINT8, _INT64 = 1, 2, 7  # onnx TensorProto data types
_INT, _STRING = 2, 3  # onnx AttributeProto types


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value: int | str | bytes) -> bytes:
    """One protobuf field: a varint for an int, else length-delimited bytes (text as UTF-8)."""
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _attribute(name: str, value: int | str) -> bytes:
    if isinstance(value, int):
        return _field(1, name) + _field(20, _INT) + _field(3, value)
    return _field(1, name) + _field(20, _STRING) + _field(4, value)


def _node(op_type: str, inputs: list[str], outputs: list[str], **attributes: int | str) -> bytes:
    fields = b"".join(_field(1, name) for name in inputs) + b"".join(_field(2, name) for name in outputs)
    fields += _field(3, outputs[0]) + _field(4, op_type)
    return fields + b"".join(_field(5, _attribute(key, value)) for key, value in attributes.items())


def _value(name: str, element_type: int, dims: list[int | str]) -> bytes:
    """A graph input or output: its name, tensor type and shape (a number or a symbol per axis)."""
    axes = b"".join(_field(1, _field(1 if isinstance(dim, int) else 2, dim)) for dim in dims)
    shape = _field(2, axes)
    return _field(1, name) + _field(2, _field(1, _field(1, element_type) + shape))


def graph_bytes() -> bytes:
    """A ModelProto (IR 8, opset 17): `scores` `(1, C, h, w)` float32 and `sizes` `[1, C, H, W]`
    int64 -> `upsampled` `(1, C, H, W)` float32 and `labels` `(1, H, W)` uint8 (the first class
    on a tie, as torch's `max`)."""
    nodes = [
        _node(
            "Resize",
            ["scores", "", "", "sizes"],
            ["upsampled"],
            mode="linear",
            coordinate_transformation_mode="half_pixel",
        ),  # fmt: skip
        _node("ArgMax", ["upsampled"], ["indices"], axis=1, keepdims=0),
        _node("Cast", ["indices"], ["labels"], to=_UINT8),
    ]
    graph = b"".join(_field(1, node) for node in nodes) + _field(2, "fastseg_upsampling")
    graph += _field(11, _value("scores", _FLOAT, [1, "C", "h", "w"]))
    graph += _field(11, _value("sizes", _INT64, [4]))
    graph += _field(12, _value("upsampled", _FLOAT, [1, "C", "H", "W"]))
    graph += _field(12, _value("labels", _UINT8, [1, "H", "W"]))
    opset = _field(1, "") + _field(2, 17)
    return _field(1, 8) + _field(2, "fastseg") + _field(7, graph) + _field(8, opset)


ALLOCATION_FAILURE = "Failed to allocate memory"  # onnxruntime's words when its arena cannot grow
_session: Any = None
_lock = threading.Lock()


def _upsampling_session() -> Any:  # noqa: ANN401 - an onnxruntime InferenceSession
    """One session per process, made on first use; onnxruntime's `run` may be called from several
    threads at once. One thread of its own: it runs beside the model's forward pass, which
    already has the cores."""
    global _session
    with _lock:
        if _session is None:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.log_severity_level = 4  # failures are raised here, not printed too
            providers = ["CPUExecutionProvider"]
            _session = onnxruntime.InferenceSession(graph_bytes(), options, providers=providers)
        return _session


def _resized(scores: np.ndarray, height: int, width: int, outputs: list[str]) -> list[np.ndarray]:
    """`outputs` of the graph for `scores` `(C, h, w)` resized to `(C, height, width)`."""
    classes = scores.shape[0]
    sizes = np.array([1, classes, height, width], dtype=np.int64)
    feed = {"scores": np.ascontiguousarray(scores, dtype=np.float32)[None], "sizes": sizes}
    try:
        return [value[0] for value in _upsampling_session().run(outputs, feed)]
    except Exception as error:  # noqa: BLE001 - onnxruntime's own types (Fail, ...)
        # its arena giving up is a picture too big for the memory left, as torch's allocator's
        # RuntimeError is: raised as MemoryError, predict and serve fail that image alone
        text = str(error)
        if ALLOCATION_FAILURE not in text:
            raise
        raise MemoryError(f"onnxruntime: {clipped(text[text.index(ALLOCATION_FAILURE) :], 120)}") from None


def _content(logits: np.ndarray, height: int, width: int, resize: str) -> np.ndarray:
    content_height, content_width = content_size(height, width, logits.shape[-1], resize)
    return logits[:, :content_height, :content_width]


def upsampled_array_bands(
    logits: np.ndarray, height: int, width: int, resize: str
) -> Iterator[tuple[slice, np.ndarray]]:
    """One image's logits `(C, S, S)` at full size, a band of rows at a time: `(rows, (C, b,
    width))`, as `whole_image.upsampled_bands` gives torch's. An image that fits in one band is
    resized at once; a larger one band by band: the source rows a band reads resized along the
    width, then blended in pairs by the row weights (torch's rule, in float32)."""
    content = _content(logits, height, width, resize)
    rows = rows_per_band(content.shape[0], width)
    if rows >= height:
        yield slice(0, height), _resized(content, height, width, ["upsampled"])[0]
        return
    source_rows = content.shape[1]
    scale = np.float32(source_rows / height)
    for start in range(0, height, rows):
        stop = min(height, start + rows)
        target = np.arange(start, stop, dtype=np.float32)
        position = np.maximum((target + np.float32(0.5)) * scale - np.float32(0.5), np.float32(0))
        upper = np.minimum(position.astype(np.int64), source_rows - 1)
        lower = np.minimum(upper + 1, source_rows - 1)
        weight = (position - upper.astype(np.float32)).reshape(1, -1, 1)
        first, last = int(upper[0]), int(lower[-1]) + 1
        widened = _resized(content[:, first:last], last - first, width, ["upsampled"])[0]
        band = widened[:, upper - first] * (np.float32(1) - weight)
        band += widened[:, lower - first] * weight
        yield slice(start, stop), band


def array_labels(logits: np.ndarray, height: int, width: int, resize: str) -> np.ndarray:
    """Class map `(height, width)` uint8 of one fitted image's logits `(C, S, S)`: the upsampling
    and argmax in one call where the image fits in one band and the logits are finite, else the
    argmax of each band. onnxruntime's ArgMax passes over NaN where torch's `max` and numpy's
    `argmax` take it, so NaN scores (a broken export) are labelled as torch's path and `report`
    label them, whatever the image's size."""
    content = _content(logits, height, width, resize)
    if rows_per_band(content.shape[0], width) >= height and np.isfinite(content).all():
        return _resized(content, height, width, ["labels"])[0]
    return labels_of(upsampled_array_bands(logits, height, width, resize), height, width)
