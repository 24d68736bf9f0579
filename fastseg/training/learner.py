"""The fastai Learner: our model, loss and metrics, the optimiser spelled out, GPU speed-ups."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from fastai.data.core import DataLoaders
from fastai.learner import Learner

from fastseg.launch.device import cuda_amp_dtype
from fastseg.model.config import ModelConfig
from fastseg.model.network import SegmentationModel, param_groups
from fastseg.training.callbacks import L1Regularization
from fastseg.training.config import TrainConfig
from fastseg.training.losses import build_loss
from fastseg.training.metrics import segmentation_metrics
from fastseg.training.optimizer import FusedAdam


def build_learner(
    config: TrainConfig,
    dls: DataLoaders,
    weights: np.ndarray,
    run_dir: str,
    device: torch.device,
    model_config: ModelConfig,
) -> Learner:
    """The Learner: Adam hyper-parameters spelled out, encoder/decoder groups, our metrics.

    fastai's Adam defaults (wd 0.01 decoupled, eps 1e-5, sqr_mom 0.99) differ from torch's; the
    seed used torch's, so they are given. Non-decoupled wd is torch Adam's L2, decoupled wd is
    AdamW's (the fast recipe). beta1 is not: the one-cycle schedule sets it every batch. The
    update is fastai's Adam stepped by torch's fused kernel (`FusedAdam`: fastai's per-parameter
    Python step cost a sixth of a small-crop CPU epoch).
    """
    model = SegmentationModel(model_config)
    optimizer = partial(FusedAdam, sqr_mom=config.beta2, eps=config.eps, wd=config.weight_decay,
                        decouple_wd=config.decouple_weight_decay)  # fmt: skip
    learn = Learner(
        dls,
        model,
        loss_func=build_loss(config.loss, torch.tensor(weights, dtype=torch.float32)),
        opt_func=optimizer,
        splitter=param_groups,
        metrics=segmentation_metrics(model.config.num_classes),
        path=run_dir,
        model_dir=".",
        wd=config.weight_decay,
        cbs=[L1Regularization(config.l1)],
    )
    learn.recorder.train_metrics = True
    if config.compile:
        learn.model = torch.compile(learn.model)
    if device.type == "cuda":
        from fastai.callback.channelslast import ChannelsLast
        from fastai.callback.fp16 import AMPMode, MixedPrecision

        mode = AMPMode.BF16 if cuda_amp_dtype() == torch.bfloat16 else AMPMode.FP16
        learn.add_cbs([ChannelsLast(), MixedPrecision(amp_mode=mode)])
    return learn


def learning_rates(config: TrainConfig) -> float | slice:
    """One rate, or fastai's `slice(encoder, decoder)` for the two parameter groups of `param_groups`."""
    if config.encoder_lr_ratio == 1:
        return config.lr
    return slice(config.lr * config.encoder_lr_ratio, config.lr)


def uncompiled(model: torch.nn.Module) -> torch.nn.Module:
    """The module under `torch.compile`'s wrapper, whose state_dict keys have no `_orig_mod.`."""
    return getattr(model, "_orig_mod", model)
