"""fastseg: semantic segmentation with fastai (PASCAL VOC 2012 or your own data), from training to reports."""

from __future__ import annotations

__version__ = "0.1.0"
