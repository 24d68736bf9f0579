"""`model.pth`: a plain dict of tensors and config, loadable with `torch.load(weights_only=True)`.

No pickled Learner: unpickling a file runs code, so fastseg never asks users to trust one.
Everything inference needs to rebuild the model rides in the same dict.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import torch

from fastseg.atomic import atomic_path
from fastseg.classes import Classes
from fastseg.errors import CheckpointError, FastsegError, first_line
from fastseg.imaging.geometry import SQUISH
from fastseg.imaging.normalise import IMAGENET_MEAN, IMAGENET_STD
from fastseg.model.config import DEFAULT_ENCODER, ModelConfig
from fastseg.model.description import FORMAT, LoadedModel, checked_fields, resolve_model_path
from fastseg.model.network import SegmentationModel

# FORMAT, LoadedModel and resolve_model_path live in fastseg.model.description (no torch there)
__all__ = ["FORMAT", "LoadedModel", "load_model", "resolve_model_path", "save_model"]


def _checked_fields(path: Path, state: dict[str, Any]) -> dict[str, Any]:
    """`model.pth`'s fields, each checked (`fastseg.model.description.checked_fields`), its
    weights a dict of named tensors."""
    return checked_fields(path, state, is_weight=lambda value: isinstance(value, torch.Tensor))


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


def load_weights_only(path: Path, kind: str, opened: BinaryIO | None = None) -> Any:
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
            return torch.load(opened or path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: not a readable {kind} (not a tensors-only torch file)") from None
    except (zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError) as error:
        reason = first_line(error)
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


def load_model(
    model: Path | str, device: torch.device | str = "cpu", opened: BinaryIO | None = None
) -> LoadedModel:
    """Rebuild the model of a run folder or `model.pth`, in eval mode on `device`; from `opened`,
    the file already open, where given (export hashes the very bytes it loads).

    Every field is checked before it is used, so a crafted or damaged file is one `CheckpointError`
    naming the file and the field, never a traceback from deep inside torch."""
    path = resolve_model_path(model)
    state = load_weights_only(path, "fastseg model", opened)
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
