"""The U-Net decoder: one block per skip, each upsampling to its skip's size, so any input size
works, odd ones included (the seed's decoder needed multiples of 32)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
    skip tensor, not from arithmetic on the input size, so odd sizes cannot misalign.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.fuse = ConvBNReLU(in_channels + skip_channels, out_channels)
        self.refine = ConvBNReLU(out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.refine(self.fuse(torch.cat([x, skip], dim=1)))


class UnetDecoder(nn.Module):
    """Center block at 1/32, then one `DecoderBlock` per skip (1/16 ... 1/1): `(N, C_last, H, W)`.

    The center 3x3 conv adds context at 1/32 and narrows 512 -> `decoder_channels[0]` cheaply.
    At 224² the whole decoder is 3.76 GMACs against the encoder's 15.35 (24.5 %; tests/test_model.py).
    """

    def __init__(self, encoder_channels: tuple[int, ...], decoder_channels: tuple[int, ...]) -> None:
        super().__init__()
        self.center = ConvBNReLU(encoder_channels[-1], decoder_channels[0])
        skip_channels = encoder_channels[-2::-1]  # 512, 512, 256, 128, 64: deepest first
        in_channels = (decoder_channels[0], *decoder_channels[:-1])
        self.blocks = nn.ModuleList(
            DecoderBlock(inputs, skips, outputs)
            for inputs, skips, outputs in zip(in_channels, skip_channels, decoder_channels, strict=True)
        )
        self.out_channels = decoder_channels[-1]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """`features` as `VGGEncoder` returns them, finest first; the result has the finest's size."""
        x = self.center(features[-1])
        for block, skip in zip(self.blocks, features[-2::-1], strict=True):
            x = block(x, skip)
        return x
