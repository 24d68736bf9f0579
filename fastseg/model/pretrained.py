"""Encoder weights: torchvision's ImageNet `vgg16_bn` through its normal cache, or a local file.

A cached file is read by fastseg's own weights-only loader (torch.hub's default unpickles, and
its errors run to many lines); only a missing file is downloaded, by torchvision, hash-checked and
weights-only too. A machine with neither network nor cache gets one line saying what to do instead.
"""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import torch
from torchvision.models import VGG16_BN_Weights

from fastseg.errors import FastsegError
from fastseg.model.checkpoint import read_state_dict
from fastseg.model.config import DEFAULT_ENCODER
from fastseg.model.encoder import VGGEncoder
from fastseg.model.network import SegmentationModel

IMAGENET_WEIGHTS = VGG16_BN_Weights.IMAGENET1K_V1


def cached_weights_path(weights: VGG16_BN_Weights = IMAGENET_WEIGHTS) -> Path:
    """Where torchvision keeps the file: `torch.hub.get_dir()/checkpoints/<name from the URL>`,
    i.e. `$TORCH_HOME/hub/checkpoints/vgg16_bn-6c64b313.pth` (default `~/.cache/torch`)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def imagenet_state_dict(weights: VGG16_BN_Weights = IMAGENET_WEIGHTS) -> dict[str, torch.Tensor]:
    """torchvision's state dict: read from the cache if there, else downloaded into it (hash-checked)."""
    path = cached_weights_path(weights)
    if path.is_file():
        return read_state_dict(path)
    try:
        return weights.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except (URLError, OSError, RuntimeError) as error:  # offline, refused, or a bad hash
        raise FastsegError(
            f"cannot download the ImageNet vgg16_bn weights ({_first_line(error)}) and they are not "
            f"cached at {path}: copy {path.name} there, or train with --no-pretrained or "
            "--encoder-weights FILE"
        ) from None


def encoder_state(state: dict[str, torch.Tensor], encoder: VGGEncoder) -> dict[str, torch.Tensor]:
    """Rename a state dict to `encoder`'s keys (`stages.<s>.<i>.<name>`).

    Accepted: torchvision `vgg16_bn` (`features.<i>.*`; the classifier is dropped), its `features`
    alone (`<i>.*`), a fastseg model (`encoder.*`) or a fastseg encoder (`stages.*`). Keys that
    fit none of these are kept as they are, for `load_encoder_weights` to report.
    """
    for prefix in ("encoder.", "features."):  # a fastseg model, or torchvision without its classifier
        if any(key.startswith(prefix) for key in state):
            state = {
                key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)
            }
            break
    stage_of = {name: s for s, stage in enumerate(encoder.stages) for name, _ in stage.named_children()}
    renamed = {}
    for key, value in state.items():
        layer = key.split(".", 1)[0]
        renamed[f"stages.{stage_of[layer]}.{key}" if layer in stage_of else key] = value  # else: reported
    return renamed


def load_encoder_weights(
    model: SegmentationModel, pretrained: bool = True, weights_file: Path | str | None = None
) -> str:
    """Initialise `model.encoder` in place; returns where the weights came from, for the run log.

    `weights_file` wins over `pretrained`; with neither the random initialisation stays. BatchNorm
    `num_batches_tracked` counters may be absent (torchvision's 2018 file predates them). A timm
    encoder's weights come from timm (`fastseg.model.timm_pretrained`).
    """
    if model.config.encoder != DEFAULT_ENCODER:
        from fastseg.model.timm_pretrained import load_timm_encoder_weights

        return load_timm_encoder_weights(model, pretrained, weights_file)
    if weights_file is not None:
        source, state = str(weights_file), read_state_dict(Path(weights_file))
    elif pretrained:
        source, state = f"torchvision {IMAGENET_WEIGHTS}", imagenet_state_dict()
    else:
        return "random initialisation"
    renamed = encoder_state(state, model.encoder)
    expected = model.encoder.state_dict()
    missing = [key for key in expected if key not in renamed and not key.endswith("num_batches_tracked")]
    unexpected = [key for key in renamed if key not in expected]
    misshapen = [key for key in renamed if key in expected and renamed[key].shape != expected[key].shape]
    problems = [
        f"{what}: {len(keys)}, e.g. {keys[0]}"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen))
        if keys
    ]
    if problems:
        raise FastsegError(f"{source}: not vgg16_bn encoder weights ({'; '.join(problems)})")
    model.encoder.load_state_dict(renamed, strict=False)
    return source


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
