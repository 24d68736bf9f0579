"""Named training recipes: presets of `TrainConfig` that `fastseg train --recipe NAME` starts from.

- seed: the seed project's recipe, value for value, to reproduce its 87.95 % test pixel
  accuracy (VOC train, 224² squish, Adam 1e-4 with torch's L2, balanced class weights, L1 1e-6,
  300 epochs, patience 30).
- fast (the default): the changes that segmentation references make on VOC and that pay off on a
  GPU, each for a reason:
  * SBD "trainaug" (10,582 images instead of 1,464): seven times the labelled data, the
    standard VOC training set since FCN and DeepLab;
  * random-scale crops (longer side 512 x 0.5-2, 320² crop) instead of a 224² squish: objects
    keep their shape and are seen at many scales, and evaluation letterboxes at 512, which is
    VOC's native resolution (images are at most 500 px);
  * AdamW, lr 1e-3 for the new decoder and 1e-4 for the pretrained encoder (fastai's
    discriminative learning rates), weight decay 1e-2;
  * no class weights and no L1: "balanced" weights trade background precision for rare-class
    recall, which costs pixel accuracy; L1 at 1e-6 barely moves a 25M-parameter model;
  * cross-entropy, not smp's soft Dice loss, although Dice scored +0.05 to +0.07 validation mIoU
    on CamVid (every seed and setting tried): on the demo's VOC-format data (VOC's 21 classes,
    five of them drawn, background on most pixels) Dice left validation pixel accuracy at 0.23,
    where cross-entropy reaches 0.985. smp's Dice gives a class absent from the batch no loss, so
    a class the data never shows is never pushed down: one of them took the background. VOC
    shows 1-3 of its 21 classes per image, so most classes are absent from most of its images;
    how Dice fares there is not measured (VOC cannot be downloaded here), and a default must not
    gamble on it. `--loss dice` is there for data whose classes all show up in most batches
    (benchmarks/README.md, "Encoders and losses");
  * the seed's affine jitter replaced by the crops (they already translate and scale), with a
    milder rotation; flips, blur and colour jitter kept;
  * 40 epochs (423k crops) run to the end, and model.pth holds the final, annealed epoch's
    weights, where the seed kept the best validation epoch and stopped after 30 without a
    better one. On CamVid the best-validation epoch of a 12-epoch run was epoch 6, which scored
    0.160 test mIoU against 0.278 for the same run's final weights: a small validation set picks
    a lucky mid-schedule epoch, not the model that generalises (benchmarks/README.md, "Learning
    on real photos").
  bf16 autocast and channels_last come with any CUDA run; `--compile` is opt-in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any, NamedTuple

from fastseg.errors import OptionError
from fastseg.training.config import AugmentConfig, TrainConfig


def seed_recipe() -> TrainConfig:
    """The seed project's recipe: `TrainConfig`'s own defaults."""
    return TrainConfig(recipe="seed")


def fast_recipe() -> TrainConfig:
    """fastseg's default: the seed's model, retrained the way VOC references do (module docstring)."""
    return TrainConfig(
        recipe="fast",
        train_set="trainaug",
        size=512,
        crop_size=320,
        batch_size=32,
        epochs=40,
        patience=20,  # only with --keep best
        keep="final",
        lr=1e-3,
        encoder_lr_ratio=0.1,
        weight_decay=1e-2,
        decouple_weight_decay=True,
        l1=0.0,
        class_weights="none",
        augment=AugmentConfig(
            random_scale_crop=True,
            crop_scale=(0.5, 2.0),
            rotate_p=0.2,
            rotate_degrees=10.0,
            translate_p=0.0,
            scale_p=0.0,
        ),
    )


RECIPES: dict[str, Callable[[], TrainConfig]] = {"fast": fast_recipe, "seed": seed_recipe}
DEFAULT_RECIPE = "fast"
_AUGMENT_FIELDS = {field.name for field in fields(AugmentConfig)}


def recipe(name: str = DEFAULT_RECIPE, **overrides: Any) -> TrainConfig:
    """The preset `name` with `overrides` (the options a user gave) applied, checked.

    An `AugmentConfig` field name (e.g. `random_scale_crop`) overrides that field of the preset's
    augmentation. Values left out follow the ones given: a smaller `size` alone shrinks the
    preset's crop to fit it, while a crop given explicitly is taken as it is (and refused by
    `TrainConfig.check` if it is larger than the input).
    """
    if name not in RECIPES:
        raise OptionError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    preset = RECIPES[name]()
    augment = {key: overrides.pop(key) for key in list(overrides) if key in _AUGMENT_FIELDS}
    if augment:
        overrides["augment"] = replace(preset.augment, **augment)
    config = replace(preset, **overrides)
    config.check_fields()  # types and ranges before any arithmetic on them
    refuse_contradictions(overrides, config)
    if "crop_size" not in overrides and config.augment.random_scale_crop and config.train_size > config.size:
        config = replace(config, crop_size=config.size)
    config.check()
    return config


class Needs(NamedTuple):
    """An option that acts only where another one lets it: given while the other stops it, one
    of the two was dropped without a word (the weights file won over `--no-pretrained`)."""

    option: str  # the field given, which acts when truthy (a crop of 0, a file of None: not given)
    spelling: str  # how a user writes it
    other: str  # the field, given or the recipe's, that stops it
    stops: Any  # the other field's value that does
    other_spelling: str
    needs: str  # what the option does that the other turns off


# Every pair of train's options where one silently undoes the other. The rest were looked at
# and act on their own: --encoder-lr-ratio and --freeze-epochs still shape a random encoder's
# training, --compile also runs on the CPU; --patience under --keep final is cli/train.py's note
# (scripts pass a large one to mean "no early stop"); --loss lovasz with class weights and
# --train-set with a dataset.yaml are refused where those values are known.
CONTRADICTIONS = (
    Needs("crop_size", "--crop-size", "random_scale_crop", False, "--squish", "needs random-scale crops"),
    Needs("encoder_weights", "--encoder-weights FILE", "pretrained", False, "--no-pretrained",
          "loads pretrained encoder weights"),
)  # fmt: skip


def refuse_contradictions(given: dict[str, Any], config: TrainConfig) -> None:
    """One usage line naming both options of a `CONTRADICTIONS` pair, wherever their values came
    from (the command line, a --config YAML file or a run's config.json: all are `given` here).
    Checked on what was given, not in `TrainConfig.check`: a run started with such a pair by an
    earlier fastseg still resumes (its checkpoint holds the weights)."""
    for rule in CONTRADICTIONS:
        other = getattr(config.augment if rule.other in _AUGMENT_FIELDS else config, rule.other)
        if given.get(rule.option) and other == rule.stops:
            raise OptionError(f"{rule.spelling} {rule.needs}, which {rule.other_spelling} turns off: the two "
                              "contradict each other; give one of them (on the command line or in the "
                              "--config file)")  # fmt: skip


def recipe_default(field_name: str) -> str:
    """`fast: X, seed: Y` (or just `X` where they agree), for `--help`."""
    values = {}
    for name, make in RECIPES.items():
        config = make()
        values[name] = getattr(config.augment if field_name in _AUGMENT_FIELDS else config, field_name)
    if len(set(map(repr, values.values()))) == 1:
        return str(next(iter(values.values())))
    return ", ".join(f"{name}: {value}" for name, value in values.items())
