"""Training losses over logits `(N, C, H, W)` and targets `(N, H, W)`, void (255) ignored:
`--loss ce` (the seed's class-weighted cross-entropy), smp's Dice, focal and Lovasz-softmax, and
ce+dice. smp's implementations are used as they are, not written again; its import (timm and
torchvision with it) happens only when one of them is chosen.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fastseg.imaging.masks import VOID_LABEL


class WeightedCrossEntropy(nn.Module):
    """Cross-entropy over logits `(N, C, H, W)` and targets `(N, H, W)`, void (255) ignored.

    Class weights scale each pixel's term by its true class's weight, and the mean divides by the
    summed weights of the labelled pixels (torch's `weight=`). Computed in float32 even under
    autocast, and on plain tensors: fastai's `TensorMask` subclass would otherwise be carried
    through every op. A batch whose labelled pixels weigh nothing gives 0 with zero gradients: one
    all void, or one labelled only with classes of weight 0 (a class with no training pixel, which
    a validation batch can hold). torch's mean divides 0 by 0 there, and the NaN would poison the
    weights or the epoch's valid_loss. Chosen with `torch.where`, so no host sync and the same
    value, bit for bit, on every other batch.
    """

    def __init__(self, weight: torch.Tensor | None = None, ignore_index: int = VOID_LABEL):
        super().__init__()
        self.register_buffer("weight", None if weight is None else weight.float())
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.as_subclass(torch.Tensor).float()
        target = target.as_subclass(torch.Tensor).long()
        weight = None if self.weight is None else self.weight.to(logits.device)
        labelled = target != self.ignore_index
        if weight is None:
            weighed = labelled.any()
        else:  # void indexes class 0 here, and is then left out by `labelled`
            weighed = (weight[torch.where(labelled, target, 0)] * labelled).sum() > 0
            # weights of 1 where nothing weighs: a finite loss, whose gradient `where` then zeroes
            weight = torch.where(weighed, weight, torch.ones_like(weight))
        loss = F.cross_entropy(logits, target, weight=weight, ignore_index=self.ignore_index)
        return torch.where(weighed, loss, loss.new_zeros(()))


class SmpLoss(nn.Module):
    """One of smp's multiclass losses, given plain float32 logits and long targets.

    An all-void batch gives 0 with zero gradients: smp's focal loss takes the mean of no pixel
    (NaN) and its Lovasz loss returns an empty tensor there. The check syncs with the GPU, which
    these losses do anyway (they select pixels by boolean masks, Lovasz sorts).
    """

    def __init__(self, loss: nn.Module, ignore_index: int = VOID_LABEL) -> None:
        super().__init__()
        self.loss = loss
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.as_subclass(torch.Tensor).float()
        target = target.as_subclass(torch.Tensor).long()
        if not bool((target != self.ignore_index).any()):
            return logits.sum() * 0.0
        return self.loss(logits, target)


class SumOfLosses(nn.Module):
    """`ce+dice`: the terms added, each with its own treatment of void and weights."""

    def __init__(self, *losses: nn.Module) -> None:
        super().__init__()
        self.losses = nn.ModuleList(losses)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(loss(logits, target) for loss in self.losses)


def build_loss(name: str, weight: torch.Tensor | None = None, ignore_index: int = VOID_LABEL) -> nn.Module:
    """The `--loss` named `name` (`fastseg.training.config.LOSSES`), with `weight` `(C,)` per class.

    What each does with the class weights:
    - ce: each pixel's term times its true class's weight, normalised by the weights' sum (above).
    - dice: smp's soft Dice loss per class over the batch (1 - Dice; 0 for a class absent from
      the batch), then the weighted mean over classes, sum(w_c * loss_c) / sum(w_c).
    - focal: smp's one-vs-rest sigmoid focal loss (gamma 2) per class over the labelled pixels,
      then the same weighted mean over classes.
    - lovasz: smp's Lovasz-softmax, averaged over the classes present; it takes no weights, so
      `TrainConfig.check` refuses it with any class weights but "none".
    - ce+dice: the sum of ce and dice, each weighted as above.
    """
    if name == "ce":
        return WeightedCrossEntropy(weight, ignore_index)
    if name == "ce+dice":
        dice = build_loss("dice", weight, ignore_index)
        return SumOfLosses(WeightedCrossEntropy(weight, ignore_index), dice)
    from segmentation_models_pytorch.losses import MULTICLASS_MODE, DiceLoss, FocalLoss, LovaszLoss

    weights = None if weight is None else weight.float()
    if name == "dice":
        loss = DiceLoss(MULTICLASS_MODE, ignore_index=ignore_index, class_weights=weights)
    elif name == "focal":
        loss = FocalLoss(MULTICLASS_MODE, ignore_index=ignore_index, class_weights=weights)
    elif name == "lovasz":
        loss = LovaszLoss(MULTICLASS_MODE, ignore_index=ignore_index)
    else:
        raise ValueError(f"unknown loss {name!r}")
    return SmpLoss(loss, ignore_index)


def absent_class_note(loss: str, counts: np.ndarray, names: Sequence[str]) -> str | None:
    """A warning for `--loss dice` when some classes have no pixel in the training masks `counts`
    `(n_images, C)`, else None.

    smp's Dice gives a class absent from the batch no loss, so nothing pushes a class the data
    never shows down: on fastseg's demo (VOC's 21 classes, 5 drawn) one such class took the
    background, and pixel accuracy ended at 0.23 (benchmarks/README.md, "Encoders and losses").
    It is a risk, not a rule: CamVid declared with 3 classes no mask uses trained with Dice
    without predicting them anywhere (0.466 val mIoU against cross-entropy's 0.396). Cross-
    entropy's softmax term pushes every class but the true one down, so ce and ce+dice need no
    note.
    """
    if loss != "dice":
        return None
    totals = np.asarray(counts).sum(axis=0)
    absent = [name for name, total in zip(names, totals, strict=True) if total == 0]
    if not absent:
        return None
    more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
    shown = ", ".join(repr(name) for name in absent[:5]) + more
    return (f"--loss dice: {len(absent)} of {len(names)} classes have no pixel in the training masks "
            f"({shown}); Dice gives a class absent from a batch no loss, so nothing keeps the model from "
            "predicting them (on fastseg's demo one took the background): --loss ce or ce+dice trains "
            "them down")  # fmt: skip
