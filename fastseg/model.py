"""The segmentation network: VGG16-BN encoder -> light U-Net decoder -> 1x1 head.

Plain PyTorch (no fastai import) so inference needs nothing else. Skips are passed to the
decoder as `forward` arguments, never through hooks. Every decoder block resizes to its skip's
size, so any input size works, odd ones included (the seed's decoder needed multiples of 32).

Encoder features follow segmentation_models_pytorch's VGG encoder: each of the five stages is
read just *before* its max-pool (64/128/256/512/512 channels at 1/1, 1/2, 1/4, 1/8, 1/16), and
the final pool gives the decoder's starting map (512 channels at 1/32). The issue also allowed
the maps *after* each pool; the pre-pool ones win at every scale: at 1/2 the skip is conv2_2
(128 channels, two more convolutions deep) rather than a max-pooled conv1_2, and the decoder gets a
full-resolution skip for object boundaries instead of upsampling 1/2 -> 1/1 blind.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from fastseg.classes import NUM_CLASSES
from fastseg.errors import CheckpointError, FastsegError

ENCODER_CHANNELS = (64, 128, 256, 512, 512, 512)


@dataclass(frozen=True)
class ModelConfig:
    """What rebuilds the model; saved inside every `model.pth` and run `config.json`.

    `decoder_channels` are the widths of the five decoder blocks, at 1/16, 1/8, 1/4, 1/2 and 1/1
    of the input (smp's Unet defaults).
    """

    num_classes: int = NUM_CLASSES
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)

    def __post_init__(self) -> None:
        channels = tuple(self.decoder_channels)
        object.__setattr__(self, "decoder_channels", channels)
        if len(channels) != len(ENCODER_CHANNELS) - 1 or not all(
            isinstance(width, int) and width > 0 for width in channels
        ):
            raise FastsegError(
                f"decoder_channels must be {len(ENCODER_CHANNELS) - 1} positive integers "
                f"(one per skip, 1/16 ... 1/1), got {self.decoder_channels!r}"
            )
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise FastsegError(f"num_classes must be a positive integer, got {self.num_classes!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON- and `weights_only`-safe: ints and a list."""
        return {"num_classes": self.num_classes, "decoder_channels": list(self.decoder_channels)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; a key this version does not know means the file is from another one."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise CheckpointError(
                f"model config has unknown keys {unknown} (written by a different fastseg version?)"
            )
        try:
            kept = dict(values)
            if "decoder_channels" in kept:
                kept["decoder_channels"] = tuple(kept["decoder_channels"])
            return cls(**kept)
        except (TypeError, FastsegError) as error:
            raise CheckpointError(f"model config is not valid: {error}") from None


class ConvBNReLU(nn.Sequential):
    """3x3 (or `kernel_size`) convolution, BatchNorm, ReLU; shape-preserving `(N, C_in, H, W)` ->
    `(N, C_out, H, W)`. No conv bias: BatchNorm's shift makes it redundant."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def vgg16_bn_features() -> nn.Sequential:
    """torchvision's `vgg16_bn(weights=None).features`, same layers, indices and initialisation.

    Built with torchvision's own `make_layers(cfgs["D"], batch_norm=True)` so the ~100M-parameter
    ImageNet classifier that `vgg16_bn()` would allocate (about a second per model) is never made.
    """
    features = make_layers(cfgs["D"], batch_norm=True)
    for layer in features:  # torchvision's VGG.__init__ initialisation of the same layers
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)
    return features


class VGGEncoder(nn.Module):
    """torchvision `vgg16_bn` features, split at each max-pool into five stages.

    Stage `s` is `[pool,] conv-BN-ReLU x 2 or 3`; its output is read before the next pool. Stage
    modules keep torchvision's layer indices (`stages.1.7.weight` is `features.7.weight`), so
    ImageNet weights map by name. The pools use `ceil_mode=True`: identical for even sizes, and an
    odd (or tiny) size keeps its last row instead of dropping it, so every input down to 1x1 works.
    """

    out_channels = ENCODER_CHANNELS

    def __init__(self) -> None:
        super().__init__()
        features = vgg16_bn_features()
        pools = [index for index, layer in enumerate(features) if isinstance(layer, nn.MaxPool2d)]
        for index in pools:
            features[index].ceil_mode = True
        bounds = (0, *pools)  # 0, 6, 13, 23, 33, 43
        self.stages = nn.ModuleList(
            features[start:end] for start, end in zip(bounds[:-1], bounds[1:], strict=True)
        )
        self.pool = features[pools[-1]]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """`(N, 3, H, W)` -> six maps, finest first: `(N, 64, H, W)`, `(N, 128, ⌈H/2⌉, ⌈W/2⌉)`, ...,
        `(N, 512, ⌈H/16⌉, ⌈W/16⌉)`, and the pooled `(N, 512, ⌈H/32⌉, ⌈W/32⌉)`."""
        features = []
        x = images
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        features.append(self.pool(x))
        return features


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
    At 224² the whole decoder is about 3.8 GMACs against the encoder's 15.4 (~25%).
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


class SegmentationModel(nn.Module):
    """`(N, 3, H, W)` ImageNet-normalised images -> `(N, num_classes, H, W)` logits, any H and W.

    Works with `channels_last` inputs and `torch.compile(fullgraph=True)`: no shape-dependent
    Python branches, every size is read from a tensor.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        self.encoder = VGGEncoder()
        self.decoder = UnetDecoder(self.encoder.out_channels, self.config.decoder_channels)
        self.head = nn.Conv2d(self.decoder.out_channels, self.config.num_classes, kernel_size=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.encoder(images)
        decoded = self.decoder(features)
        return self.head(decoded)


def param_groups(model: SegmentationModel) -> list[list[nn.Parameter]]:
    """fastai splitter: `[encoder, decoder + head]`, so `freeze()` trains the new layers alone and
    discriminative learning rates can give the pretrained encoder a smaller one."""
    return [list(model.encoder.parameters()), [*model.decoder.parameters(), *model.head.parameters()]]


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
