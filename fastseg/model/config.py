"""`ModelConfig`: what rebuilds the network, saved inside every `model.pth` and run `config.json`;
and the model file's name, which the run folder (`fastseg.runs.folder`) borrows from here.

The class count has no default: a model serves the caller's data set (as smp's `classes=`), and
knows none itself. Reading a stored config keeps what older files meant (`from_dict`), and
`fastseg.model.checkpoint` reads a file without colours in VOC's.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from fastseg.classes import MAX_CLASSES
from fastseg.errors import CheckpointError, FastsegError

MODEL_FILENAME = "model.pth"  # a run folder's model (fastseg.model.checkpoint's format)
# File-format compatibility, not a default: a stored model_config without "num_classes" (fastseg
# never wrote one, but such a file was read as VOC's 21 classes before #25, and still is)
UNCOUNTED_FILE_CLASSES = 21
# An input side the model can be run at: 32 (five 2x poolings leave 1 px) to 8192 (a 21-class
# float32 logit map of 8192² is 5.6 GB; a file asking 200,000 px asked for 480 GB).
MIN_SIZE, MAX_SIZE = 32, 8192
ENCODER_CHANNELS = (64, 128, 256, 512, 512, 512)  # VGG16-BN's maps at 1/1, 1/2, ... 1/32
ENCODER_REDUCTIONS = (1, 2, 4, 8, 16, 32)
DEFAULT_ENCODER = "vgg16_bn"  # fastseg's own VGG16-BN (`encoder.py`); any other name is a timm model


@dataclass(frozen=True)
class ModelConfig:
    """What rebuilds the model; saved inside every `model.pth` and run `config.json`.

    `decoder_channels` are the widths of the five decoder blocks, at 1/16, 1/8, 1/4, 1/2 and 1/1
    of the input (smp's Unet defaults). `encoder` is `vgg16_bn` (fastseg's own, the default) or a
    timm model name (`timm.create_model(encoder, features_only=True)`, `fastseg.model.timm_encoder`).
    """

    num_classes: int  # the caller's data set's: `len(classes)`
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)
    encoder: str = DEFAULT_ENCODER  # absent from files made before --encoder existed: they are VGG

    def __post_init__(self) -> None:
        channels = tuple(self.decoder_channels)
        object.__setattr__(self, "decoder_channels", channels)
        if len(channels) != len(ENCODER_CHANNELS) - 1 or not all(
            isinstance(width, int) and width > 0 for width in channels
        ):
            raise FastsegError(
                f"decoder_channels must be {len(ENCODER_CHANNELS) - 1} positive integers "
                f"(one per skip, 1/16 ... 1/1), got {self.decoder_channels!r}"
            )
        if type(self.num_classes) is not int or not 1 <= self.num_classes <= MAX_CLASSES:
            raise FastsegError(f"num_classes must be a whole number from 1 to {MAX_CLASSES} (class indices "
                               f"share a uint8 mask with void 255), got {self.num_classes!r}")  # fmt: skip
        if not isinstance(self.encoder, str) or not self.encoder:
            raise FastsegError(f"encoder must be a model name, got {self.encoder!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON- and `weights_only`-safe: ints, a list and a string."""
        return {"num_classes": self.num_classes, "decoder_channels": list(self.decoder_channels),
                "encoder": self.encoder}  # fmt: skip

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; a key this version does not know means the file is from another one."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise CheckpointError(
                f"model config has unknown keys {unknown} (written by a different fastseg version?)"
            )
        try:
            kept = {"num_classes": UNCOUNTED_FILE_CLASSES, **values}
            if "decoder_channels" in kept:
                kept["decoder_channels"] = tuple(kept["decoder_channels"])
            return cls(**kept)
        except (TypeError, FastsegError) as error:
            raise CheckpointError(f"model config is not valid: {error}") from None
