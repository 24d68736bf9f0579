"""`GET /v1/model`: what is served (classes, colours, input size, runtime, precision)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from fastseg import __version__
from fastseg.serving.dependencies import Served, authorised
from fastseg.serving.engine import Engine
from fastseg.serving.schemas import ClassInfo, ModelInfo

router = APIRouter(prefix="/v1", tags=["model"], dependencies=[Depends(authorised)])


def precision_of(served: Engine) -> str:
    """torch: the autocast type in use; onnxruntime: the precision the export recorded."""
    segmenter = served.segmenter
    export = segmenter.loaded.export
    if export is not None:
        return str(export.get("precision", "fp32"))
    dtype = getattr(segmenter.runtime, "dtype", None)
    return {"torch.bfloat16": "bf16", "torch.float16": "fp16"}.get(str(dtype), "fp32")


def model_info(served: Engine) -> ModelInfo:
    """The served model's classes, input, runtime and limits, as `GET /v1/model` answers."""
    loaded = served.segmenter.loaded
    classes = loaded.class_set
    return ModelInfo(
        classes=[
            ClassInfo(index=index, name=name, color=colour)
            for index, (name, colour) in enumerate(zip(classes.names, classes.colors, strict=True))
        ],  # fmt: skip
        void=loaded.ignore_index,
        input_size=served.segmenter.size,
        resize=loaded.resize,
        runtime=served.segmenter.runtime.name,
        precision=precision_of(served),
        device=str(served.segmenter.device),
        max_batch=served.settings.max_batch,
        fastseg_version=__version__,
    )


@router.get("/model", response_model=ModelInfo)
def model(served: Served) -> ModelInfo:
    return model_info(served)
