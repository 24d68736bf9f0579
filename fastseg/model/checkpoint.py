"""`model.pth`: a plain dict of tensors and config, loadable with `torch.load(weights_only=True)`.

No pickled Learner: unpickling a file runs code, so fastseg never asks users to trust one.
Everything inference needs to rebuild the model rides in the same dict.
"""

from __future__ import annotations

import math
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fastseg.atomic import atomic_path
from fastseg.classes import Classes, default_colors
from fastseg.errors import CheckpointError, FastsegError
from fastseg.imaging.geometry import RESIZE_MODES, SQUISH
from fastseg.imaging.normalise import IMAGENET_MEAN, IMAGENET_STD
from fastseg.model.config import DEFAULT_ENCODER, MAX_SIZE, MIN_SIZE, MODEL_FILENAME, ModelConfig
from fastseg.model.network import SegmentationModel
from fastseg.structured_files import file_kind

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
        """From `_checked_fields`' values: one way for `model.pth` and an exported file alike."""
        names = ("size", "resize", "classes", "mean", "std", "metadata", "colors", "ignore_index")
        return cls(model=model, **{name: fields[name] for name in names}, **extra)

    @property
    def class_set(self) -> Classes:
        """Names, colours and void value together (`fastseg.classes`)."""
        return Classes.create(self.classes, self.colors, self.ignore_index)


def save_model(
    path: Path,
    model: SegmentationModel,
    model_config: ModelConfig,
    size: int,
    metadata: dict[str, Any] | None = None,
    resize: str = SQUISH,
    *,
    classes: Classes,
) -> Path:
    """Write the state dict and what rebuilds it; atomic, so a crash never leaves half a file.

    `classes` are the training data's (names, colours, void value): the file carries them so
    predict and report need no data set."""
    if len(classes) != model_config.num_classes:
        raise ValueError(f"{len(classes)} class names for a model of {model_config.num_classes} classes")
    state = {
        "format": FORMAT,
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        "model_config": model_config.to_dict(),
        "size": int(size),
        "resize": resize,
        "classes": list(classes.names),
        "colors": [list(colour) for colour in classes.colors],
        "ignore_index": int(classes.ignore_index),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "metadata": metadata or {},
    }
    with atomic_path(path, durable=True) as temporary:
        torch.save(state, temporary)
    return Path(path)


def load_weights_only(path: Path, kind: str) -> Any:
    """`torch.load(weights_only=True)`, or one line saying the file is not a `kind`.

    torch's own message for such files advises retrying with `weights_only=False`, which would run
    whatever code the pickle holds; that advice is not passed on to users. Bytes that are not a zip
    go to torch's legacy reader, whose unpickler raises whatever the garbage provokes (KeyError,
    IndexError, struct.error, ... found by feeding it random bytes), so any error reading the file
    means it is not one.
    """
    try:
        with warnings.catch_warnings():  # torch warns before failing on a raw pickle: one line is ours
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: not a readable {kind} (not a tensors-only torch file)") from None
    except (zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError) as error:
        lines = str(error).strip().splitlines()
        reason = lines[0] if lines else type(error).__name__
        raise CheckpointError(f"{path}: not a readable {kind} ({reason})") from None
    except Exception:  # noqa: BLE001 - see the docstring; their messages ("97") say nothing useful
        raise CheckpointError(f"{path}: not a readable {kind} (not a torch file)") from None


# Wrappers other tools put around a state dict: fastseg `model.pth`, fastai `learn.save`.
STATE_DICT_KEYS = ("state_dict", "model")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A dict of tensors from `path`, loaded with `weights_only=True` (never runs pickled code);
    encoder weights for training (`fastseg.model.pretrained`, `fastseg.model.timm_pretrained`)."""
    if not path.is_file():
        raise FastsegError(f"{path}: weights file not found")
    state = load_weights_only(path, "state dict")
    for key in STATE_DICT_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items())
    ):
        raise FastsegError(f"{path}: not a state dict of tensors")
    return state


def resolve_model_path(model: Path | str) -> Path:
    """Accept a run folder (its `model.pth`) or a model file."""
    path = Path(model).expanduser()
    if path.is_dir():
        path = path / MODEL_FILENAME
    if not path.is_file():
        if path.exists():  # a FIFO or a device: opening it would block, or read forever
            kind = file_kind(path.stat().st_mode)
            raise CheckpointError(f"{path}: {kind}, not a regular file; a model must be a file on disk")
        raise CheckpointError(f"{path}: model file not found (pass a run folder or its model.pth)")
    return path


def load_model(model: Path | str, device: torch.device | str = "cpu") -> LoadedModel:
    """Rebuild the model of a run folder or `model.pth`, in eval mode on `device`.

    Every field is checked before it is used, so a crafted or damaged file is one `CheckpointError`
    naming the file and the field, never a traceback from deep inside torch."""
    path = resolve_model_path(model)
    state = load_weights_only(path, "fastseg model")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a fastseg model file (expected format {FORMAT})")
    fields = _checked_fields(path, state)
    config = fields["config"]
    try:
        if config.encoder != DEFAULT_ENCODER:  # timm imported only for such a model
            from fastseg.model.timm_encoder import require_timm_model

            require_timm_model(config.encoder)
        # built on the CPU, its random initialisation overwritten below: 0.2-0.3 s, where building
        # it on the meta device took 1.2 s (each op through torch's Python device mode; issue #24)
        network = SegmentationModel(config)
    except FastsegError as error:  # an encoder this timm does not have
        raise CheckpointError(f"{path}: {error}") from None
    _require_matching_weights(path, network, state["state_dict"])
    weights = {name: tensor.float() if tensor.is_floating_point() else tensor  # as copying into fp32 did
               for name, tensor in state["state_dict"].items()}  # fmt: skip
    network.load_state_dict(weights, assign=True)
    network.to(device).eval()
    return LoadedModel.from_fields(network, fields)


MAX_MEAN, MIN_STD, MAX_STD = 10.0, 1e-4, 100.0  # normalisation of 0-1 images: ImageNet's is 0.4, 0.2
REQUIRED_FIELDS = ("state_dict", "model_config", "size", "classes", "mean", "std")


def _checked_fields(path: Path, state: dict[str, Any]) -> dict[str, Any]:
    """The fields of a model file's dict, each checked (the weights for their type only)."""
    for name in REQUIRED_FIELDS:
        if name not in state:
            raise CheckpointError(f"{path}: field {name!r} is missing")
    weights, config = state["state_dict"], state["model_config"]
    size, classes = state["size"], state["classes"]
    named_tensors = isinstance(weights, dict) and all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in weights.items()
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
        shown = repr(value)
        shown = shown if len(shown) <= 60 else f"{shown[:57]}..."  # a crafted value may be megabytes long
        raise CheckpointError(f"{path}: field {name!r} {problem}, got {shown}")


def _require_matching_weights(path: Path, network: SegmentationModel, weights: dict[str, Any]) -> None:
    """One line with counts and the first problem; every key in `details` (the CLI's `--verbose`),
    instead of torch's message, which lists them all on a few very long lines (4.6 KB seen)."""
    expected = network.state_dict()
    problems = {
        "missing": [key for key in expected if key not in weights],
        "unexpected": [key for key in weights if key not in expected],
        "wrong shape": [
            key for key in expected if key in weights and weights[key].shape != expected[key].shape
        ],
    }
    floating = [key for key in expected if key in weights and expected[key].is_floating_point()]
    problems["not floating point"] = [key for key in floating if not weights[key].is_floating_point()]
    finite = [key for key in floating if weights[key].is_floating_point()]
    # a diverged run's weights predict one class everywhere: refuse them at once
    problems["NaN or infinite values in"] = [key for key in finite if not bool(weights[key].isfinite().all())]
    if not any(problems.values()):
        return
    counts = ", ".join(f"{len(keys)} {kind}" for kind, keys in problems.items() if keys)
    kind, keys = next((kind, keys) for kind, keys in problems.items() if keys)
    listed = ("missing", "unexpected", "not floating point", "NaN or infinite values in")
    lines = [f"{kind}: {key}" for kind in listed for key in problems[kind]]
    lines += [f"wrong shape: {key} is {tuple(weights[key].shape)} in the file, {tuple(expected[key].shape)} "
              "in the model" for key in problems["wrong shape"]]  # fmt: skip
    message = f"{path}: weights do not match the saved model config: {counts}, e.g. {kind} {keys[0]}"
    raise CheckpointError(message, details="\n".join(lines))
