"""Class-weighted cross-entropy that ignores void pixels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastseg.imaging.masks import VOID_LABEL


class WeightedCrossEntropy(nn.Module):
    """Cross-entropy over logits `(N, C, H, W)` and targets `(N, H, W)`, void (255) ignored.

    Computed in float32 even under autocast, and on plain tensors: fastai's `TensorMask`
    subclass would otherwise be carried through every op.
    """

    def __init__(self, weight: torch.Tensor | None = None, ignore_index: int = VOID_LABEL):
        super().__init__()
        self.register_buffer("weight", None if weight is None else weight.float())
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.as_subclass(torch.Tensor).float()
        target = target.as_subclass(torch.Tensor).long()
        weight = None if self.weight is None else self.weight.to(logits.device)
        return F.cross_entropy(logits, target, weight=weight, ignore_index=self.ignore_index)
