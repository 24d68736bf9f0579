"""`POST /v1/segment`: one image in, predict's mask out (PNG, JSON, COCO RLE, or the overlay)."""

from __future__ import annotations

import base64
from enum import Enum
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response

from fastseg.errors import OptionError
from fastseg.inference.image_outputs import class_fractions
from fastseg.inference.tiling import make_tiling
from fastseg.serving import encoding
from fastseg.serving.dependencies import Ready, Upload, admitted, authorised, upload
from fastseg.serving.engine import Engine, Result
from fastseg.serving.errors import ServeError
from fastseg.serving.schemas import ErrorBody, SegmentJSON, SegmentRLE
from fastseg.serving.settings import MAX_OVERLAP, MAX_TILE

router = APIRouter(prefix="/v1", tags=["segment"], dependencies=[Depends(authorised)])

ERRORS = {status: {"model": ErrorBody} for status in (400, 401, 413, 415, 422, 503, 507)}
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                },  # fmt: skip
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


class Format(str, Enum):
    png = "png"
    json = "json"
    rle = "rle"


@router.post(
    "/segment",
    responses={
        200: {
            "content": {"image/png": {}, "image/jpeg": {}, "application/json": {}},
            "description": "The mask PNG (default), JSON, RLE, or the overlay JPEG.",
        },
        **ERRORS,
    },  # fmt: skip
    openapi_extra=UPLOAD_BODY,
    dependencies=[Depends(admitted)],
)
async def segment(
    image: Annotated[Upload, Depends(upload)],
    served: Ready,
    format: Annotated[
        Format, Query(description="png: predict's palette PNG; json; rle (COCO).")
    ] = Format.png,
    overlay: Annotated[bool, Query(description="The image blended with its mask (JPEG).")] = False,
    tta: Annotated[bool | None, Query(description="Average with the flipped prediction.")] = None,
    tile: Annotated[int, Query(ge=0, le=MAX_TILE, description="Sliding window side (0: fit whole).")] = 0,
    overlap: Annotated[
        float | None, Query(description=f"Tile overlap, as predict --overlap (at most {MAX_OVERLAP}).")
    ] = None,
) -> Response:
    """Segment one image: multipart field `file`, or the image itself as the body."""
    if overlay and format is not Format.png:
        raise ServeError(422, "overlay=1 answers a JPEG; leave format out")
    # serve's own limit on the overlap before make_tiling's (predict's, larger), which would name it
    if tile and overlap is not None and MAX_OVERLAP < overlap < 1:
        raise ServeError(422, f"overlap {overlap}: at most {MAX_OVERLAP:g} here (each pixel is "
                              f"computed up to (1 / (1 - overlap))² times)")  # fmt: skip
    try:
        tiling = make_tiling(tile, overlap)
    except OptionError as error:
        raise ServeError(422, str(error).replace("--", "")) from None
    result = await served.segment(image.data, tta, tiling, keep_original=overlay)
    classes = served.segmenter.loaded.class_set
    if overlay:
        picture = await served.in_pool(encoding.overlay_jpeg, result.original, result.labels, classes)
        return Response(picture, media_type="image/jpeg")
    if format is Format.png:
        return Response(
            await served.in_pool(encoding.mask_png, result.labels, classes), media_type="image/png"
        )
    build = as_json if format is Format.json else as_rle
    return JSONResponse(await served.in_pool(build, served, result))


def shares(served: Engine, result: Result) -> list[dict]:
    classes = served.segmenter.loaded.class_set
    fractions = class_fractions(result.labels, len(classes))
    rows = zip(classes.names, classes.colors, fractions, strict=True)
    return [{"index": index, "name": name, "color": list(colour), "fraction": fraction}
            for index, (name, colour, fraction) in enumerate(rows)]  # fmt: skip


def as_json(served: Engine, result: Result) -> dict:
    png = encoding.mask_png(result.labels, served.segmenter.loaded.class_set)
    height, width = result.size
    body = {"width": width, "height": height, "classes": shares(served, result),
            "mask_png_base64": base64.b64encode(png).decode("ascii")}  # fmt: skip
    return SegmentJSON.model_validate(body).model_dump(mode="json")


def as_rle(served: Engine, result: Result) -> dict:
    height, width = result.size
    counts = np.bincount(result.labels.ravel(), minlength=256)  # present: any pixel, however few
    present = [dict(row, rle=encoding.coco_rle(result.labels, row["index"]))
               for row in shares(served, result) if counts[row["index"]]]  # fmt: skip
    return SegmentRLE.model_validate({"width": width, "height": height, "classes": present}).model_dump(
        mode="json"
    )
