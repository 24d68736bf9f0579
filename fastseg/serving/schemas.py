"""The JSON the API answers with, as Pydantic models (they are the OpenAPI schema at /docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    error: str = Field(description="What is wrong, in one line.")


class ClassInfo(BaseModel):
    index: int = Field(description="The class's value in the mask PNG.")
    name: str
    color: tuple[int, int, int] = Field(description="RGB, as in the mask PNG's palette.")


class ClassShare(ClassInfo):
    fraction: float = Field(
        description="Share of the image's pixels, rounded to 6 places as predictions.csv."
    )


class SegmentJSON(BaseModel):
    width: int
    height: int
    classes: list[ClassShare] = Field(description="Every class of the model, in index order.")
    mask_png_base64: str = Field(description="The palette PNG `fastseg predict` writes, base64.")


class CocoRLE(BaseModel):
    size: tuple[int, int] = Field(description="[height, width]")
    counts: str = Field(description="COCO's compressed RLE string (pycocotools.mask.decode reads it).")


class ClassRLE(ClassShare):
    rle: CocoRLE


class SegmentRLE(BaseModel):
    width: int
    height: int
    classes: list[ClassRLE] = Field(description="The classes present in the image (fraction > 0).")


class ModelInfo(BaseModel):
    classes: list[ClassInfo]
    void: int = Field(description="The training data's void value (never predicted).")
    input_size: int = Field(description="Side of the model's square input.")
    resize: str = Field(description="How an image is fitted into it: squish or letterbox.")
    runtime: str = Field(description="torch or onnxruntime.")
    precision: str = Field(description="fp32, bf16, fp16 (torch autocast) or int8 (an INT8 export).")
    device: str
    max_batch: int
    fastseg_version: str


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    ready: bool
    status: str


class LabelStudioTask(BaseModel):
    id: int | str | None = None
    data: dict[str, Any]


class LabelStudioRequest(BaseModel):
    """What Label Studio POSTs to an ML backend's /predict."""

    tasks: list[LabelStudioTask]
    label_config: str | None = None
    project: str | int | None = None
    params: dict[str, Any] | None = None
    model_config = {"extra": "allow"}


class LabelStudioResponse(BaseModel):
    results: list[dict[str, Any]]
    model_version: str
