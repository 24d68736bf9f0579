"""`--recipe seed|fast`: the seed's values kept exactly, the fast default, and options overriding."""

import json

import pytest
from click.testing import CliRunner

from cli.main import main
from fastseg.errors import FastsegError
from fastseg.training.config import TrainConfig
from fastseg.training.recipes import RECIPES, recipe, recipe_default


def test_seed_recipe_is_the_seed_projects_recipe():
    """Values from the seed's code (shared/seed/NOTES.md): what reproducing 87.95 % depends on."""
    seed = recipe("seed")
    assert (seed.train_set, seed.size, seed.batch_size, seed.epochs, seed.patience) == (
        "train",
        224,
        32,
        300,
        30,
    )
    assert (seed.lr, seed.encoder_lr_ratio, seed.weight_decay, seed.decouple_weight_decay) == (
        1e-4,
        1,
        0,
        False,
    )
    assert (seed.eps, seed.beta2, seed.l1, seed.class_weights) == (1e-8, 0.999, 1e-6, "balanced")
    assert seed.resize == "squish" and seed.train_size == 224
    augment = seed.augment
    assert (augment.flip_p, augment.rotate_p, augment.rotate_degrees) == (0.5, 0.3, 45)
    assert (augment.translate_p, augment.translate_fraction, augment.scale_p) == (0.3, 0.15, 0.3)
    assert (augment.blur_p, augment.color_jitter_p, augment.brightness_contrast_p) == (0.15, 0.15, 0.15)
    assert seed == TrainConfig()  # the dataclass defaults are the seed's recipe


def test_fast_recipe_trains_on_crops_and_evaluates_letterboxed():
    fast = recipe("fast")
    assert fast.recipe == "fast" and fast.train_set == "trainaug"
    assert fast.resize == "letterbox" and (fast.size, fast.train_size) == (512, 320)
    assert fast.decouple_weight_decay and fast.encoder_lr_ratio < 1
    assert fast.epochs * 10_582 < recipe("seed").epochs * 1_464 * 1.1  # no more samples than the seed saw


def test_overrides_reach_the_config_and_its_augmentation():
    config = recipe("fast", lr=5e-4, random_scale_crop=False, flip_p=0.0)
    assert config.lr == 5e-4 and config.resize == "squish" and config.augment.flip_p == 0
    assert config.train_set == "trainaug" and config.augment.blur_p == recipe("fast").augment.blur_p
    with pytest.raises(FastsegError, match="unknown recipe 'best'"):
        recipe("best")


def test_config_round_trip_keeps_the_recipe_fields():
    config = recipe("fast", data="d", out="o")
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_help_default_shows_each_recipe():
    assert recipe_default("epochs") == "fast: 40, seed: 300"
    assert recipe_default("random_scale_crop") == "fast: True, seed: False"
    assert recipe_default("eps") == "1e-08"
    help_text = CliRunner().invoke(main, ["train", "--help"]).output
    assert "--recipe [fast|seed]" in help_text and "fast: 40, seed: 300" in help_text


@pytest.fixture
def captured(monkeypatch):
    """The TrainConfig the CLI hands to `train`, without training."""
    import fastseg.training.trainer

    seen = []

    def fake_train(config, run_dir, **kwargs):
        seen.append(config)
        raise fastseg.training.trainer.FastsegError("stopped by the test")

    monkeypatch.setattr(fastseg.training.trainer, "train", fake_train)
    return seen


@pytest.mark.parametrize("name", list(RECIPES))
def test_cli_without_options_takes_the_recipe_exactly(captured, tmp_path, name):
    arguments = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(main, arguments + (["--recipe", name] if name != "fast" else []))
    assert result.exit_code == 1 and "stopped by the test" in result.output
    assert captured[0] == recipe(name, data=str(tmp_path), out=str(tmp_path / "run"))


def test_cli_options_override_the_recipe(captured, tmp_path):
    arguments = ["train", "--data", str(tmp_path), "--recipe", "seed", "--lr", "0.01", "--random-scale-crop",
                 "--crop-size", "96", "--encoder-lr-ratio", "0.5", "--no-pretrained"]  # fmt: skip
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 1 and "stopped by the test" in result.output
    config = captured[0]
    assert (config.recipe, config.lr, config.encoder_lr_ratio, config.pretrained) == (
        "seed",
        0.01,
        0.5,
        False,
    )
    assert config.resize == "letterbox" and config.train_size == 96
    assert config.epochs == 300 and config.class_weights == "balanced"  # the rest stays the seed's


def test_default_recipe_without_sbd_says_what_to_do_and_creates_nothing(voc_root, tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--data", str(voc_root), "--out", str(run), "--quiet"])
    assert result.exit_code == 1
    error = result.output.strip().splitlines()[-1]
    assert "trainaug.txt: list file not found" in error
    assert "download --sbd" in error and "--train-set train" in error
    assert "Traceback" not in result.output and not run.exists()


def test_a_smaller_size_alone_shrinks_the_recipes_crop():
    """`--size 64` once failed with "--crop-size 320 is larger than --size 64" for a user who
    never gave a crop: options left out follow the ones given."""
    assert recipe("fast", size=64).train_size == 64
    assert recipe("fast", size=400).train_size == 320  # the recipe's crop still fits
    assert recipe("fast", size=400, crop_size=200).train_size == 200


def test_crop_given_larger_than_the_input_is_one_line_before_anything_exists(voc_root, tmp_path):
    run = tmp_path / "run"
    arguments = ["train", "--data", str(voc_root), "--out", str(run), "--train-set", "train", "--size", "64",
                 "--crop-size", "320"]  # fmt: skip
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--crop-size 320 is larger than --size 64" in result.output.strip().splitlines()[-1]
    assert not run.exists()


def test_show_data_draws_the_recipes_inputs(voc_root, tmp_path, monkeypatch):
    """show-data hands the recipe's loaders to the figure code: fast crops (capped at --size) and
    letterboxes, whose padding is void along the bottom or right of a non-square image; seed squishes."""
    import fastseg.training.samples

    seen = {}

    def capture(dls, out, rows=4, classes=None):
        seen["train"], seen["valid"] = dls.train.one_batch()[1], dls.valid.one_batch()[1]
        return []

    monkeypatch.setattr(fastseg.training.samples, "save_dataset_samples", capture)
    letterbox_padding = []
    for name in ("fast", "seed"):
        arguments = ["show-data", "--data", str(voc_root), "--out", str(tmp_path), "--size", "48",
                     "--rows", "4", "--recipe", name]  # fmt: skip
        result = CliRunner().invoke(main, arguments)
        assert result.exit_code == 0, result.output
        assert seen["train"].shape == (4, 48, 48) and seen["valid"].shape == (4, 48, 48)
        void = seen["valid"] == 255
        padded = void[:, -1, :].all(dim=1) | void[:, :, -1].all(dim=1)  # a whole last row or column
        letterbox_padding.append(bool(padded.any()))
    assert letterbox_padding == [True, False]


def test_crop_size_with_a_squish_is_a_usage_error(captured, tmp_path):
    arguments = ["train", "--data", str(tmp_path), "--squish", "--crop-size", "64"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 2 and "--crop-size needs random-scale crops" in result.output
    assert captured == []


def test_runs_from_before_letterboxing_are_not_resumed_silently(tmp_path):
    from fastseg.errors import FastsegError
    from fastseg.runs.folder import RunFolder

    old = recipe("fast").to_dict()
    del old["crop_size"]  # written by the version whose crops scaled the shorter side
    (tmp_path / "config.json").write_text(json.dumps({"train": old}))
    with pytest.raises(FastsegError, match="earlier fastseg .* cannot be resumed"):
        RunFolder(tmp_path).read_train_config()
    old["augment"]["random_scale_crop"] = False  # a squish run of that version resumes as it was
    (tmp_path / "config.json").write_text(json.dumps({"train": old}))
    assert RunFolder(tmp_path).read_train_config().resize == "squish"


def test_the_encoder_keeps_its_tenth_of_the_rate_from_scratch_too():
    """Issue #20 asked whether a random encoder should train at the full rate: on CamVid (seed 0,
    12 epochs, lr 3e-3) it reached val mIoU 0.27 at epoch 8 against 0.37 at a tenth, so the
    recipe's ratio holds with or without pretrained weights (benchmarks/README.md)."""
    assert recipe("fast").encoder_lr_ratio == recipe("fast", pretrained=False).encoder_lr_ratio == 0.1


def test_the_fast_recipe_keeps_the_final_epoch_and_the_seed_the_best():
    assert recipe("fast").keep == "final" and recipe("seed").keep == "best"
