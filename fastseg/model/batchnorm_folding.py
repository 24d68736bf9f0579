"""BatchNorm folded into the convolution before it, for a network that will only run inference:
both the torch runtime (`fastseg.inference.runtime.TorchRuntime`) and the ONNX export
(`fastseg.export.onnx_file`) run the folded network, so their graphs match."""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm2d into the Conv2d just before it, in place: the same outputs
    with one op less per layer (its share of CPU inference time: benchmarks/README.md). Folded
    layers no longer train like BatchNorm, so only a model loaded for inference is folded."""
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:], strict=False):
            conv, norm = module._modules[first], module._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                module._modules[first] = fuse_conv_bn_eval(conv, norm)
                module._modules[second] = nn.Identity()
    return model
