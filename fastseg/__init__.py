"""fastseg: semantic segmentation of PASCAL VOC 2012 with fastai, from training to reports."""

from __future__ import annotations

__version__ = "0.1.0"
