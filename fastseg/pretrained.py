"""Encoder weights: torchvision's ImageNet `vgg16_bn` through its normal cache, or a local file.

The cache is looked at first, so a machine that has the file never touches the network, and a
machine with neither network nor cache gets one line saying what to do instead.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from urllib.error import URLError

import torch
from torchvision.models import VGG16_BN_Weights

from fastseg.errors import FastsegError
from fastseg.model import VGG16_BN_STAGE_ENDS, SegmentationModel

IMAGENET_WEIGHTS = VGG16_BN_Weights.IMAGENET1K_V1


def cached_weights_path(weights: VGG16_BN_Weights = IMAGENET_WEIGHTS) -> Path:
    """Where torchvision keeps the file: `$TORCH_HOME/hub/checkpoints/<name>` by default."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def fetch_imagenet_state_dict(weights: VGG16_BN_Weights = IMAGENET_WEIGHTS) -> dict[str, torch.Tensor]:
    """torchvision's state dict: from the cache if present, else downloaded into it (hash-checked)."""
    path = cached_weights_path(weights)
    if path.is_file():
        return read_state_dict(path)
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except (URLError, OSError, RuntimeError) as error:
        raise FastsegError(
            f"cannot download ImageNet weights ({type(error).__name__}) and {path} is not cached: "
            "train with --no-pretrained, or --encoder-weights FILE"
        ) from None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise FastsegError(f"{path}: not a readable state dict ({first_line})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FastsegError(f"{path}: not a state dict of tensors")
    return state


def encoder_state_from_vgg(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map `features.<i>.*` (torchvision vgg16_bn) or `encoder.*` (a fastseg model) to encoder keys."""
    if any(key.startswith("encoder.") for key in state):
        return {
            key.removeprefix("encoder."): value for key, value in state.items() if key.startswith("encoder.")
        }
    if any(key.startswith("stages.") for key in state):
        return dict(state)
    mapped = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] != "features" or len(parts) < 3:
            continue  # the classifier is not part of the encoder
        index = int(parts[1])
        stage = next(s for s, end in enumerate(VGG16_BN_STAGE_ENDS) if index < end)
        mapped[f"stages.{stage}.{index}.{'.'.join(parts[2:])}"] = value
    return mapped


def load_encoder_weights(
    model: SegmentationModel, pretrained: bool = True, weights_file: Path | str | None = None
) -> str:
    """Initialise `model.encoder`; returns where the weights came from (for the run's log)."""
    if weights_file is not None:
        source, state = str(weights_file), read_state_dict(Path(weights_file))
    elif pretrained:
        source, state = "torchvision ImageNet vgg16_bn", fetch_imagenet_state_dict()
    else:
        return "random initialisation"
    encoder_state = encoder_state_from_vgg(state)
    try:
        model.encoder.load_state_dict(encoder_state, strict=True)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0]
        raise FastsegError(f"{source}: weights do not fit the vgg16_bn encoder ({first_line})") from None
    return source
