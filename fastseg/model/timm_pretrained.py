"""Trained weights for a timm encoder: timm's own (downloaded through its Hugging Face cache when
online), or a local file, mirroring `fastseg.model.pretrained` for VGG16-BN.

Both go through timm's pretrained loading (`pretrained=True`, a file as its `state_dict` override),
so its per-model key conversions apply (e.g. convnext's original checkpoints) and a classifier
head in the file is dropped. A local file is read by fastseg's weights-only reader first (or
safetensors), so it never runs pickled code, and any problem is one line.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fastseg.errors import FastsegError
from fastseg.model.checkpoint import read_state_dict
from fastseg.model.timm_encoder import import_timm


def read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a `.safetensors` file or a torch file (weights only)."""
    if path.suffix != ".safetensors":
        return read_state_dict(path)
    if not path.is_file():
        raise FastsegError(f"{path}: weights file not found")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError) as error:
        raise FastsegError(f"{path}: not a readable safetensors file ({_first_line(error)})") from None


def timm_encoder_weights(
    name: str, pretrained: bool, weights_file: Path | str | None
) -> tuple[str, nn.Module | None]:
    """timm's features model `name` holding the trained weights, and where they came from; None
    when neither `weights_file` nor `pretrained` asks for any (the random initialisation stays)."""
    from fastseg.model.timm_encoder import require_timm_model

    require_timm_model(name)
    if weights_file is not None:
        path = Path(weights_file)
        state = read_weights_file(path)
        _require_weights_of(name, state, path)
        return str(path), _features(name, pretrained_cfg_overlay={"state_dict": state})
    if not pretrained:
        return "random initialisation", None
    try:
        return f"timm {name} pretrained weights", _features(name)
    except Exception as error:  # noqa: BLE001 - offline, no such weights, hub or HTTP errors: one line each
        raise FastsegError(
            f"cannot get timm's pretrained {name} weights ({_first_sentence(error)}): train with "
            f"--encoder-weights FILE (a {name} state dict, .pth or .safetensors) or --no-pretrained"
        ) from None


def load_timm_encoder_weights(model: nn.Module, pretrained: bool, weights_file: Path | str | None) -> str:
    """Initialise `model.encoder` (a `TimmEncoder`) in place; returns where the weights came from."""
    source, trained = timm_encoder_weights(model.config.encoder, pretrained, weights_file)
    if trained is not None:
        model.encoder.model.load_state_dict(trained.state_dict())
    return source


def _features(name: str, **options: object) -> nn.Module:
    timm = import_timm()

    return timm.create_model(name, features_only=True, pretrained=True, **options)


def _require_weights_of(name: str, state: dict[str, torch.Tensor], path: Path) -> None:
    """Every key of timm's `name` (its classifier aside) with its shape, and no other: timm loads a
    features model's weights loosely (unknown keys are a log warning), so resnet34's file would
    half-initialise a resnet18 without a word. Checked on a `meta` model: shapes, no memory."""
    timm = import_timm()

    with torch.device("meta"):
        reference = timm.create_model(name, pretrained=False)
    classifier = reference.pretrained_cfg.get("classifier") or ()
    heads = tuple(f"{head}." for head in ([classifier] if isinstance(classifier, str) else classifier))
    expected = {key: value.shape for key, value in reference.state_dict().items()}
    problems = {
        "missing": [key for key in expected if key not in state and not key.startswith(heads)
                    and not key.endswith("num_batches_tracked")],
        "unexpected": [key for key in state if key not in expected],
        "wrong shape": [key for key in state if key in expected and state[key].shape != expected[key]
                        and not key.startswith(heads)],
    }  # fmt: skip
    if any(problems.values()):
        counts = "; ".join(f"{kind}: {len(keys)}, e.g. {keys[0]}" for kind, keys in problems.items() if keys)
        raise FastsegError(f"{path}: not {name} weights as timm names them ({counts})")


def _first_sentence(error: BaseException) -> str:
    """Hugging Face's offline error runs to three sentences of advice that do not apply here."""
    line = _first_line(error)
    return line.split(". ")[0].rstrip(".")


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
