"""`model.pth` -> ONNX: dynamic batch, height and width, BatchNorm folded, and the model's
description (`fastseg.model.exported`) in the file's `metadata_props`, so `fastseg predict
--model model.onnx` needs nothing else.

torch 2.14's exporter (`dynamo=True`, the only one it develops) traces the network with
`torch.export`; it needs onnx and onnxscript, the `onnx` extra.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from fastseg.atomic import atomic_path
from fastseg.errors import FastsegError
from fastseg.inference.runtime import ONNX_EXTRA
from fastseg.model.batchnorm_folding import fold_batchnorm
from fastseg.model.checkpoint import LoadedModel
from fastseg.model.exported import METADATA_KEY, description_json

OPSET = 18  # onnxruntime >= 1.14 and OpenVINO >= 2023.0 run it
MIN_SIDE = 32  # five 2x2 poolings: a smaller input has no 1/32 feature map


def require_onnx() -> None:
    """One line naming the extra when onnx or onnxscript is missing (torch's own error is a
    traceback from inside its exporter)."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise FastsegError(f"exporting to ONNX needs {error.name}: {ONNX_EXTRA}") from None


def export_graph(loaded: LoadedModel) -> Any:
    """The folded network as an `onnx.ModelProto`: input `images` `(N, 3, H, W)` float32, output
    `logits` `(N, C, H, W)`, with N, H and W dynamic (H, W at least 32)."""
    require_onnx()
    model = fold_batchnorm(loaded.model.cpu().eval())
    side = max(MIN_SIDE * 2, loaded.size)  # an example the exporter traces with; any size runs after
    example = torch.zeros(2, 3, side, side)
    batch, height, width = (torch.export.Dim(name, min=minimum) for name, minimum in
                            (("batch", 1), ("height", MIN_SIDE), ("width", MIN_SIDE)))  # fmt: skip
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        program = torch.onnx.export(
            model, (example,), input_names=["images"], output_names=["logits"], opset_version=OPSET,
            dynamo=True, dynamic_shapes={"images": {0: batch, 2: height, 3: width}}, verbose=False,
            optimize=True,
        )  # fmt: skip
    return program.model_proto


def with_description(proto: Any, loaded: LoadedModel, **extra: Any) -> Any:
    """`proto` carrying the model's description under `metadata_props["fastseg"]` (JSON)."""
    import onnx

    kept = [entry for entry in proto.metadata_props if entry.key != METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    proto.metadata_props.append(
        onnx.StringStringEntryProto(key=METADATA_KEY, value=description_json(loaded, **extra))
    )
    proto.producer_name = "fastseg"
    return proto


def save_onnx(proto: Any, path: Path) -> Path:
    """Write `proto` whole or not at all (one file: the weights stay inside, under 2 GB)."""
    import onnx

    with atomic_path(path, durable=True) as temporary:
        onnx.save_model(proto, str(temporary))
    return Path(path)
