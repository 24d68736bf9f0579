"""An RGB picture as the model's input: scaled to [0, 1], then ImageNet-normalised.

The arithmetic is fastai's `IntToFloatTensor` followed by `Normalize` (float32 division by 255,
then `(x - mean) / std`), so a picture normalised here equals the same picture in a training batch.
It is done in numpy (each step one exactly rounded float32 operation, so the values are torch's
to the bit: tests/test_geometry.py): inference on an ONNX file never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalised_array(
    image: Image.Image | np.ndarray,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
    """RGB picture `(H, W)` (PIL, or a `(H, W, 3)` uint8 array) -> `(3, H, W)` float32 array."""
    pixels = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32)
    pixels /= np.float32(255.0)
    pixels -= np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    pixels /= np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
    return pixels


def normalise(
    image: Image.Image | np.ndarray,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """RGB picture `(H, W)` -> `(3, H, W)` float32 tensor (`normalised_array`'s values)."""
    import torch

    return torch.from_numpy(normalised_array(image, mean, std))
