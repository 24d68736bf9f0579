"""The network in plain PyTorch (encoder -> decoder -> head), its `model.pth` file format and its
ImageNet encoder weights. Nothing here imports fastai: inference needs only this."""
