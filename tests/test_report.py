"""`fastseg report`: every file, numbers consistent with one confusion matrix, ranking order."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from cli.main import main
from fastseg.data.split import seed_split
from fastseg.data.voc import VOC, find_voc
from fastseg.inference.ranking import rank
from fastseg.metrics import scores_from_matrix
from fastseg.model.checkpoint import save_model
from fastseg.model.config import ModelConfig
from fastseg.model.network import SegmentationModel
from fastseg.runs.folder import RunFolder

REPORT_FILES = (
    "metrics.json",
    "class_iou.png",
    "per_class.csv",
    "per_image.csv",
    "confusion_matrix.csv",
    "confusion_matrix.png",
    "predictions_best.png",
    "predictions_worst.png",
    "report.html",
)  # fmt: skip (predictions_random.png only where images are left over: none of 6)


@pytest.fixture(scope="module")
def run_dir(voc_root, tmp_path_factory):
    """A run folder as `fastseg train` leaves it, with an untrained model (metrics need not be good)."""
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    save_model(
        run / "model.pth",
        SegmentationModel(ModelConfig(num_classes=len(VOC))).eval(),
        ModelConfig(num_classes=len(VOC)),
        size=32,
        classes=VOC,
    )
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
    assert not (report_dir / "predictions_random.png").exists()  # 4 best + 2 worst show all 6
    # report_folder replaces exactly the files it lists: one the report writes but it does not know
    # would be carried from an earlier report into the next one
    from fastseg.inference.report_folder import REPORT_FILES as REPLACED_WHOLE

    assert {path.name for path in report_dir.iterdir()} <= REPLACED_WHOLE


def test_the_page_is_self_contained(report_dir):
    """Every picture is inside the page: 6 images x (photo, truth, prediction); the run of this
    fixture has no history.csv, so no training curve (the page says so)."""
    import re

    page = (report_dir / "report.html").read_text()
    sources = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert len(sources) == 18 and all(source.startswith("data:image/") for source in sources)
    assert "No training curve: history.csv not found in the run folder." in page
    assert "<title>fastseg report" in page  # what marks the folder as fastseg's (fastseg.outputs)


def test_the_page_shows_present_classes_and_collapses_the_absent_ones(report_dir):
    """Before: 15 of 21 rows read `absent absent 0 0 False`."""
    import re

    page = (report_dir / "report.html").read_text()
    per_class = pd.read_csv(report_dir / "per_class.csv")
    present = per_class[(per_class["truth_pixels"] + per_class["predicted_pixels"]) > 0]
    table = page[
        page.index('<table class="classes">') : page.index("</table>", page.index('<table class="classes">'))
    ]
    assert re.findall(r'<th scope="row"><span class="swatch"[^>]*></span>([^<]*)</th>', table) == list(
        present["class"]
    )
    absent = len(per_class) - len(present)
    assert absent and f"{absent} of 21 classes are absent" in page
    matrix = page[page.index('<table class="confusion">') :]
    assert matrix.count('<tr><th scope="row">') == len(present)  # one row per present class


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


def test_per_image_rows_are_ranked_by_miou_by_default(report_dir, run_dir):
    per_image = pd.read_csv(report_dir / "per_image.csv")
    assert len(per_image) == 6 and list(per_image) == ["id", "pixel_accuracy", "miou", "loss"]
    assert per_image["miou"].is_monotonic_decreasing


def _shown(page, anchor):
    """The (id, first score) of each example under the page's `<h3 id=anchor>`."""
    import re

    start = page.index(f'<h3 id="{anchor}">')
    end = page.find("<h3 ", start + 1)
    section = page[start : end if end > 0 else page.index("</section>", start)]
    return [(image_id, float(value)) for image_id, value in
            re.findall(r'<span class="id">([^<]*)</span> <b>[^<]* ([0-9.]+)</b>', section)]  # fmt: skip


@pytest.mark.parametrize("rank_by", ["miou", "loss"])
def test_best_and_worst_do_not_overlap_and_best_never_scores_below_worst(run_dir, tmp_path, rank_by):
    """Before: with 16 images the 10 best and 5 worst covered 15 and repeated the random ones, and
    a "best" image scored mIoU 0.669 where a "worst" one scored 0.937 (ranked by loss, not said)."""
    out = tmp_path / "report"
    arguments = ["report", "--model", str(run_dir), "--out", str(out), "--quiet", "--num-workers", "0",
                 "--precision", "fp32", "--rank-by", rank_by]  # fmt: skip
    assert CliRunner().invoke(main, arguments).exit_code == 0
    page = (out / "report.html").read_text()
    best, worst = _shown(page, "best"), _shown(page, "worst")
    assert (len(best), len(worst)) == (4, 2)
    assert not {image_id for image_id, _ in best} & {image_id for image_id, _ in worst}
    scores = pd.read_csv(out / "per_image.csv").set_index("id")
    column = {"miou": "miou", "loss": "loss"}[rank_by]
    for image_id, value in best + worst:  # the bold score is the ranking's, as per_image.csv has it
        assert value == pytest.approx(scores.loc[image_id, column], abs=5e-4)
    if rank_by == "miou":
        assert min(value for _, value in best) >= max(value for _, value in worst)
        assert "Best 4 by mIoU" in page and "Ranked by per-image mIoU" in page
    else:
        assert max(value for _, value in best) <= min(value for _, value in worst)
        assert "Best 4 by loss" in page and "lower is better" in page


@pytest.mark.parametrize(
    ("scored", "total", "best", "worst", "random"),
    [
        (16, 16, list(range(10)), [15, 14, 13, 12, 11], [10]),
        (6, 6, [0, 1, 2, 3], [5, 4], []),
        (2, 2, [0], [1], []),
        (1, 1, [0], [], []),
        (0, 3, [], [], [0, 1, 2]),
        (14, 16, list(range(10)), [13, 12, 11, 10], [14, 15]),  # 2 images without a score
    ],
)
def test_examples_never_repeat_an_image(scored, total, best, worst, random):
    from fastseg.inference.ranking import choose_examples

    chosen = choose_examples(scored, total, seed=0)
    assert (chosen["best"], chosen["worst"], chosen["random"]) == (best, worst, random)


def test_examples_of_a_large_set_are_the_seeds_counts_and_disjoint():
    from fastseg.inference.ranking import choose_examples

    for total in (15, 20, 37, 1449):
        chosen = choose_examples(total, total, seed=3)
        assert [len(chosen[name]) for name in ("best", "worst", "random")] == [10, 5, min(5, total - 15)]
        assert len(set().union(*chosen.values())) == 15 + min(5, total - 15)
        assert max(chosen["best"]) < min(chosen["worst"])  # a best image ranks above every worst one
        assert chosen["random"] == sorted(chosen["random"]) and all(
            10 <= p < total - 5 for p in chosen["random"]
        )
    with pytest.raises(ValueError, match="3 scored images of 2"):
        choose_examples(3, 2, seed=0)


def test_rank_orders_best_first_and_nan_last():
    table = pd.DataFrame({"id": list("abcd"), "pixel_accuracy": [0.5, np.nan, 0.9, 0.1],
                          "miou": [0.2, 0.3, 0.1, np.nan], "loss": [1.0, 0.5, 2.0, np.nan]})  # fmt: skip
    assert list(rank(table, "accuracy")["id"]) == ["c", "a", "d", "b"]
    assert list(rank(table, "miou")["id"]) == ["b", "a", "c", "d"]
    assert list(rank(table, "loss")["id"]) == ["b", "a", "c", "d"]


def test_a_file_that_is_not_a_run_is_refused(tmp_path):
    save_model(
        tmp_path / "model.pth",
        SegmentationModel(ModelConfig(num_classes=len(VOC))),
        ModelConfig(num_classes=len(VOC)),
        size=32,
        classes=VOC,
    )
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


def test_a_damaged_history_or_config_is_a_sentence_on_the_page_not_a_failed_report(
    run_dir, voc_root, tmp_path
):
    """The scores are computed by then: a hand-edited history.csv or config.json costs the page its
    curve or config, said in words, and the report is still written."""
    import shutil

    run = shutil.copytree(run_dir, tmp_path / "run")
    (run / "history.csv").write_bytes(b"epoch,valid_miou,time\nabc,\xff\xfe,00:01\n")
    (run / "config.json").write_text('{"train": [1, 2]}')
    result = CliRunner().invoke(main, report_arguments(run, voc_root, tmp_path / "out"))
    assert result.exit_code == 0, result.output
    page = (tmp_path / "out" / "report.html").read_text()
    assert "No training curve: " in page and "history.csv could not be read" in page
    assert f"No training configuration: {run / 'config.json'}: not a fastseg run config" in page
    assert "<dt>Training</dt><dd>unknown: config.json is missing or unreadable</dd>" in page


def test_a_page_of_150_classes_shows_the_present_ones_and_stays_small(tmp_path):
    """ADE20K has 150 classes: the matrix keeps the present ones, and an empty cell is bare."""
    import re

    from fastseg.classes import Classes
    from fastseg.visualization.html import ReportPage, write_html

    names = [f"class {index}" for index in range(150)]
    matrix = np.zeros((150, 150), dtype=np.int64)
    present = list(range(0, 150, 3))  # 50 classes
    for index in present:
        matrix[index, index] = 1000
        matrix[index, (index + 3) % 150] = 7
    matrix[0, 6] = 1  # 1 of 1008 pixels: under half a percent, written "<1"
    truth, predicted = matrix.sum(1), matrix.sum(0)
    per_class = pd.DataFrame({"class": names, "iou": [0.9 if t else np.nan for t in truth],
                              "accuracy": [0.99 if t else np.nan for t in truth], "truth_pixels": truth,
                              "predicted_pixels": predicted})  # fmt: skip
    page = ReportPage(title="fastseg report: big", facts=[], metrics={"mean_iou": 0.9}, per_class=per_class,
                      matrix=matrix, classes=Classes.create(names))  # fmt: skip
    text = write_html(tmp_path, page).read_text()
    start = text.index('<table class="confusion">')
    confusion = text[start : text.index("</table>", start)]
    assert confusion.count('<tr><th scope="row">') == 50 and confusion.count("<td") == 50 * 51
    assert confusion.count("title=") == 101  # the diagonal, one confusion per row, and the one pixel
    assert re.search(
        r'title="true class 0, predicted class 6: 1 pixel \(0\.1 % of the true class 0\)">&lt;1<', text
    )
    assert re.search(
        r'title="true class 0, predicted class 3: 7 pixels \(0\.7 % of the true class 0\)">1<', text
    )
    assert "100 of 150 classes are absent" in text and len(text) < 200_000


def test_runtime_words_name_the_runtime_and_its_precision():
    import types

    import torch

    from fastseg.inference.report_page import duration, runtime_words

    def segmenter(name, dtype=None, export=None, tiling=None):
        runtime = types.SimpleNamespace(name=name, dtype=dtype)
        return types.SimpleNamespace(device=torch.device("cpu"), runtime=runtime, tiling=tiling,
                                     loaded=types.SimpleNamespace(export=export))  # fmt: skip

    from fastseg.inference.tiling import Tiling

    assert runtime_words(segmenter("torch")) == "torch, fp32 on cpu"
    assert runtime_words(segmenter("torch", torch.bfloat16)) == "torch, bf16 autocast on cpu"
    assert runtime_words(segmenter("torch", torch.float16)) == "torch, fp16 autocast on cpu"
    assert (
        runtime_words(segmenter("onnxruntime", export={"precision": "int8"}))
        == "onnxruntime, INT8 graph on cpu"
    )
    assert (
        runtime_words(segmenter("onnxruntime", export={"precision": "fp32"}))
        == "onnxruntime, fp32 graph on cpu"
    )
    tiled = segmenter("torch", tiling=Tiling(512, 0.25))
    assert runtime_words(tiled) == "torch, fp32 on cpu; sliding 512 px windows, overlap 0.25"
    assert [duration(s) for s in (0.4, 57, 725, 11220)] == ["0 s", "57 s", "12 min 05 s", "3 h 07 min"]


def test_an_image_without_a_labelled_pixel_is_never_best_or_worst():
    """Its scores are NaN (nothing to score), ranked last: it may be drawn at random, said so."""
    from fastseg.inference.report import example_sets

    per_image = pd.DataFrame({"id": list("abcdef"), "pixel_accuracy": [0.9, 0.8, np.nan, 0.7, 0.95, 0.6],
                              "miou": [0.5, 0.9, np.nan, 0.4, 0.7, 0.8],
                              "loss": [1, 2, np.nan, 3, 0.5, 1.5]})  # fmt: skip
    chosen = example_sets(rank(per_image, "miou"), "miou", seed=0)
    (best_title, best_note, best), (worst_title, _, worst) = chosen["best"], chosen["worst"]
    shown = (list(best["id"]), list(worst["id"]), list(chosen["random"][2]["id"]))
    assert shown == (["b", "f", "e", "a"], ["d"], ["c"])
    assert (best_title, worst_title) == ("Best 4 by mIoU", "Worst 1 by mIoU")
    assert "1 image(s) without a labelled pixel have no score" in best_note
    assert chosen["random"][0] == "1 other image at random"


# Characters that can reorder the text around them in a left-to-right page (Unicode bidi classes):
# right-to-left letters, Arabic digits, explicit embeddings, overrides and isolates.
REORDERING = {"R", "AL", "AN", "LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"}
OVERRIDE = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: everything after it, to the paragraph's end, reversed
BIDI_VALUES = [
    f"run{OVERRIDE}lmth.exe",  # an override left open
    f"\u2069{OVERRIDE}escape",  # a PDI first, that would close the isolate around the value
    "\u2068open",  # an isolate left open, that the closing PDI would close instead
    "כלב",  # right-to-left letters
]


def loose_reordering(page: str) -> list[str]:
    """Each piece of the page's text (an element's text, an attribute value) that holds a
    reordering character outside an isolate: not in a `<bdi>` element, and not between a U+2068
    (or U+2066, U+2067) and its U+2069 in the same piece, or isolates left unbalanced."""
    import unicodedata
    from html.parser import HTMLParser

    loose = []

    def check(piece: str, in_bdi: bool) -> None:
        depth = 0
        for character in piece:
            if character in "\u2066\u2067\u2068":
                depth += 1
            elif character == "\u2069":
                if depth == 0:  # closes an isolate opened outside this piece: ours
                    loose.append(piece)
                    return
                depth -= 1
            elif not in_bdi and depth == 0 and unicodedata.bidirectional(character) in REORDERING:
                loose.append(piece)
                return
        if depth:
            loose.append(piece)

    class Pieces(HTMLParser):
        bdi = 0

        def handle_starttag(self, tag, attrs):
            self.bdi += tag == "bdi"
            for _, value in attrs:
                check(value or "", in_bdi=False)

        def handle_endtag(self, tag):
            self.bdi -= tag == "bdi"

        def handle_data(self, data):
            check(data, in_bdi=self.bdi > 0)

    Pieces().feed(page)
    return loose


def test_direction_changing_text_on_the_page_is_isolated(tmp_path):
    """Before: a class, image id or config value holding U+202E was escaped but not isolated, and
    reversed the rest of its line (`run<U+202E>lmth.exe` read `runexe.html`); a U+2069 in the
    value could close an isolate put around it. Every field the page takes from outside holds each
    value here, and no reordering character is left outside an isolate; a plain page has no <bdi>."""
    from fastseg.classes import Classes
    from fastseg.visualization.html import Example, ExampleSet, ReportPage, isolated, render

    def page(values: list[str]) -> str:
        names = [*values, "plain"]
        count = len(names)
        classes = Classes.create(names, [(index, 0, 0) for index in range(count)])
        mask = np.arange(count, dtype=np.uint8).reshape(1, count)
        per_class = pd.DataFrame({"class": names, "iou": [0.5] * count, "accuracy": [0.5] * count,
                                  "truth_pixels": [3] * (count - 1) + [0],
                                  "predicted_pixels": [2] * (count - 1) + [0]})  # fmt: skip
        examples = [Example(value, [(value, value)], np.zeros((1, count, 3), np.uint8), mask, mask)
                    for value in values]  # fmt: skip
        return render(ReportPage(
            title=f"fastseg report: {isolated(values[0])}", facts=[(value, value) for value in values],
            metrics={"mean_iou": 0.5}, per_class=per_class, matrix=np.ones((count, count), np.int64),
            classes=classes, example_sets=[ExampleSet("best", values[0], values[1], examples)],
            curve_note=values[2], config=[(value, value) for value in values], config_note=values[3],
        ))  # fmt: skip

    written = page(BIDI_VALUES)
    assert OVERRIDE in written and "<bdi>" in written
    assert loose_reordering(written) == []
    plain = page(["a", "b", "c", "d"])
    assert "<bdi>" not in plain and "\u2068" not in plain and loose_reordering(plain) == []


def test_a_report_of_a_run_named_with_an_override_isolates_its_path_and_config(run_dir, voc_root, tmp_path):
    """The real command: the run folder's name (in the title, the facts and every sentence naming a
    file) and config.json's values reach the page isolated; the <title> still starts with
    `fastseg report`, which marks the folder as fastseg's."""
    import shutil

    run = shutil.copytree(run_dir, tmp_path / f"run{OVERRIDE}lmth.exe")
    config = {"train": {"data": str(voc_root), "recipe": BIDI_VALUES[1], "loss": BIDI_VALUES[2],
                        "epochs": 3, "lr": BIDI_VALUES[3]}, "git_commit": BIDI_VALUES[0]}  # fmt: skip
    (run / "config.json").write_text(json.dumps(config))
    (run / "history.csv").write_bytes(b"epoch,valid_miou\nabc,\xff\n")  # its reason names the file
    result = CliRunner().invoke(main, report_arguments(run, voc_root, tmp_path / "out"))
    assert result.exit_code == 0, result.output
    written = (tmp_path / "out" / "report.html").read_text()
    assert written.count(OVERRIDE) >= 5 and loose_reordering(written) == []
    assert f"<title>fastseg report: \u2068run{OVERRIDE}lmth.exe\u2069, test split</title>" in written


def dead_process_id() -> int:
    import subprocess
    import sys

    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(ended.stdout)


def test_a_killed_reports_temporary_folder_does_not_break_other_cleanups(run_dir, voc_root, tmp_path):
    """`.report.PID.tmp` is named as `fastseg.atomic`'s temporary files are: the run folder's
    cleanup (train --force, export into the run) unlinked it as a file, an IsADirectoryError. It
    leaves folders to their writers; the next report removes it."""
    import shutil

    from fastseg.runs.folder import RunFolder

    run = shutil.copytree(run_dir, tmp_path / "run")
    stale = run / f".report.{dead_process_id()}.tmp"
    stale.mkdir()
    (stale / "metrics.json").write_text("{}")
    assert RunFolder(run).remove_stale_temporaries() == []
    assert stale.is_dir()
    result = CliRunner().invoke(main, ["report", "--model", str(run), "--quiet", "--num-workers", "0"])
    assert result.exit_code == 0, result.output
    assert not stale.exists() and (run / "report" / "report.html").is_file()


def folder_state(folder) -> dict:
    """Every entry under `folder` (itself included): its bytes (files) and mtime in ns."""
    state = {".": (None, folder.stat().st_mtime_ns)}
    for path in sorted(folder.rglob("*")):
        state[path.relative_to(folder).as_posix()] = (path.read_bytes() if path.is_file() else None,
                                                      path.stat().st_mtime_ns)  # fmt: skip
    return state


def leftovers(folder) -> list[str]:
    """Temporary files or folders beside or inside the report folder `folder`."""
    return sorted(
        path.name for path in [*folder.parent.iterdir(), *folder.rglob("*")] if path.name.endswith(".tmp")
    )


@pytest.fixture
def earlier_report(run_dir, tmp_path):
    """A copy of the run with a report in RUN/report, and a note of the user's inside that folder."""
    import shutil

    run = shutil.copytree(run_dir, tmp_path / "run")
    first = CliRunner().invoke(main, ["report", "--model", str(run), "--quiet", "--num-workers", "0"])
    assert first.exit_code == 0, first.output
    (run / "report" / "notes.txt").write_text("mine")
    return run


@pytest.mark.parametrize("full_at", ["metrics.json", "predictions_best.png", "report.html"])
def test_a_full_disk_leaves_the_earlier_report_exactly_as_it_was(earlier_report, fill_disk_at, full_at):
    """Before: each file whole, but the new files written before the full disk sat beside the
    earlier report's (new metrics, old page). Now not a byte or an mtime of it changes, nothing
    temporary is left, and the next report, with space, replaces it whole (the note stays)."""
    report = earlier_report / "report"
    before = folder_state(report)
    free = fill_disk_at(full_at)
    arguments = ["report", "--model", str(earlier_report), "--quiet", "--num-workers", "0"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 1 and f"Error: {report / full_at}: No space left on device" in result.output
    assert folder_state(report) == before and leftovers(report) == []
    free()
    again = CliRunner().invoke(main, arguments)
    assert again.exit_code == 0, again.output
    assert (report / "notes.txt").read_text() == "mine" and leftovers(report) == []
    assert (report / "report.html").stat().st_mtime_ns > before["report.html"][1]


# In a child process: the report dies as under kill -9 at POINT, then nothing else runs.
KILLED_REPORT = """
import os, sys
point = sys.argv[1]
import fastseg.inference.report_folder as report_folder
real_replace = os.replace
def replace(source, target):  # a file about to take its name in the report being built
    if os.path.basename(str(target)) == point:
        os._exit(137)
    return real_replace(source, target)
os.replace = replace
if point == "swap":  # every file written, the swap not yet done
    report_folder._exchange = lambda first, second: os._exit(137)
if point == "carry-over":  # swapped, the earlier report's other files not yet moved over
    report_folder._carry_over = lambda earlier, out: os._exit(137)
if point == "between-renames":  # no atomic swap: the earlier report moved aside, the new not in
    report_folder._exchange = lambda first, second: False
    real_rename = os.rename
    def rename(source, target):
        if ".replaced." in str(target):
            real_rename(source, target)
            os._exit(137)
        return real_rename(source, target)
    os.rename = rename
from cli.main import main
main(sys.argv[2:])
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("point", "seen"),
    [
        ("metrics.json", "old"),  # the first file of the new report
        ("predictions_best.png", "old"),
        ("report.html", "old"),  # the last file
        ("swap", "old"),
        ("carry-over", "new"),
        ("between-renames", None),  # where renameat2 is missing: the next report puts it back
    ],
)
def test_kill_9_mid_report_leaves_the_old_report_or_the_new_never_a_mix(earlier_report, point, seen):
    import subprocess
    import sys

    report = earlier_report / "report"
    before = folder_state(report)
    arguments = ["report", "--model", str(earlier_report), "--quiet", "--num-workers", "0"]
    child = subprocess.run(
        [sys.executable, "-c", KILLED_REPORT, point, *arguments], capture_output=True, text=True
    )
    assert child.returncode == 137, child.stderr[-2000:]
    if seen == "old":
        assert folder_state(report) == before
    elif seen == "new":
        names = {path.name for path in report.iterdir()}
        assert "report.html" in names and "notes.txt" not in names  # still in the earlier folder
        assert (report / "report.html").stat().st_mtime_ns > before["report.html"][1]
        assert json.loads((report / "metrics.json").read_text())["images"] == 6
    else:
        assert not report.exists()
    again = CliRunner().invoke(main, arguments)
    assert again.exit_code == 0, again.output
    assert "(replaced the earlier report there)" in again.output
    assert (report / "notes.txt").read_text() == "mine" and leftovers(report) == []
    names = {path.name for path in report.iterdir()}
    assert names == {
        "notes.txt",
        *(name for name in before if "/" not in name and name not in (".", "notes.txt")),
    }


def test_a_report_into_the_folder_it_is_run_from_is_refused_before_the_evaluation(
    earlier_report, monkeypatch
):
    """`cd RUN/report && fastseg report --model .. --out .`: swapping the folder whole would leave
    the shell in the earlier one, removed. One line, before any image is evaluated, nothing
    changed; a report into another folder from there works."""
    report = earlier_report / "report"
    before = folder_state(report)
    monkeypatch.chdir(report)
    arguments = ["report", "--model", "..", "--quiet", "--num-workers", "0"]
    refused = CliRunner().invoke(main, [*arguments, "--out", ".", "--replace-foreign"])
    assert refused.exit_code == 1 and len(refused.output.splitlines()) == 1, refused.output
    assert "holds the current folder" in refused.output and "choose another --out" in refused.output
    assert folder_state(report) == before and leftovers(report) == []
    elsewhere = CliRunner().invoke(main, [*arguments, "--out", "../other"])
    assert elsewhere.exit_code == 0, elsewhere.output
    assert (earlier_report / "other" / "report.html").is_file() and folder_state(report) == before


def test_a_count_of_one_is_singular_in_what_a_person_reads():
    """Found by a hostile pass: a one-image test split printed "1 images" (report, its page, demo)."""
    from pathlib import Path

    from fastseg.number_style import quantity

    assert [quantity(n, "image") for n in (0, 1, 2, 16)] == ["0 images", "1 image", "2 images", "16 images"]
    sources = [Path("cli/report.py"), Path("cli/demo.py"), Path("fastseg/inference/report_page.py")]
    root = Path(__file__).resolve().parent.parent
    assert not [path for path in sources if "} images" in (root / path).read_text(encoding="utf-8")]
