"""`fastseg report`: every file, numbers consistent with one confusion matrix, ranking order."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from cli.main import main
from fastseg.data.split import seed_split
from fastseg.data.voc import find_voc
from fastseg.inference.ranking import rank
from fastseg.metrics import scores_from_matrix
from fastseg.model.checkpoint import save_model
from fastseg.model.config import ModelConfig
from fastseg.model.network import SegmentationModel
from fastseg.runs.folder import RunFolder

REPORT_FILES = (
    "metrics.json", "class_iou.png", "per_class.csv", "per_image.csv",
    "confusion_matrix.csv", "confusion_matrix.png",
    "predictions_random.png", "predictions_best.png", "predictions_worst.png", "report.html",
)  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(voc_root, tmp_path_factory):
    """A run folder as `fastseg train` leaves it, with an untrained model (metrics need not be good)."""
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    save_model(run / "model.pth", SegmentationModel().eval(), ModelConfig(), size=32)
    folder = find_voc(voc_root)
    RunFolder(run).write_split(seed_split(folder.ids("train"), folder.ids("val")))
    (run / "config.json").write_text(json.dumps({"train": {"data": str(voc_root)}}))
    (run / "class_weights.json").write_text(json.dumps({"weights": [1.0] * 21}))
    return run


@pytest.fixture(scope="module")
def report_dir(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    result = CliRunner().invoke(main, ["report", "--model", str(run_dir), "--out", str(out), "--quiet",
                                       "--num-workers", "0", "--precision", "fp32"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "mean IoU" in result.output and "pixel accuracy" in result.output
    return out


def test_every_report_file_is_written(report_dir):
    for name in REPORT_FILES:
        assert (report_dir / name).stat().st_size > 0, name
    html = (report_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5  # self-contained: no external files
    assert 'src="predictions' not in html


def test_metrics_agree_with_the_confusion_matrix_csv(report_dir, run_dir):
    matrix = pd.read_csv(report_dir / "confusion_matrix.csv", index_col=0)
    assert matrix.shape == (21, 21)
    scores = scores_from_matrix(torch.tensor(matrix.to_numpy()))
    metrics = json.loads((report_dir / "metrics.json").read_text())
    assert metrics["pixel_accuracy"] == pytest.approx(scores.pixel_accuracy)
    assert metrics["mean_iou"] == pytest.approx(scores.mean_iou)
    assert metrics["images"] == 6  # the test half of 12 val ids
    absent = [name for name, iou in metrics["class_iou"].items() if iou is None]
    assert absent == metrics["absent_classes"]
    per_class = pd.read_csv(report_dir / "per_class.csv")
    assert not per_class.loc[per_class["class"].isin(absent), "present"].any()


def test_confusion_matrix_counts_every_labelled_test_pixel_once(report_dir, run_dir, voc_root):
    from fastseg.imaging.masks import read_mask

    folder = find_voc(voc_root)
    test_ids = RunFolder(run_dir).read_split().test
    labelled = sum(int((read_mask(folder.mask_path(i)) != 255).sum()) for i in test_ids)
    matrix = pd.read_csv(report_dir / "confusion_matrix.csv", index_col=0)
    assert int(matrix.to_numpy().sum()) == labelled


def test_per_image_rows_are_ranked_by_loss(report_dir, run_dir):
    per_image = pd.read_csv(report_dir / "per_image.csv")
    assert len(per_image) == 6 and list(per_image) == ["id", "pixel_accuracy", "miou", "loss"]
    assert per_image["loss"].is_monotonic_increasing


def test_rank_orders_best_first_and_nan_last():
    table = pd.DataFrame({"id": list("abcd"), "pixel_accuracy": [0.5, np.nan, 0.9, 0.1],
                          "miou": [0.2, 0.3, 0.1, np.nan], "loss": [1.0, 0.5, 2.0, np.nan]})  # fmt: skip
    assert list(rank(table, "accuracy")["id"]) == ["c", "a", "d", "b"]
    assert list(rank(table, "miou")["id"]) == ["b", "a", "c", "d"]
    assert list(rank(table, "loss")["id"]) == ["b", "a", "c", "d"]


def test_a_file_that_is_not_a_run_is_refused(tmp_path):
    save_model(tmp_path / "model.pth", SegmentationModel(), ModelConfig(), size=32)
    result = CliRunner().invoke(
        main, ["report", "--model", str(tmp_path / "model.pth"), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 1 and "not a run folder (no split.json)" in result.output


def test_run_without_a_dataset_in_its_config_asks_for_data(run_dir, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "config.json").write_text("{}")
    result = CliRunner().invoke(main, ["report", "--model", str(run), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "pass --data" in result.output


def test_mask_of_another_size_than_its_image_is_named(run_dir, voc_copy, tmp_path):
    """The letterbox crop is taken from the image's size, so a mismatched pair must stop the
    report with the mask named, not be scored against a wrongly cropped prediction."""
    from PIL import Image

    from fastseg.imaging.masks import write_mask

    folder = find_voc(voc_copy)
    bad = folder.mask_path(RunFolder(run_dir).read_split().test[0])
    with Image.open(bad) as mask:
        width, height = mask.size
    write_mask(bad, np.zeros((height + 3, width), dtype=np.uint8))
    arguments = ["report", "--model", str(run_dir), "--data", str(voc_copy), "--out", str(tmp_path / "out"),
                 "--quiet", "--num-workers", "0"]  # fmt: skip
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{bad}: mask is {width}x{height + 3}, image is {width}x{height}" in result.output


def report_arguments(run, data, out):
    return ["report", "--model", str(run), "--data", str(data), "--out", str(out), "--quiet",
            "--num-workers", "0"]  # fmt: skip


def test_mask_values_outside_the_classes_are_named_one_line_each_and_nothing_is_written(
    run_dir, voc_copy, tmp_path
):
    """Train's data check, run on the evaluated ids only: a value 50 would otherwise stop the loss
    with `IndexError: Target 50 is out of bounds`."""
    from fastseg.imaging.masks import read_mask, write_mask

    folder = find_voc(voc_copy)
    test_ids = RunFolder(run_dir).read_split().test
    bad = [folder.mask_path(image_id) for image_id in test_ids[:2]]
    for path, value in zip(bad, (50, 21), strict=True):
        mask = read_mask(path)
        mask[0, 0] = value
        write_mask(path, mask)
    train_mask = folder.mask_path(RunFolder(run_dir).read_split().train[0])  # not evaluated: not checked
    write_mask(train_mask, np.full_like(read_mask(train_mask), 60))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, report_arguments(run_dir, voc_copy, out))
    assert result.exit_code == 1
    assert result.output == (
        f"Error: 2 problem(s) in {folder.root}, report not started:\n"
        f"{bad[0]}: mask values [50] outside 0-20 and 255\n"
        f"{bad[1]}: mask values [21] outside 0-20 and 255\n"
    )
    assert not out.exists()


def test_an_empty_test_list_is_one_line_and_nothing_is_written(run_dir, voc_root, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    split = json.loads((run / "split.json").read_text())
    (run / "split.json").write_text(json.dumps({**split, "test": []}))
    out = tmp_path / "out"
    out.mkdir()
    result = CliRunner().invoke(main, report_arguments(run, voc_root, out))
    assert result.exit_code == 1
    split_file = run / "split.json"
    assert result.output == f"Error: {split_file}: the test split lists no images; nothing to report\n"
    assert list(out.iterdir()) == []


def test_a_damaged_class_weights_file_is_one_line(run_dir, tmp_path):
    """It was a JSONDecodeError traceback."""
    import shutil

    run = shutil.copytree(run_dir, tmp_path / "run")
    (run / "class_weights.json").write_text("{bad")
    result = CliRunner().invoke(
        main, ["report", "--model", str(run), "--out", str(tmp_path / "out"), "--quiet"]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "class_weights.json: not a fastseg class-weights file" in result.output.strip().splitlines()[-1]


@pytest.mark.parametrize("variable", ["RANK", "WORLD_SIZE"])
def test_a_launcher_variable_that_is_not_a_number_is_one_line(run_dir, tmp_path, monkeypatch, variable):
    """`RANK=abc fastseg predict ...` was a ValueError traceback."""
    monkeypatch.setenv(variable, "abc")
    arguments = ["predict", "--model", str(run_dir), str(tmp_path), "--out", str(tmp_path / "out"), "--quiet"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert (
        result.output.strip().splitlines()[-1]
        == f"Error: {variable}='abc': not a whole number (the launcher sets it)"
    )
