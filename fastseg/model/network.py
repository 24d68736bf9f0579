"""The segmentation network: encoder (VGG16-BN, or a timm backbone) -> U-Net decoder -> 1x1 head,
as smp composes it.

Plain PyTorch (no fastai import) so inference needs nothing else. Skips are passed to the
decoder as `forward` arguments, never through hooks.
"""

from __future__ import annotations

import torch
from torch import nn

from fastseg.model.config import DEFAULT_ENCODER, ModelConfig
from fastseg.model.decoder import UnetDecoder
from fastseg.model.encoder import VGGEncoder


def build_encoder(name: str) -> nn.Module:
    """fastseg's VGG16-BN for `vgg16_bn` (layers and initialisation as before timm encoders
    existed), else timm's backbone `name` (timm imported only then)."""
    if name == DEFAULT_ENCODER:
        return VGGEncoder()
    from fastseg.model.timm_encoder import TimmEncoder

    return TimmEncoder(name)


class SegmentationModel(nn.Module):
    """`(N, 3, H, W)` ImageNet-normalised images -> `(N, num_classes, H, W)` logits, any H and W.

    Works with `channels_last` inputs and `torch.compile(fullgraph=True)`: no shape-dependent
    Python branches, every size is read from a tensor.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = build_encoder(self.config.encoder)
        self.decoder = UnetDecoder(
            self.encoder.out_channels, self.config.decoder_channels, self.encoder.reductions
        )
        self.head = nn.Conv2d(self.decoder.out_channels, self.config.num_classes, kernel_size=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.encoder(images)
        decoded = self.decoder(features, images.shape[-2:])
        return self.head(decoded)


def param_groups(model: SegmentationModel) -> list[list[nn.Parameter]]:
    """fastai splitter: `[encoder, decoder + head]`, so `freeze()` trains the new layers alone and
    discriminative learning rates can give the pretrained encoder a smaller one."""
    return [list(model.encoder.parameters()), [*model.decoder.parameters(), *model.head.parameters()]]
