"""Using a trained model without fastai: `predict` (segment folders) and `report` (evaluate a run),
both through one loop (`loop.segment`). Importing anything here never imports fastai."""
