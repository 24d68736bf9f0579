"""An RGB picture as the model's input tensor: scaled to [0, 1], then ImageNet-normalised.

The arithmetic is fastai's `IntToFloatTensor` followed by `Normalize` (float32 division by 255,
then `(x - mean) / std`), so a picture normalised here equals the same picture in a training batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalise(
    image: Image.Image, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """RGB PIL image `(H, W)` -> `(3, H, W)` float32 tensor."""
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)
    mean_tensor = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_tensor = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (pixels - mean_tensor) / std_tensor
