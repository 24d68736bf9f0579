"""`--loss`: every loss ignores void (255), reaches its minimum on a perfect prediction, stays
finite on an all-void batch, and uses the class weights where it has a meaning for them."""

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from cli.main import main
from fastseg.errors import FastsegError
from fastseg.training.config import LOSSES, TrainConfig
from fastseg.training.losses import WeightedCrossEntropy, build_loss
from fastseg.training.recipes import recipe

pytest.importorskip("segmentation_models_pytorch")

VOID = 255
CLASSES = 4


def batch(seed: int = 0, void_fraction: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits `(2, 4, 8, 8)` and a target with every class and some void pixels."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, CLASSES, 8, 8, generator=generator)
    target = torch.randint(0, CLASSES, (2, 8, 8), generator=generator)
    target[torch.rand(2, 8, 8, generator=generator) < void_fraction] = VOID
    return logits, target


def perfect_logits(target: torch.Tensor, margin: float = 30.0) -> torch.Tensor:
    """+margin for the true class, -margin for the others (void pixels: class 0)."""
    one_hot = F.one_hot(target.where(target != VOID, 0), CLASSES).permute(0, 3, 1, 2).float()
    return margin * (2 * one_hot - 1)


@pytest.mark.parametrize("name", LOSSES)
def test_void_pixels_change_nothing_and_get_no_gradient(name):
    logits, target = batch()
    void = (target == VOID).unsqueeze(1).expand_as(logits)
    assert void.any() and (~void).any()
    loss = build_loss(name, torch.tensor([1.0, 2.0, 0.5, 1.5]))
    changed = logits.clone()
    changed[void] = torch.randn(int(void.sum())) * 50  # anything at all at void pixels
    logits.requires_grad_(True)
    value = loss(logits, target)
    value.backward()
    assert value.item() > 0
    assert loss(changed, target).item() == pytest.approx(value.item(), rel=1e-6, abs=1e-7)
    assert logits.grad[void].abs().max().item() == 0
    assert logits.grad[~void].abs().max().item() > 0


@pytest.mark.parametrize("name", LOSSES)
def test_a_perfect_prediction_gives_the_minimum_zero(name):
    logits, target = batch(1)
    loss = build_loss(name, torch.tensor([1.0, 2.0, 0.5, 1.5]))
    assert loss(perfect_logits(target), target).item() == pytest.approx(0, abs=1e-4)
    assert loss(logits, target).item() > 0.1  # a random prediction is far from it


@pytest.mark.parametrize("name", LOSSES)
def test_an_all_void_batch_is_zero_with_zero_gradient(name):
    logits, _ = batch(2)
    target = torch.full((2, 8, 8), VOID)
    logits.requires_grad_(True)
    value = build_loss(name, torch.ones(CLASSES))(logits, target)
    value.backward()
    assert value.shape == () and value.item() == 0
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().max().item() == 0


@pytest.mark.parametrize("name", ["ce", "dice", "focal", "ce+dice"])
def test_class_weights_weigh_the_classes(name):
    """Class 3 predicted wrongly, the others perfectly: weighting class 3 up raises the loss,
    weighting it down lowers it."""
    _, target = batch(3)
    logits = perfect_logits(target, margin=3.0)
    logits[:, 3] = -logits[:, 3]  # wrong about class 3 everywhere
    even = build_loss(name, torch.ones(CLASSES))(logits, target).item()
    up = build_loss(name, torch.tensor([1.0, 1.0, 1.0, 4.0]))(logits, target).item()
    down = build_loss(name, torch.tensor([1.0, 1.0, 1.0, 0.25]))(logits, target).item()
    assert down < even < up


def test_ce_is_the_seeds_weighted_cross_entropy_bit_for_bit():
    logits, target = batch(4)
    weight = torch.tensor([1.0, 2.0, 0.5, 1.5])
    loss = build_loss("ce", weight)
    assert type(loss) is WeightedCrossEntropy
    expected = F.cross_entropy(logits, target, weight=weight, ignore_index=VOID)
    assert torch.equal(loss(logits, target), expected)


def test_ce_plus_dice_is_the_sum_of_its_terms():
    logits, target = batch(5)
    weight = torch.tensor([1.0, 2.0, 0.5, 1.5])
    parts = build_loss("ce", weight)(logits, target) + build_loss("dice", weight)(logits, target)
    assert build_loss("ce+dice", weight)(logits, target).item() == pytest.approx(parts.item())


def test_lovasz_with_class_weights_is_one_line():
    with pytest.raises(FastsegError, match="--loss lovasz has no per-class weights.*--class-weights none"):
        recipe("seed", loss="lovasz")
    assert recipe("seed", loss="lovasz", class_weights="none").loss == "lovasz"
    # both cross-entropy: Dice gained on CamVid but collapsed the demo's VOC-format data (recipes.py)
    assert (recipe("seed").loss, recipe("fast").loss) == ("ce", "ce")
    assert recipe("fast", loss="lovasz").loss == "lovasz"  # fast has no class weights to refuse


def test_train_refuses_lovasz_with_weights_and_an_unknown_loss(voc_root, tmp_path):
    common = ["train", "--data", str(voc_root), "--out", str(tmp_path / "run"), "--recipe", "seed"]
    result = CliRunner().invoke(main, [*common, "--loss", "lovasz"])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "--class-weights none" in result.output
    assert CliRunner().invoke(main, [*common, "--loss", "hinge"]).exit_code == 2
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_train_with_an_smp_loss_records_it_and_its_losses_are_finite(voc_root, tmp_path):
    import json

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors; a busy machine's second OpenMP thread only waits
    try:
        run = tmp_path / "run"
        result = CliRunner().invoke(main, [
            "train", "--data", str(voc_root), "--out", str(run), "--recipe", "seed", "--size", "32",
            "--batch-size", "8", "--epochs", "2", "--no-pretrained", "--num-workers", "0", "--device", "cpu",
            "--encoder", "mobilenetv3_large_100", "--loss", "ce+dice", "--lr", "3e-3", "--quiet",
        ])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["train"]["loss"] == "ce+dice"
    history = (run / "history.csv").read_text().splitlines()
    header, rows = history[0].split(","), [line.split(",") for line in history[1:]]
    losses = [float(row[header.index("train_loss")]) for row in rows]
    assert len(losses) == 2 and all(0 < loss < 10 for loss in losses)


def test_a_run_resumes_with_the_loss_it_recorded_and_one_recorded_before_losses_with_cross_entropy():
    """`--resume` rebuilds the config from config.json, never from today's recipe: a run made
    with `--loss dice` goes on with Dice, and one made before `--loss` existed (no "loss" key)
    trained with cross-entropy and goes on with it, whatever the recipe's default becomes."""
    assert TrainConfig.from_dict(recipe("fast", loss="dice").to_dict()).loss == "dice"
    recorded = recipe("fast", loss="dice").to_dict()
    del recorded["loss"]
    assert TrainConfig.from_dict(recorded).loss == "ce"


def test_dice_warns_of_classes_the_training_masks_never_show():
    """smp's Dice gives an absent class no loss: on the demo one such class took the background
    (pixel accuracy 0.23). Cross-entropy trains them down, so only dice gets the note."""
    from fastseg.training.losses import absent_class_note

    names = ["background", "cat", "<b>dog</b>", "bi\nrd"]  # markup and a newline: still one line
    counts = np.array([[90, 10, 0, 0], [80, 0, 0, 0]])  # (images, classes): dog and bird never shown
    note = absent_class_note("dice", counts, names)
    assert note.startswith("--loss dice: 2 of 4 classes have no pixel in the training masks "
                           "('<b>dog</b>', 'bi\\nrd')")  # fmt: skip
    assert "--loss ce or ce+dice" in note and "\n" not in note
    assert absent_class_note("dice", np.array([[1, 1, 1, 1]]), names) is None  # every class shown
    for loss in ("ce", "ce+dice", "focal", "lovasz"):
        assert absent_class_note(loss, counts, names) is None
    many = [f"class{index}" for index in range(21)]
    shown = np.zeros((1, 21), int)
    shown[0, :3] = 5
    note = absent_class_note("dice", shown, many)
    assert "18 of 21 classes" in note
    assert "('class3', 'class4', 'class5', 'class6', 'class7' and 13 more)" in note


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["dice", "ce"])
def test_train_with_dice_on_data_that_never_shows_most_classes_says_so(voc_root, tmp_path, loss):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(main, [
            "train", "--data", str(voc_root), "--out", str(tmp_path / "run"), "--size", "32",
            "--batch-size", "8", "--epochs", "1", "--no-pretrained", "--num-workers", "0", "--device", "cpu",
            "--train-set", "train", "--loss", loss,
        ])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    # the generated VOC data draws 5 of VOC's 20 object classes: at least 15 are never shown
    warned = re.search(r"--loss dice: (\d+) of 21 classes have no pixel in the training masks", result.output)
    assert (warned is not None and int(warned.group(1)) >= 15) if loss == "dice" else warned is None
