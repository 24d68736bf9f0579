"""Class weights for the cross-entropy loss, from pixel counts of the training masks.

VOC is dominated by background (about 70% of labelled pixels), so the seed weighted the loss
with sklearn's "balanced" rule. Void pixels are never counted.
"""

from __future__ import annotations

import numpy as np

from fastseg.imaging.masks import VOID_LABEL

METHODS = ("balanced", "median-frequency", "none")  # `fastseg train --class-weights` offers these


def mask_pixel_counts(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixels per class `(C,)` int64 of one class-index mask, void excluded."""
    labels = mask.ravel()
    labels = labels[labels != VOID_LABEL]
    return np.bincount(labels, minlength=num_classes)[:num_classes].astype(np.int64)


def class_weights(counts: np.ndarray, method: str = "balanced") -> np.ndarray:
    """Weights `(C,)` from per-image counts `(n_images, C)`.

    - balanced: n_pixels / (C * count_c), sklearn's rule over non-void pixels;
    - median-frequency: median(freq) / freq_c, where freq_c = count_c / pixels of the images
      containing c (Eigen & Fergus 2015);
    - none: all ones.
    A class with no training pixel gets weight 0: it never appears as a target, so its weight is
    never used, and 0 keeps the file free of infinities.
    """
    if method not in METHODS:
        raise ValueError(f"unknown class-weight method {method!r}; choose one of {', '.join(METHODS)}")
    num_classes = counts.shape[1]
    if method == "none":
        return np.ones(num_classes)
    totals = counts.sum(0).astype(np.float64)
    present = totals > 0
    weights = np.zeros(num_classes)
    if method == "balanced":
        weights[present] = totals.sum() / (num_classes * totals[present])
        return weights
    image_pixels = counts.sum(1, keepdims=True)
    pixels_where_present = np.where(counts > 0, image_pixels, 0).sum(0).astype(np.float64)
    frequency = np.zeros(num_classes)
    frequency[present] = totals[present] / pixels_where_present[present]
    weights[present] = np.median(frequency[present]) / frequency[present]
    return weights
