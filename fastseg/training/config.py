"""Run configuration as dataclasses: the CLI takes its defaults from here and every run saves
the values it actually used, so a run folder describes itself."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from fastseg.errors import FastsegError, OptionError
from fastseg.extras import install_hint
from fastseg.imaging.geometry import LETTERBOX, SQUISH
from fastseg.launch.device import MAX_LOADER_WORKERS, loader_workers
from fastseg.model.config import DEFAULT_ENCODER

TRAIN_SETS = ("train", "trainaug")  # VOC train; SBD + VOC train less VOC val (`download --sbd`)
# Which weights become model.pth: the best validation epoch (the seed's rule, with early stopping)
# or the final, annealed epoch (no early stopping; benchmarks/README.md, "Learning on real photos").
KEEP_RULES = ("best", "final")
# `--loss` (fastseg.training.losses): cross-entropy (the seed's), smp's Dice, focal and Lovasz-softmax
LOSSES = ("ce", "dice", "focal", "lovasz", "ce+dice")
UNWEIGHTED_LOSSES = ("lovasz",)  # smp's Lovasz loss has no per-class weights (see losses.py)
# `--log`: experiment tracker -> the modules it needs (the pip extra of the same name installs
# them); the trackers themselves are in fastseg.training.experiment_trackers
TRACKERS: dict[str, tuple[str, ...]] = {
    "tensorboard": ("tensorboard",),
    "mlflow": ("mlflow", "sqlalchemy"),  # sqlalchemy: MLflow's default local store is sqlite:///mlflow.db
    "wandb": ("wandb",),
}


def require_trackers(names: tuple[str, ...] | list[str]) -> None:
    """Raise, in one line naming the extra to install, for an unknown or uninstalled tracker:
    before any work starts, not when the first epoch ends."""
    for position, name in enumerate(names):
        if name in names[:position]:  # two MLflow runs cannot be active at once; two TensorBoards log twice
            raise FastsegError(f"--log {name} is given twice: each tracker logs a run once")
        if name not in TRACKERS:
            raise FastsegError(f"--log {name}: choose one of {', '.join(TRACKERS)}")
        missing = [module for module in TRACKERS[name] if find_spec(module) is None]
        if missing:
            raise FastsegError(f"--log {name} needs {', '.join(missing)}: {install_hint(name)}")


def check_launch() -> None:
    """The launcher's variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE) checked as a launch
    will check them, where the loader cap refused `--num-workers`: WORLD_SIZE=4 left in a shell
    without RANK divided the cores by 4, and the cap blamed `--num-workers` for processes that did
    not exist before the launch could name the variable."""
    from fastseg.launch.processes import local_rank, rank_and_world

    rank_and_world()
    local_rank()


def check_out_folder(path: Path | str) -> None:
    """One line when the file system cannot even look `path` up (a part longer than its 255
    bytes, a loop of links): pathlib's `exists()` raises those errors instead of saying False, so
    they surfaced as a traceback from the run folder's lock or lr-find's output check. A path
    that is merely missing is fine: it is made later."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):  # made later, or "not a directory" said there
        return
    except OSError as error:
        raise FastsegError(f"{path}: cannot be an output folder ({error.strerror}); choose another --out") \
            from None  # fmt: skip


# VGG's (and most timm encoders') deepest map is the input / 32: below 64 px it is 1x1, so a batch
# of one gives BatchNorm one value per channel, which it refuses in training (ValueError mid-epoch)
MIN_SINGLE_BATCH_SIDE = 64


def batch_norm_problem(batch_size: int, train_size: int) -> str | None:
    """Why batches of `batch_size` at `train_size`² training inputs cannot train, or None."""
    if batch_size > 1 or train_size >= MIN_SINGLE_BATCH_SIDE:
        return None
    return (f"batches of one (--batch-size 1, or one training image per process) at a {train_size} px "
            "training input leave BatchNorm a single value per channel in the encoder's deepest map (1/32 "
            "of the input), which it cannot train on: use --batch-size 2 or more (and 2+ training images), "
            f"or --size {MIN_SINGLE_BATCH_SIDE} or more (and --crop-size, with random-scale "
            "crops)")  # fmt: skip


@dataclass
class AugmentConfig:
    """Training augmentation; the defaults are the seed's (albumentations) probabilities and ranges."""

    flip_p: float = 0.5
    rotate_p: float = 0.3
    rotate_degrees: float = 45.0
    translate_p: float = 0.3
    translate_fraction: float = 0.15
    scale_p: float = 0.3
    scale_range: tuple[float, float] = (0.9, 1.1)
    blur_p: float = 0.15
    blur_sigma: tuple[float, float] = (0.2, 1.0)
    color_jitter_p: float = 0.15
    color_jitter: float = 0.1
    brightness_contrast_p: float = 0.15
    brightness_contrast: float = 0.2
    # Off for the seed's recipe (whole image squished to SIZE²). On: the training image's longer
    # side is scaled to SIZE x a random factor in `crop_scale`, then a CROP_SIZE² crop is taken
    # (padded with void where the image is smaller): objects keep their aspect ratio and vary in
    # scale, and validation, predict and report letterbox the image to SIZE² instead of squishing it.
    random_scale_crop: bool = False
    crop_scale: tuple[float, float] = (0.5, 2.0)


@dataclass
class TrainConfig:
    """Everything `fastseg train` needs. The field defaults are the seed's recipe; the CLI's
    default is the faster, better "fast" recipe (`fastseg.training.recipes`)."""

    data: str = ""
    out: str = ""
    recipe: str = "seed"  # the preset these values started from (see fastseg.training.recipes)
    train_set: str = "train"  # or "trainaug": SBD + VOC train, VOC val removed (fastseg download --sbd)
    size: int = 224  # evaluation side: squish to SIZE², or letterbox into it (random-scale crops)
    crop_size: int = 0  # training crop side with random-scale crops; 0: SIZE
    batch_size: int = 32
    epochs: int = 300
    patience: int = 30
    encoder: str = DEFAULT_ENCODER  # vgg16_bn, or any timm model name (fastseg.model.timm_encoder)
    loss: str = "ce"  # LOSSES
    lr: float = 1e-4
    encoder_lr_ratio: float = 1.0  # the pretrained encoder's lr = lr x this (fastai's discriminative lr)
    weight_decay: float = 0.0
    decouple_weight_decay: bool = False  # False: torch Adam's L2 (the seed); True: AdamW
    eps: float = 1e-8
    beta2: float = 0.999
    l1: float = 1e-6
    class_weights: str = "balanced"
    pretrained: bool = True
    encoder_weights: str | None = None
    freeze_epochs: int = 0
    keep: str = "best"  # KEEP_RULES: which epoch's weights model.pth holds
    device: str = "auto"
    seed: int = 42
    split_seed: int = 42
    num_workers: int = -1
    compile: bool = False  # torch.compile the model (CUDA; first epoch pays the compilation)
    trackers: tuple[str, ...] = ()  # experiment trackers to log to (`--log`, TRACKERS)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def check(self) -> None:
        """Refuse values of the wrong type or out of range (every one at once, a `--config` file
        or a run's config.json can hold anything), then values that would train but waste the
        run, in one line."""
        from fastseg.data.class_weights import METHODS

        self.check_fields()
        require_trackers(self.trackers)
        if self.class_weights not in METHODS:
            raise FastsegError(f"class weights {self.class_weights!r}: choose one of {', '.join(METHODS)}")
        if self.loss not in LOSSES:
            raise FastsegError(f"loss {self.loss!r}: choose one of {', '.join(LOSSES)}")
        if self.loss in UNWEIGHTED_LOSSES and self.class_weights != "none":
            raise FastsegError(
                f"--loss {self.loss} has no per-class weights, so --class-weights {self.class_weights} "
                "would be ignored: add --class-weights none, or use ce, dice, focal or ce+dice"
            )
        if self.encoder != DEFAULT_ENCODER:
            from fastseg.model.timm_encoder import require_timm_model

            require_timm_model(self.encoder)
        if self.keep not in KEEP_RULES:
            raise FastsegError(f"keep {self.keep!r}: choose one of {', '.join(KEEP_RULES)}")
        if self.train_set not in TRAIN_SETS:
            raise FastsegError(f"training set {self.train_set!r}: choose one of {', '.join(TRAIN_SETS)}")
        problem = batch_norm_problem(self.batch_size, self.train_size)
        if problem:
            raise FastsegError(problem)
        try:
            loader_workers(self.num_workers)  # more than this machine holds: one line before the run folder
        except OptionError:  # the cap counts the launch's processes: a broken launch is the mistake
            check_launch()
            raise
        if self.augment.random_scale_crop and self.train_size > self.size:
            raise FastsegError(
                f"--crop-size {self.train_size} is larger than --size {self.size}: most of every crop "
                "would be void padding; use a crop no larger than SIZE"
            )

    @property
    def resize(self) -> str:
        """How validation, predict and report fit an image into the model (`fastseg.imaging.geometry`)."""
        return LETTERBOX if self.augment.random_scale_crop else SQUISH

    @property
    def train_size(self) -> int:
        """Side of the square training inputs."""
        return (self.crop_size or self.size) if self.augment.random_scale_crop else self.size

    def check_fields(self) -> None:
        """Every field of the right type and in range (`field_problem`), or one line naming all."""
        problems = [problem for name, value in self.items() if (problem := field_problem(name, value))]
        if problems:
            raise FastsegError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def items(self) -> list[tuple[str, Any]]:
        """Every field as `(name, value)`, the augmentation's as `(augment.name, value)`."""
        values = [(f.name, getattr(self, f.name)) for f in fields(self) if f.name != "augment"]
        if not isinstance(self.augment, AugmentConfig):
            return [*values, ("augment", self.augment)]
        return values + [(f"augment.{f.name}", getattr(self.augment, f.name)) for f in fields(AugmentConfig)]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Rebuild from `to_dict` output, ignoring keys a newer or older version added."""
        known = {f.name for f in fields(cls)}
        kept = {key: value for key, value in values.items() if key in known}
        if "trackers" in kept:  # a JSON list
            kept["trackers"] = tuple(kept["trackers"])
        augment = kept.pop("augment", {}) or {}
        if not isinstance(augment, dict):
            raise FastsegError(f"augment {augment!r}: expected a mapping of augmentation fields")
        augment_known = {f.name for f in fields(AugmentConfig)}
        augment = {
            key: tuple(value) if isinstance(value, list) else value
            for key, value in augment.items()
            if key in augment_known
        }
        return cls(**kept, augment=AugmentConfig(**augment))


# What each field may hold: ("int", low, high) and ("float", low, high) are inclusive ranges of
# finite numbers ("float>" excludes the low end, "float<" the high end), "bool", "str", "str?"
# (or None), "names" (a tuple of strings), "pair" (two positive finite numbers, low <= high), or
# a tuple of choices.
# Ranges are generous: they refuse what cannot work (a negative epoch count, an image side of
# 200,000), not what is merely unusual.
_LIMITS: dict[str, Any] = {
    "data": "str", "out": "str", "recipe": ("fast", "seed"), "train_set": TRAIN_SETS,
    "size": ("int", 32, 8192), "crop_size": ("int", 0, 8192), "batch_size": ("int", 1, 65536),
    "epochs": ("int", 1, 100_000), "patience": ("int", 1, 100_000), "lr": ("float>", 0, 10.0),
    "encoder": "str", "loss": LOSSES,
    "encoder_lr_ratio": ("float>", 0, 1000.0), "weight_decay": ("float", 0, 10.0),
    "decouple_weight_decay": "bool", "eps": ("float>", 0, 1.0), "beta2": ("float<", 0, 1.0),
    "l1": ("float", 0, 1.0), "class_weights": "str", "pretrained": "bool", "encoder_weights": "str?",
    "freeze_epochs": ("int", 0, 100_000), "keep": KEEP_RULES, "device": "str",
    "seed": ("int", -(2**63), 2**63 - 1), "split_seed": ("int", -(2**63), 2**63 - 1),
    "num_workers": ("int", -1, MAX_LOADER_WORKERS), "compile": "bool", "trackers": "names",
    "augment": "augment", "augment.rotate_degrees": ("float", 0, 180.0),
    "augment.translate_fraction": ("float", 0, 1.0), "augment.scale_range": "pair",
    "augment.blur_sigma": "pair", "augment.color_jitter": ("float", 0, 1.0),
    "augment.brightness_contrast": ("float", 0, 1.0), "augment.random_scale_crop": "bool",
    "augment.crop_scale": "pair",
}  # fmt: skip


def field_problem(name: str, value: Any) -> str | None:
    """Why `value` cannot be the field `name` (`augment.x` for augmentation fields), or None.
    Probabilities (`augment.*_p`) are in [0, 1]."""
    import math

    probability = name.startswith("augment.") and name.endswith("_p")
    limit = _LIMITS.get(name, ("float", 0, 1.0) if probability else None)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if limit is None:
        return None
    if limit == "augment":
        return f"augment {value!r}: expected a mapping of augmentation fields"
    if limit == "bool":
        return None if isinstance(value, bool) else f"{name} {value!r}: expected true or false"
    if limit == "str" or (limit == "str?" and value is not None):
        return None if isinstance(value, str) else f"{name} {value!r}: expected text"
    if limit == "str?":
        return None
    if limit == "names":
        ok = isinstance(value, (tuple, list)) and all(isinstance(item, str) for item in value)
        return None if ok else f"{name} {value!r}: expected a list of names"
    if limit == "pair":
        ok = (isinstance(value, (tuple, list)) and len(value) == 2
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                      for v in value) and value[0] <= value[1])  # fmt: skip
        return None if ok else f"{name} {value!r}: expected two positive numbers [low, high], low <= high"
    if isinstance(limit, tuple) and limit[0] in ("int", "float", "float>", "float<"):
        kind, low, high = limit
        whole = kind == "int"
        if not number or (whole and not isinstance(value, int)) or not math.isfinite(value):
            expected = "a whole number" if whole else "a number"
            return f"{name} {value!r}: expected {expected} from {low} to {high}"
        open_end = (kind == "float>" and value <= low) or (kind == "float<" and value >= high)
        if value < low or value > high or open_end:
            above = "above" if kind == "float>" else "from"
            below = "below " if kind == "float<" else ""
            return f"{name} {value!r}: out of range, expected {above} {low} to {below}{high}"
        return None
    return None if value in limit else f"{name} {value!r}: choose one of {', '.join(map(str, limit))}"
