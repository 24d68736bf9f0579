"""Any timm backbone as the U-Net's encoder: `timm.create_model(name, features_only=True)`.

timm is plain PyTorch, so inference may use it, but it is imported only here and only when a model
names a timm encoder: its import (3.7 s, torchvision included) stays out of a VGG model's
`fastseg predict` start-up. timm reports each map's channels and stride (`feature_info`), which is
all `UnetDecoder` needs to put its blocks and skips in place, as smp's encoders do.
"""

from __future__ import annotations

import sys
from types import ModuleType

import torch
from torch import nn

from fastseg.errors import FastsegError


def import_timm() -> ModuleType:
    """timm, imported without the experiment tracker it looks for.

    `import timm` tries `import wandb` (for timm's own training scripts' summaries, which fastseg
    never calls); where wandb is installed, that alone was about a third of the 3 s a timm model
    adds to `fastseg predict`'s start-up (benchmarks/README.md, "Encoders and losses"). A `None`
    in `sys.modules` makes that import fail for the moment timm takes, and timm carries on
    without it. A wandb already imported (training with `--log wandb`) is left as it is, and
    wandb stays importable afterwards.
    """
    if "timm" in sys.modules:
        return sys.modules["timm"]
    hide = "wandb" not in sys.modules
    if hide:
        sys.modules["wandb"] = None  # type: ignore[assignment]  # `import wandb` raises ImportError
    try:
        import timm
    finally:
        if hide:
            sys.modules.pop("wandb", None)
    return timm


def require_timm_model(name: str) -> None:
    """One line when timm has no model `name` (timm's own error would come from deep inside it)."""
    timm = import_timm()

    if not timm.is_model(name):
        raise FastsegError(
            f"unknown encoder {name!r}: use vgg16_bn or a timm model name "
            "(python -c 'import timm; print(timm.list_models())')"
        )


def features_model(name: str, **options: object) -> nn.Module:
    """`timm.create_model(name, features_only=True, **options)`, or one line saying why not."""
    timm = import_timm()

    require_timm_model(name)
    try:
        return timm.create_model(name, features_only=True, **options)
    except (RuntimeError, ValueError, TypeError, AssertionError) as error:
        lines = str(error).strip().splitlines()
        reason = lines[0] if lines else type(error).__name__
        raise FastsegError(f"encoder {name!r}: timm cannot build its feature maps ({reason})") from None


class TimmEncoder(nn.Module):
    """timm backbone `name` with random weights (trained ones are loaded afterwards, as for VGG:
    `fastseg.model.pretrained`). `(N, 3, H, W)` -> its maps finest first, e.g. for resnet18
    `(N, 64, ⌈H/2⌉, ⌈W/2⌉)` ... `(N, 512, ⌈H/32⌉, ⌈W/32⌉)`; `out_channels` and `reductions`
    (strides) describe them. Parameters are named `model.<timm's own name>`."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.model = features_model(name, pretrained=False)
        self.out_channels = tuple(self.model.feature_info.channels())
        self.reductions = tuple(self.model.feature_info.reduction())

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return list(self.model(images))
