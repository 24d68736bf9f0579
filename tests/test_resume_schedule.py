"""A resumed run trains the schedule it was given (issue #19, item 1).

A run killed after any epoch and resumed must train exactly what the uninterrupted run trains:
every batch's learning rate and momentum (each parameter group's, read from `learn.opt.hypers`
as the optimizer steps) and, since data order and augmentation are seeded per epoch, the final
weights, bit for bit. The kill tests in test_training_faults.py check the files; this checks
the training. Before the fix a 4-epoch run resumed after epoch 0 trained epochs 1-3 at
5.56e-4, 7.66e-5, 7.66e-5 instead of 9.72e-4, 5.56e-4, 7.66e-5 (fastai set `pct_train` from
the shifted epoch number).
"""

import pytest
import torch
from fastai.callback.core import Callback

from fastseg.runs.folder import RunFolder
from fastseg.training.recipes import recipe
from fastseg.training.trainer import train

EPOCHS = 4


class Hypers(Callback):
    """`(epoch, iteration, [(lr, mom) per parameter group])` of every training batch, as stepped."""

    order = 100

    def __init__(self):
        self.rows = []

    def after_batch(self):
        if self.training:
            groups = [(hyper["lr"], hyper["mom"]) for hyper in self.learn.opt.hypers]
            self.rows.append((self.learn.epoch, self.learn.iter, groups))


class Killed(Exception):
    pass


class KillAfter(Callback):
    """Dies after epoch `epoch` is checkpointed, as `kill -9` would between two epochs."""

    order = 100  # after ResumableCheckpoint (64) wrote last.pth

    def __init__(self, epoch):
        self.epoch = epoch

    def after_epoch(self):
        if self.learn.epoch == self.epoch:
            raise Killed(f"killed after epoch {self.epoch}")


def config_for(voc_root, run_dir, **overrides):
    return recipe("fast", data=str(voc_root), out=str(run_dir), train_set="train", size=32, crop_size=32,
                  batch_size=4, epochs=EPOCHS, pretrained=False, num_workers=0, seed=3, keep="final",
                  encoder_lr_ratio=0.1,  # two parameter groups on two schedules
                  **overrides)  # fmt: skip


def weights(run_dir):
    return torch.load(run_dir / "model.pth", weights_only=True)["state_dict"]


class LastWeights(Callback):
    order = 100

    def after_epoch(self):
        self.state = {name: tensor.detach().clone() for name, tensor in self.learn.model.state_dict().items()}


@pytest.fixture(scope="module")
def uninterrupted(voc_root, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    hypers, last = Hypers(), LastWeights()
    result = train(config_for(voc_root, run_dir), run_dir, show_progress=False, callbacks=[hypers, last])
    assert result.kept == "final" and result.best_epoch == EPOCHS - 1
    saved = weights(run_dir)
    assert all(torch.equal(saved[name], last.state[name]) for name in saved)  # --keep final: the last epoch
    return hypers.rows, saved


@pytest.mark.slow
@pytest.mark.parametrize("killed_after", range(EPOCHS - 1))
def test_a_resumed_run_trains_the_uninterrupted_schedule_and_weights(voc_root, tmp_path, uninterrupted,
                                                                     killed_after):  # fmt: skip
    rows, final = uninterrupted
    run_dir = tmp_path / "run"
    before = Hypers()
    with pytest.raises(Killed):
        train(config_for(voc_root, run_dir), run_dir, show_progress=False,
              callbacks=[before, KillAfter(killed_after)])  # fmt: skip
    after = Hypers()
    resumed_config = RunFolder(run_dir).read_train_config()
    train(resumed_config, run_dir, resume=True, show_progress=False, callbacks=[after])
    assert [row[:2] for row in before.rows + after.rows] == [row[:2] for row in rows]
    assert before.rows + after.rows == rows  # every batch's lr and momentum, exactly
    resumed = weights(run_dir)
    assert resumed.keys() == final.keys()
    assert all(torch.equal(resumed[name], final[name]) for name in final)


def test_the_schedule_is_one_cycle_over_the_whole_run(uninterrupted):
    """The uninterrupted run itself: one warm-up then one annealing over all epochs, so the
    comparison above compares against the schedule the run was given."""
    rows, _ = uninterrupted
    decoder = [groups[-1][0] for _, _, groups in rows]
    peak = decoder.index(max(decoder))
    assert 0.2 < peak / len(decoder) < 0.4  # pct_start 0.3
    assert decoder[:peak] == sorted(decoder[:peak]) and decoder[peak:] == sorted(decoder[peak:], reverse=True)
    encoder = [groups[0][0] for _, _, groups in rows]
    assert encoder == pytest.approx([lr * 0.1 for lr in decoder])  # the encoder's ratio
