"""`model.pth`: a plain dict of tensors and config, loadable with `torch.load(weights_only=True)`.

No pickled Learner: unpickling a file runs code, so fastseg never asks users to trust one.
Everything inference needs to rebuild the model rides in the same dict.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fastseg.atomic import atomic_path
from fastseg.data.voc import VOC_CLASSES
from fastseg.errors import CheckpointError
from fastseg.imaging.geometry import RESIZE_MODES, SQUISH
from fastseg.imaging.normalise import IMAGENET_MEAN, IMAGENET_STD
from fastseg.model.config import ModelConfig
from fastseg.model.network import SegmentationModel
from fastseg.runs.folder import MODEL_FILENAME

FORMAT = "fastseg-model/2"  # /2: encoder read before each pool, full-resolution skip


@dataclass
class LoadedModel:
    model: SegmentationModel
    size: int
    resize: str  # how images are fitted into size² (fastseg.imaging.geometry): squish or letterbox
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    metadata: dict[str, Any]


def save_model(
    path: Path,
    model: SegmentationModel,
    model_config: ModelConfig,
    size: int,
    metadata: dict[str, Any] | None = None,
    resize: str = SQUISH,
) -> Path:
    """Write the state dict and what rebuilds it; atomic, so a crash never leaves half a file."""
    state = {
        "format": FORMAT,
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        "model_config": model_config.to_dict(),
        "size": int(size),
        "resize": resize,
        "classes": list(VOC_CLASSES[: model_config.num_classes]),
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
    whatever code the pickle holds; that advice is not passed on to users.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: not a readable {kind} (not a tensors-only torch file)") from None
    except (zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError) as error:
        lines = str(error).strip().splitlines()
        reason = lines[0] if lines else type(error).__name__
        raise CheckpointError(f"{path}: not a readable {kind} ({reason})") from None


def resolve_model_path(model: Path | str) -> Path:
    """Accept a run folder (its `model.pth`) or a model file."""
    path = Path(model).expanduser()
    if path.is_dir():
        path = path / MODEL_FILENAME
    if not path.is_file():
        raise CheckpointError(f"{path}: model file not found (pass a run folder or its model.pth)")
    return path


def load_model(model: Path | str, device: torch.device | str = "cpu") -> LoadedModel:
    """Rebuild the model of a run folder or `model.pth`, in eval mode on `device`."""
    path = resolve_model_path(model)
    state = load_weights_only(path, "fastseg model")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a fastseg model file (expected format {FORMAT})")
    resize = state.get("resize", SQUISH)  # files written before letterboxing existed squish
    if resize not in RESIZE_MODES:
        expected = " or ".join(RESIZE_MODES)
        raise CheckpointError(f"{path}: unknown resize mode {resize!r} (expected {expected})")
    config = ModelConfig.from_dict(state["model_config"])
    network = SegmentationModel(config)
    try:
        network.load_state_dict(state["state_dict"])
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not match the saved model config ({error})") from None
    network.to(device).eval()
    return LoadedModel(
        model=network,
        size=int(state["size"]),
        resize=resize,
        classes=list(state["classes"]),
        mean=tuple(state["mean"]),
        std=tuple(state["std"]),
        metadata=dict(state.get("metadata", {})),
    )
