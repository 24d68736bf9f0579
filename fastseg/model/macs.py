"""Counting a network's multiply-adds, for the cost figures in the README and benchmarks."""

from __future__ import annotations

import torch
from torch import nn


def count_macs(model: nn.Module, images: torch.Tensor) -> dict[str, int]:
    """Multiply-adds of one forward pass on `images` `(N, C, H, W)`, per top-level child
    (`{"encoder": ..., "decoder": ..., "head": ...}` for a `SegmentationModel`).

    Counts Conv2d, ConvTranspose2d and Linear, which hold nearly all the arithmetic; forward hooks
    are used only to observe shapes here, never to route features.
    """
    totals = {name: 0 for name, _ in model.named_children()}

    def counter(part: str):  # noqa: ANN202 - a forward hook
        def hook(layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            if isinstance(layer, nn.ConvTranspose2d):
                per_input = layer.out_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
                totals[part] += inputs[0].numel() * per_input
            elif isinstance(layer, nn.Conv2d):
                per_output = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
                totals[part] += output.numel() * per_output
            else:
                totals[part] += output.numel() * layer.in_features

        return hook

    handles = [
        layer.register_forward_hook(counter(name.split(".")[0]))
        for name, layer in model.named_modules()
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and name
    ]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    return totals
