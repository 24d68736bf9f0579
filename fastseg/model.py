"""The segmentation network: VGG16-BN encoder -> light skip decoder -> 1x1 head.

Plain PyTorch (no fastai import) so inference needs nothing else. Skips are passed to the
decoder as arguments, never through hooks. Every decoder block resizes to its skip's size, so
any input size works, odd ones included (the seed's decoder needed multiples of 32).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import vgg16_bn

from fastseg.classes import NUM_CLASSES

# vgg16_bn `features` indices that end each stage (just after its MaxPool).
VGG16_BN_STAGE_ENDS = (7, 14, 24, 34, 44)
VGG16_BN_STAGE_CHANNELS = (64, 128, 256, 512, 512)


@dataclass
class ModelConfig:
    """What rebuilds the model; saved inside every `model.pth`."""

    num_classes: int = NUM_CLASSES
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        kept = {key: value for key, value in values.items() if key in known}
        if "decoder_channels" in kept:
            kept["decoder_channels"] = tuple(kept["decoder_channels"])
        return cls(**kept)


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class VGGEncoder(nn.Module):
    """torchvision `vgg16_bn().features` cut after each max-pool.

    Returns five feature maps: 64, 128, 256, 512, 512 channels at 1/2, 1/4, 1/8, 1/16, 1/32 of
    the input. Stage modules keep torchvision's layer indices, so ImageNet weights map 1:1.
    """

    def __init__(self) -> None:
        super().__init__()
        features = vgg16_bn(weights=None).features
        starts = (0, *VGG16_BN_STAGE_ENDS[:-1])
        self.stages = nn.ModuleList(
            features[start:end] for start, end in zip(starts, VGG16_BN_STAGE_ENDS, strict=True)
        )
        self.out_channels = VGG16_BN_STAGE_CHANNELS

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs


class DecoderBlock(nn.Module):
    """Upsample to the skip's size, concatenate the skip, two 3x3 conv-BN-ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.fuse = ConvBNReLU(in_channels + skip_channels, out_channels)
        self.refine = ConvBNReLU(out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, size: tuple[int, int] | None = None):
        target = skip.shape[-2:] if skip is not None else size
        x = F.interpolate(x, size=target, mode="bilinear", align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.refine(self.fuse(x))


class SkipDecoder(nn.Module):
    """U-Net-style decoder over the encoder's 1/32 ... 1/2 maps, ending at the input size.

    Widths stay small (default 256 -> 16) so the decoder costs a fraction of the encoder: at 224²
    about 2.6 GMACs against the encoder's 15.4.
    """

    def __init__(self, encoder_channels: tuple[int, ...], decoder_channels: tuple[int, ...]):
        super().__init__()
        skip_channels = encoder_channels[-2::-1]  # 512, 256, 128, 64: the skips, deepest first
        in_channels = (encoder_channels[-1], *decoder_channels[:-2])
        blocks = [
            DecoderBlock(inputs, skips, outputs)
            for inputs, skips, outputs in zip(in_channels, skip_channels, decoder_channels[:-1], strict=True)
        ]
        # The last block has no skip: it brings the 1/2-resolution map to the input's size.
        blocks.append(DecoderBlock(decoder_channels[-2], 0, decoder_channels[-1]))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        x, skips = features[-1], features[-2::-1]
        for block, skip in zip(self.blocks[:-1], skips, strict=True):
            x = block(x, skip)
        return self.blocks[-1](x, size=size)


class SegmentationModel(nn.Module):
    """`(N, 3, H, W)` normalised images -> `(N, num_classes, H, W)` logits, for any H, W >= 32."""

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config or ModelConfig()
        self.encoder = VGGEncoder()
        self.decoder = SkipDecoder(self.encoder.out_channels, self.config.decoder_channels)
        self.head = nn.Conv2d(self.config.decoder_channels[-1], self.config.num_classes, kernel_size=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.encoder(images)
        return self.head(self.decoder(features, images.shape[-2:]))


def param_groups(model: SegmentationModel) -> list[list[nn.Parameter]]:
    """fastai splitter: [encoder, decoder + head], so `freeze()` trains the decoder alone."""
    return [list(model.encoder.parameters()), [*model.decoder.parameters(), *model.head.parameters()]]
