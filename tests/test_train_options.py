"""`fastseg train --config FILE` and what training prints where: plain lines in a log file,
nothing but the summary with --quiet, every epoch in RUN/train.log."""

import json
import re

import pytest
from click.testing import CliRunner

from cli.main import main
from fastseg.training.losses import WeightedCrossEntropy

EPOCH_LINE = re.compile(
    r"^epoch (\d+) \(2 planned\)  train_loss \d+\.\d{3}  train_pixel_accuracy \d\.\d{3}  "
    r"train_miou \d\.\d{3}  valid_loss \d+\.\d{3}  valid_pixel_accuracy \d\.\d{3}  "
    r"valid_miou \d\.\d{3}  lr \d\.\d\de-\d\d  time \d\d:\d\d( {2}best)?$"
)


def tiny(voc_root, run_dir, *extra: str) -> list[str]:
    return ["train", "--data", str(voc_root), "--out", str(run_dir), "--recipe", "seed", "--size", "48",
            "--batch-size", "8", "--no-pretrained", "--num-workers", "0", "--lr", "3e-3", "--seed", "3",
            *extra]  # fmt: skip


@pytest.fixture
def first_losses(monkeypatch) -> list[float]:
    """The loss of every training step's first batch, in order (each fit's first call)."""
    losses = []
    original = WeightedCrossEntropy.forward

    def record(self, logits, target):
        loss = original(self, logits, target)
        if logits.requires_grad:  # training batches only
            losses.append(loss.item())
        return loss

    monkeypatch.setattr(WeightedCrossEntropy, "forward", record)
    return losses


@pytest.mark.slow
def test_a_runs_config_json_reproduces_the_run(voc_root, tmp_path, first_losses):
    first, second = tmp_path / "first", tmp_path / "second"
    result = CliRunner().invoke(main, tiny(voc_root, first, "--epochs", "1", "--l1", "0", "--squish"))
    assert result.exit_code == 0, result.output
    first_run_losses = list(first_losses)
    first_losses.clear()
    result = CliRunner().invoke(main, ["train", "--config", str(first / "config.json"), "--out", str(second)])
    assert result.exit_code == 0, result.output
    configs = [json.loads((run / "config.json").read_text())["train"] for run in (first, second)]
    assert configs[1].pop("out") == str(second) and configs[0].pop("out") == str(first)
    assert configs[0] == configs[1] and configs[0]["seed"] == 3 and configs[0]["l1"] == 0
    assert (first / "split.json").read_text() == (second / "split.json").read_text()
    assert len(first_run_losses) == 2  # 16 training images, batches of 8
    assert first_losses[0] == first_run_losses[0]  # bit for bit, same seed


def test_yaml_values_apply_and_flags_given_win(voc_root, tmp_path, monkeypatch):
    import fastseg.training.trainer

    seen = {}
    monkeypatch.setattr(
        fastseg.training.trainer, "train", lambda config, run_dir, **kw: seen.setdefault("c", config)
    )
    config_file = tmp_path / "fast.yaml"
    config_file.write_text(
        f"data: {voc_root}\nrecipe: seed\nlr: 0.01\nepochs: 7\nseed: 5\naugment:\n  flip_p: 0.1\n"
    )
    result = CliRunner().invoke(main, ["train", "--config", str(config_file), "--lr", "0.002", "--out",
                                       str(tmp_path / "run")])  # fmt: skip
    config = seen["c"]
    assert (config.recipe, config.lr, config.epochs, config.seed) == ("seed", 0.002, 7, 5)
    assert config.augment.flip_p == 0.1 and config.augment.rotate_degrees == 45.0  # the rest: the recipe's
    assert "run folder" in result.output


def test_unknown_config_keys_are_one_line_naming_them(voc_root, tmp_path):
    config_file = tmp_path / "typo.yaml"
    config_file.write_text(f"data: {voc_root}\nlearning_rate: 0.1\nepoch: 3\naugment:\n  flip: 0.5\n")
    result = CliRunner().invoke(main, ["train", "--config", str(config_file), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"Error: {config_file}: unknown keys: epoch, learning_rate, augment.flip"
    ]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_log_file_gets_one_plain_line_per_epoch_and_train_log_too(voc_root, tmp_path):
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(main, tiny(voc_root, run_dir, "--epochs", "2"))  # not a terminal
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "\r" not in result.output and "\x1b" not in result.output
    assert lines[0] == f"run folder: {run_dir}"
    assert [EPOCH_LINE.match(line).group(1) for line in lines[1:3]] == ["0", "1"]
    assert lines[1].endswith("  best")  # the first epoch is always the best so far
    assert re.fullmatch(r"done: 2 epochs, best validation mIoU \d\.\d{3} \(epoch [01]\)", lines[3])
    assert lines[4].startswith("model: ")
    assert len(lines) == 5  # no "Better model found" from fastai
    logged = (run_dir / "train.log").read_text().splitlines()
    assert logged == lines[1:3]  # fastseg's lines only: fastai's "Better model found" was there before


@pytest.mark.slow
def test_quiet_prints_only_the_summary(voc_root, tmp_path):
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(main, tiny(voc_root, run_dir, "--epochs", "2", "--quiet"))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert (
        len(lines) == 2
        and lines[0].startswith("done: 2 epochs")
        and lines[1] == f"model: {run_dir / 'model.pth'}"
    )
    assert (
        len([line for line in (run_dir / "train.log").read_text().splitlines() if EPOCH_LINE.match(line)])
        == 2
    )


def test_a_run_config_of_an_earlier_version_drops_the_fields_it_no_longer_has(tmp_path):
    """A config.json is fastseg's own writing: `beta1` (removed in 0.1) is history, not a typo;
    the same key in a hand-written YAML is refused."""
    from fastseg.errors import FastsegError
    from fastseg.training.config_file import read_config_file
    from fastseg.training.recipes import recipe

    values = recipe("seed").to_dict()
    (tmp_path / "config.json").write_text(json.dumps({"train": {**values, "beta1": 0.9}}))
    assert "beta1" not in read_config_file(tmp_path / "config.json")
    (tmp_path / "mine.yaml").write_text("beta1: 0.9\n")
    with pytest.raises(FastsegError, match="mine.yaml: unknown keys: beta1"):
        read_config_file(tmp_path / "mine.yaml")


@pytest.mark.slow
def test_demo_into_a_log_file_is_plain_lines(tmp_path):
    """`make demo > log` once filled the log with progress-bar fragments."""
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo"), "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert "\r" not in result.output and "\x1b" not in result.output and "█" not in result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("generating the demo data set") and lines[1].startswith("training into")
    assert [match.group(1) for match in map(EPOCH_LINE.match, lines[2:4]) if match] == ["0", "1"]
    assert lines[4].startswith("segmenting every image") and lines[5].startswith("reporting on the test")
    assert lines[6] == f"data: {tmp_path / 'demo' / 'data' / 'VOCdevkit' / 'VOC2012'}"
    assert lines[-1].startswith("test half (16 images, original size): pixel accuracy ")


def test_more_loader_workers_than_this_machine_holds_is_refused_first(voc_root, tmp_path, monkeypatch):
    """`--num-workers` (or config.json's num_workers, on resume from a bigger machine) above 4 a
    core: one line before anything is made, naming the option to give."""
    from fastseg.launch import device

    monkeypatch.setattr(device, "available_cores", lambda: 2)
    result = CliRunner().invoke(main, ["train", "--data", str(voc_root), "--out", str(tmp_path / "run"),
                                       "--num-workers", "9", "--epochs", "1", "--size", "32"])  # fmt: skip
    assert result.exit_code in (1, 2) and "Traceback" not in result.output, result.output
    assert result.output.strip().splitlines()[-1] == (
        "Error: --num-workers 9: at most 8 here (4 a core, 2 cores); each worker is a process of its own"
    )
    assert not (tmp_path / "run").exists()
