"""INT8 static quantisation of an exported graph, and its accuracy cost measured before it is kept.

onnxruntime's `quantize_static` in QDQ form, weights per output channel (int8), activations
per tensor (uint8) with ranges calibrated (min/max) on the run's own training images fitted
exactly as predict fits them. The fp32 and the INT8 graph are then scored on the run's
validation half by report's evaluation (`fastseg.inference.report.evaluate`, one confusion
matrix each), and the INT8 file is refused when it loses more than `max_drop` mIoU.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastseg.data.check import check_ids
from fastseg.data.dataset import SegmentationData
from fastseg.errors import FastsegError
from fastseg.export import CALIBRATION_IMAGES
from fastseg.inference.files import ImageFiles, loader
from fastseg.inference.report import evaluate
from fastseg.inference.runtime import ONNX_EXTRA, OnnxRuntime, onnx_session
from fastseg.inference.segmented import Progress, no_progress
from fastseg.inference.segmenter import Segmenter
from fastseg.model.checkpoint import LoadedModel
from fastseg.model.exported import MAX_MIOU_DROP
from fastseg.number_style import score


@dataclass
class Int8Check:
    """Validation mIoU of the fp32 and the INT8 graph, on the same images."""

    fp32_miou: float
    int8_miou: float
    validation_images: int
    calibration_images: int

    @property
    def drop(self) -> float:
        return self.fp32_miou - self.int8_miou

    def to_dict(self) -> dict[str, Any]:
        return {
            "validation_miou_fp32": round(self.fp32_miou, 6),
            "validation_miou_int8": round(self.int8_miou, 6),
            "validation_images": self.validation_images,
            "calibration_images": self.calibration_images,
        }


def spread(ids: list[str], count: int) -> list[str]:
    """`count` ids spread evenly over `ids` (not the first few: a list sorted by name may group
    similar pictures together)."""
    if count >= len(ids):
        return list(ids)
    return [ids[round(index * (len(ids) - 1) / max(count - 1, 1))] for index in range(count)]


class Calibration:
    """onnxruntime's `CalibrationDataReader`: batches of fitted, normalised training images."""

    def __init__(self, dataset: ImageFiles, input_name: str, batch_size: int) -> None:
        self.batches: Iterator[dict[str, Any]] = iter(loader(dataset, batch_size, 0))
        self.input_name = input_name

    def get_next(self) -> dict[str, Any] | None:
        for batch in self.batches:
            good = [row for row, error in enumerate(batch["error"]) if not error]
            if good:  # an unreadable image would calibrate on a blank input
                return {self.input_name: np.asarray(batch["image"])[good]}
        return None


def require_quantization() -> None:
    """One line naming the extra when onnxruntime's quantisation tools do not import: asked by the
    exporter before it traces the network (onnx and onnxscript alone export fp32), so a machine
    without onnxruntime is told at once, not after the trace."""
    try:
        from onnxruntime.quantization import quantize_static  # noqa: F401
        from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: F401
    except ImportError:
        raise FastsegError(f"--int8 needs onnxruntime's quantisation tools: {ONNX_EXTRA}") from None


def quantize(fp32: Path, int8: Path, calibration: ImageFiles, batch_size: int = 8) -> None:
    """Write the INT8 (QDQ) version of the ONNX graph `fp32` to `int8`."""
    require_quantization()
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = int8.with_name(f"{int8.stem}.prepared.onnx")
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)  # fuses, infers shapes
    input_name = onnx_session(prepared).get_inputs()[0].name
    reader = Calibration(calibration, input_name, batch_size)
    quantize_static(
        str(prepared), str(int8), reader, quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )  # fmt: skip
    prepared.unlink()


def validation_miou(
    loaded: LoadedModel, graph: Path, dataset: SegmentationData, ids: list[str], batch_size: int,
    num_workers: int, progress: Progress = no_progress,
) -> float:  # fmt: skip
    """mIoU of the ONNX graph `graph` on `ids` at full resolution, as `fastseg report` scores."""
    runtime = OnnxRuntime(onnx_session(graph))
    segmenter = Segmenter(loaded, runtime)
    total, _ = evaluate(segmenter, dataset, ids, None, batch_size, num_workers, progress)
    return total.scores().mean_iou


def quantize_checked(
    fp32: Path,
    loaded: LoadedModel,
    dataset: SegmentationData,
    train_ids: list[str],
    valid_ids: list[str],
    calibration_images: int = CALIBRATION_IMAGES,
    batch_size: int = 8,
    num_workers: int = 0,
    max_drop: float = MAX_MIOU_DROP,
    force: bool = False,
    progress: Progress = no_progress,
) -> tuple[Any, Int8Check]:
    """The INT8 graph of `fp32` (an `onnx.ModelProto`) and its validation check; a drop of more
    than `max_drop` mIoU is a `FastsegError` giving both figures unless `force`. Everything is
    made in a temporary folder, so a refusal leaves nothing behind."""
    import onnx

    if not valid_ids:
        raise FastsegError("--int8: the run's validation split lists no images to check INT8 against")
    if not train_ids:
        raise FastsegError("--int8: the run's training split lists no images to calibrate on")
    chosen = spread(train_ids, calibration_images)
    check_ids(dataset, sorted(set(chosen) | set(valid_ids)), action="export --int8")
    calibration = ImageFiles([dataset.image_path(image_id) for image_id in chosen], loaded.size,
                             loaded.resize, loaded.mean, loaded.std)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="fastseg-int8-") as scratch:
        int8 = Path(scratch) / "model.int8.onnx"
        with torch.inference_mode():
            quantize(fp32, int8, calibration, batch_size)
        scores = [validation_miou(loaded, graph, dataset, valid_ids, batch_size, num_workers, progress)
                  for graph in (fp32, int8)]  # fmt: skip
        check = Int8Check(*scores, validation_images=len(valid_ids), calibration_images=len(chosen))
        if math.isnan(check.drop):
            raise FastsegError(
                "--int8: the validation images hold no labelled pixel; mIoU cannot be compared"
            )
        if check.drop > max_drop and not force:
            raise FastsegError(
                f"INT8 loses {score(check.drop)} mIoU on the {len(valid_ids)} validation images "
                f"(fp32 {score(check.fp32_miou)}, INT8 {score(check.int8_miou)}), more than "
                f"{score(max_drop)}; nothing written (--accept-int8-loss writes it anyway)"
            )
        return onnx.load(str(int8)), check
