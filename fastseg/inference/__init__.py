"""Using a trained model without fastai: `predict` (segment folders) and `report` (evaluate a run),
both through one loop (`segmenter.segment`, the strategy its `Segmenter` chose). Importing anything
here never imports fastai."""
