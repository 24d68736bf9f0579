"""The VGG16-BN encoder, read just *before* each max-pool as segmentation_models_pytorch does.

Each of the five stages is read before its pool (64/128/256/512/512 channels at 1/1, 1/2, 1/4,
1/8, 1/16), and the final pool gives the decoder's starting map (512 channels at 1/32). The maps
*after* each pool were the alternative; the pre-pool ones win at every scale: at 1/2 the skip is
conv2_2 (128 channels, two more convolutions deep) rather than a max-pooled conv1_2, and the
decoder gets a full-resolution skip for object boundaries instead of upsampling 1/2 -> 1/1 blind.
"""

from __future__ import annotations

import torch
from torch import nn

from fastseg.model.config import ENCODER_CHANNELS, ENCODER_REDUCTIONS

# torchvision's `cfgs["D"]`: output channels of each 3x3 convolution, "M" a 2x2 max-pool
VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16_bn_features() -> nn.Sequential:
    """torchvision's `vgg16_bn(weights=None).features`: same layers, indices and initialisation
    (tests/test_model.py compares them), so ImageNet weights load by name.

    Built here rather than with torchvision's `make_layers`: importing torchvision pulls in
    torch._dynamo, 1.8 s of `fastseg predict`'s 6 s start-up; and `vgg16_bn()` itself would
    allocate the ~100M-parameter ImageNet classifier (about a second per model) only to drop it.
    """
    layers: list[nn.Module] = []
    channels = 3
    for width in VGG16_LAYERS:
        if width == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [
                nn.Conv2d(channels, width, kernel_size=3, padding=1),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            channels = width
    features = nn.Sequential(*layers)
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
    reductions = ENCODER_REDUCTIONS  # each map's stride, for the decoder

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
