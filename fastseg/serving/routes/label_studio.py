"""Label Studio's ML backend protocol: `POST /predict` (tasks in, BrushLabels RLE out),
`POST /setup` and `GET /health`, so a Label Studio project can use fastseg for pre-annotation.

A task's image is read from a `data:` URL in the task, or fetched from Label Studio itself when
the server was started with `--label-studio-url` (a relative `/data/upload/...` path is joined
to it; an absolute URL must be on that same origin; redirects are not followed). Any other URL is
refused: a request never makes the server open a path or reach another host.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass

import numpy as np
from fastapi import APIRouter, Depends, Response
from pydantic import ValidationError

from fastseg import __version__
from fastseg.serving import encoding
from fastseg.serving.dependencies import Body, Ready, admitted, authorised
from fastseg.serving.engine import Engine, Result
from fastseg.serving.errors import ServeError, one_line
from fastseg.serving.schemas import LabelStudioRequest, LabelStudioResponse
from fastseg.serving.settings import MAX_CONFIG_TAGS, MAX_JSON_VALUES, MAX_TASKS, ServeSettings
from fastseg.structured_files import StructuredFileError, parse_json

router = APIRouter(tags=["label studio"])
FETCH_TIMEOUT = 20.0


@dataclass(frozen=True)
class Tags:
    """Where predictions go in the project's labeling config."""

    brush: str = "tag"  # <BrushLabels name=...>
    image: str = "image"  # <Image name=...>, its toName
    key: str = "image"  # the task data key of <Image value="$key">
    labels: tuple[str, ...] | None = None  # <Label value=...> children; None: every class


def parse_label_config(text: str | None) -> Tags:
    """The first BrushLabels tag and its Image. No DTD is accepted (no entity expansion)."""
    if not text:
        return Tags()
    if text.count("<") > MAX_CONFIG_TAGS:  # ElementTree holds the GIL: 27 MB of <a/> held it 3 s
        raise ServeError(413, f"label_config holds over {MAX_CONFIG_TAGS:,} tags; a labeling config "
                              "holds far fewer")  # fmt: skip
    if re.search(r"<!\s*(DOCTYPE|ENTITY)", text, re.IGNORECASE):
        raise ServeError(422, "label_config: a DOCTYPE or ENTITY is not accepted")
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as error:
        raise ServeError(422, f"label_config is not XML ({error})") from None
    brush = next((element for element in root.iter() if element.tag == "BrushLabels"), None)
    if brush is None or not brush.get("name") or not brush.get("toName"):
        raise ServeError(422, "label_config has no <BrushLabels name=... toName=...> tag")
    to_name = brush.get("toName")
    images = [element for element in root.iter("Image") if element.get("name") == to_name]
    image = images[0] if images else None
    value = (image.get("value") or "$image") if image is not None else "$image"
    labels = tuple(label.get("value") for label in brush.iter("Label") if label.get("value"))
    return Tags(brush.get("name"), to_name, value.lstrip("$"), labels)


def image_bytes(source: object, settings: ServeSettings) -> bytes:
    """A task's image: a `data:` URL, or a URL on `--label-studio-url`'s origin."""
    if not isinstance(source, str) or not source:
        raise ServeError(422, "the task has no image URL under its data key")
    if source.startswith("data:"):
        header, _, payload = source.partition(",")
        if ";base64" not in header:
            raise ServeError(422, "a data: URL image must be base64")
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ServeError(422, "the data: URL is not valid base64") from None
    if not settings.label_studio_url:
        raise ServeError(422, "the task's image is a URL: start fastseg serve with --label-studio-url "
                              "(and --label-studio-token) to fetch it from Label Studio")  # fmt: skip
    base = urllib.parse.urlsplit(settings.label_studio_url)
    url = urllib.parse.urljoin(settings.label_studio_url.rstrip("/") + "/", source)
    target = urllib.parse.urlsplit(url)
    if target.scheme not in ("http", "https") or (target.scheme, target.netloc) != (base.scheme, base.netloc):
        raise ServeError(422, "the task's image URL is not on --label-studio-url's host; not fetched")
    return fetch(url, settings)


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a redirect is an error: it could lead off Label Studio's host


def fetch(url: str, settings: ServeSettings) -> bytes:
    """GET `url` with Label Studio's token, at most `--max-upload-mb` bytes, no redirects."""
    request = urllib.request.Request(url)
    if settings.label_studio_token:
        request.add_header("Authorization", f"Token {settings.label_studio_token}")
    limit = settings.max_upload_bytes
    try:
        with urllib.request.build_opener(NoRedirects).open(request, timeout=FETCH_TIMEOUT) as response:
            data = response.read(limit + 1)
    except urllib.error.HTTPError as error:
        raise ServeError(422, f"fetching the task's image: Label Studio answered {error.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise ServeError(422, f"fetching the task's image failed ({one_line(str(reason))})") from None
    if len(data) > limit:
        raise ServeError(413, f"the task's image is over the limit of {limit} bytes (--max-upload-mb)")
    return data


def brush_results(result: Result, served: Engine, tags: Tags, task_id: object) -> list[dict]:
    """One BrushLabels region per class present whose name the labeling config lists."""
    names = served.segmenter.loaded.classes
    counts = np.bincount(result.labels.ravel(), minlength=256)
    height, width = result.size
    regions = []
    for index, name in enumerate(names):
        if not counts[index] or (tags.labels is not None and name not in tags.labels):
            continue
        regions.append({
            "id": f"{task_id}-{index}",
            "from_name": tags.brush,
            "to_name": tags.image,
            "type": "brushlabels",
            "original_width": width,
            "original_height": height,
            "image_rotation": 0,
            "value": {"format": "rle", "rle": encoding.brush_rle(result.labels == index),
                      "brushlabels": [name]},
        })  # fmt: skip
    return regions


def model_version(served: Engine) -> str:
    return f"fastseg-{__version__}-{served.segmenter.runtime.name}"


def read_request(raw: bytes) -> tuple[LabelStudioRequest, Tags]:
    """The tasks of a /predict body and where their predictions go. Run off the event loop
    (`Engine.parsed`): a body of up to --max-upload-mb of JSON and XML takes seconds to parse.
    A list of tasks over `MAX_TASKS` is refused before each task is validated (a million took
    seconds and a GB)."""
    values = raw.count(b"{") + raw.count(b"[") + raw.count(b",")  # in C, a few ms for 30 MB
    if values > MAX_JSON_VALUES:  # the parsers below hold the GIL: the parsing thread alone does not
        # keep the event loop free for seconds of them (28 MB of `[[],[],...]` stalled /healthz 3.6 s)
        raise ServeError(413, f"the body holds about {values:,} JSON values; a /predict of at most "
                              f"{MAX_TASKS} tasks holds far fewer")  # fmt: skip
    try:  # the one strict loader: no NaN, no repeated key, no 5,000-digit number (a ValueError)
        value = parse_json(raw.decode("utf-8"), "body", "request")
    except UnicodeDecodeError:
        raise ServeError(400, "the body is not JSON: not UTF-8") from None
    except StructuredFileError as error:
        reason = str(error).removeprefix("body: ")
        raise ServeError(400, f"the body is not JSON /predict takes ({reason})") from None
    tasks = value.get("tasks") if isinstance(value, dict) else None
    if isinstance(tasks, list) and len(tasks) > MAX_TASKS:
        raise ServeError(413, f"{len(tasks)} tasks in one request; at most {MAX_TASKS}")
    try:
        request = LabelStudioRequest.model_validate(value)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise ServeError(422, f"{where}: {first['msg']}") from None
    return request, parse_label_config(request.label_config)


@router.post("/predict", response_model=LabelStudioResponse,
             dependencies=[Depends(authorised), Depends(admitted)])  # fmt: skip
async def predict(raw: Body, served: Ready) -> Response:
    """Pre-annotations for Label Studio tasks, in its ML backend's response shape."""
    request, tags = await served.parsed(read_request, raw)
    if tags.labels is not None and not set(tags.labels) & set(served.segmenter.loaded.classes):
        raise ServeError(422, "the labeling config's BrushLabels name none of the model's classes "
                              f"({', '.join(served.segmenter.loaded.classes[:8])}...)")  # fmt: skip

    async def one(number: int, task: object) -> dict:
        label = task.id if task.id is not None else number
        try:
            data = await served.in_pool(image_bytes, task.data.get(tags.key), served.settings)
            result = await served.segment(data)
        except ServeError as error:
            raise ServeError(error.status, f"task {label}: {error.message}", error.headers) from None
        regions = await served.in_pool(brush_results, result, served, tags, label)
        return {"model_version": model_version(served), "result": regions}

    predictions, step = [], served.settings.max_batch  # a batch's worth at a time: they share forwards
    for start in range(0, len(request.tasks), step):
        group = enumerate(request.tasks[start : start + step], start)
        predictions += await asyncio.gather(*(one(number, task) for number, task in group))
    # validated and written in the pool: FastAPI does both on the event loop for an async route,
    # 2 s and 100 MB for 64 tasks of 2000x1500 masks (review); `response_model` stays for the docs
    body = await served.in_pool(_response_json, predictions, model_version(served))
    return Response(body, media_type="application/json")


def _response_json(predictions: list[dict], version: str) -> bytes:
    return LabelStudioResponse(results=predictions, model_version=version).model_dump_json().encode()


@router.post("/setup", dependencies=[Depends(authorised)])
def setup(served: Ready) -> dict:
    """Label Studio calls this when the backend is connected: the model version."""
    return {"model_version": model_version(served)}


@router.get("/health")
def health(served: Ready) -> dict:
    """Label Studio's probe: UP once the model is ready."""
    return {"status": "UP", "model_class": "fastseg", "model_version": model_version(served)}
