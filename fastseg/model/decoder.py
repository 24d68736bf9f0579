"""The U-Net decoder: one block per scale, each upsampling to its skip's size, so any input size
works, odd ones included (the seed's decoder needed multiples of 32), behind any encoder whose
maps are at power-of-two strides down to 1/32 (smp's `decoders/unet` does the same)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fastseg.errors import FastsegError
from fastseg.model.config import ENCODER_REDUCTIONS


class ConvBNReLU(nn.Sequential):
    """3x3 (or `kernel_size`) convolution, BatchNorm, ReLU; shape-preserving `(N, C_in, H, W)` ->
    `(N, C_out, H, W)`. No conv bias: BatchNorm's shift makes it redundant."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DecoderBlock(nn.Module):
    """Upsample to the skip's size, concatenate the skip, two 3x3 conv-BN-ReLU.

    `(N, C_in, h, w)` and skip `(N, C_skip, H, W)` -> `(N, C_out, H, W)`. The size comes from the
    skip tensor, not from arithmetic on the input size, so odd sizes cannot misalign. A block
    without a skip (`skip_channels` 0: a scale the encoder has no map at, e.g. 1/1 for timm
    encoders) upsamples to the `size` it is given instead.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.fuse = ConvBNReLU(in_channels + skip_channels, out_channels)
        self.refine = ConvBNReLU(out_channels, out_channels)

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor | None = None, size: Sequence[int] | None = None
    ) -> torch.Tensor:
        target = skip.shape[-2:] if skip is not None else size
        x = F.interpolate(x, size=target, mode="bilinear", align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.refine(self.fuse(x))


class UnetDecoder(nn.Module):
    """Center block at the deepest map (1/32), then one `DecoderBlock` per scale 1/16 ... 1/1:
    `(N, decoder_channels[-1], H, W)`, the input's size.

    Each block takes the encoder's map at its scale as a skip when there is one (VGG16-BN has one
    at every scale; timm backbones start at 1/2 or 1/4, as smp's encoders do), so any channel list
    works. The center 3x3 conv adds context at 1/32 and narrows the deepest map cheaply. With
    VGG16-BN at 224² the whole decoder is 3.76 GMACs against the encoder's 15.35 (24.5 %;
    tests/test_model.py).
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        decoder_channels: Sequence[int],
        reductions: Sequence[int] = ENCODER_REDUCTIONS,
    ) -> None:
        super().__init__()
        deepest = 2 ** len(decoder_channels)
        ordered = list(reductions) == sorted(set(reductions)) and len(reductions) == len(encoder_channels)
        if not ordered or reductions[-1] != deepest or any(value & (value - 1) for value in reductions):
            raise FastsegError(
                f"encoder maps at strides {list(reductions)}: the U-Net decoder needs increasing "
                f"power-of-two strides ending at 1/{deepest}; choose another encoder"
            )
        self.center = ConvBNReLU(encoder_channels[-1], decoder_channels[0])
        channels_at = dict(zip(reductions, encoder_channels, strict=True))
        scales = [deepest >> (index + 1) for index in range(len(decoder_channels))]  # 16, 8, 4, 2, 1
        skip_channels = [channels_at.get(scale, 0) for scale in scales]
        in_channels = (decoder_channels[0], *decoder_channels[:-1])
        self.blocks = nn.ModuleList(
            DecoderBlock(inputs, skips, outputs)
            for inputs, skips, outputs in zip(in_channels, skip_channels, decoder_channels, strict=True)
        )
        # which of the encoder's maps each block takes as its skip (None: no map at that scale)
        position = {scale: index for index, scale in enumerate(reductions)}
        self.skip_index = tuple(position.get(scale) for scale in scales)
        self.out_channels = decoder_channels[-1]

    def forward(self, features: list[torch.Tensor], size: Sequence[int] | None = None) -> torch.Tensor:
        """`features` as the encoder returns them, finest first, and `size` the input's `(H, W)`
        (needed only when the encoder has no 1/1 map); the result has the input's size."""
        x = self.center(features[-1])
        last = len(self.blocks) - 1
        for number, (block, index) in enumerate(zip(self.blocks, self.skip_index, strict=True)):
            if index is not None:
                x = block(x, features[index])
            elif number == last:
                x = block(x, size=size)
            else:  # a scale between the encoder's maps: twice the size of the one before
                x = block(x, size=(x.shape[-2] * 2, x.shape[-1] * 2))
        return x
