"""`fastseg export`: a trained model as a file that runs without fastseg's torch network (ONNX),
optionally quantised to INT8 after its accuracy cost is measured. Never imports fastai."""

FORMATS = ("onnx",)  # `fastseg export --format`; here, torch-free, for `--help`
CALIBRATION_IMAGES = 32  # training images that calibrate INT8's activation ranges
