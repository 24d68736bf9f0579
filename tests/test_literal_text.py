"""Text that reaches a figure or a page is data, not markup (issue #19, item 4)."""

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.text import Text

from fastseg.data.classes import Classes
from fastseg.visualization.charts import class_iou_chart, confusion_figure, save_training_curve
from fastseg.visualization.figures import image_grid, save_figure

NAMES = ["$\\frac$", "a $5 $6 b", "plain"]  # broken mathtext, and dollars that must stay dollars


def texts(figure):
    figure.canvas.draw()  # tick labels are made at drawing time
    return [text.get_text() for text in figure.findobj(Text)]


@pytest.mark.parametrize("make", ["iou", "confusion", "grid"])
def test_class_names_with_dollars_are_drawn_as_written(tmp_path, make):
    """Before: ValueError from matplotlib's mathtext (a traceback in train, show-data, report)."""
    if make == "iou":
        figure = class_iou_chart(NAMES, [0.5, float("nan"), 0.9])
    elif make == "confusion":
        figure = confusion_figure(torch.tensor([[3, 1, 0], [0, 2, 0], [1, 0, 5]]), NAMES)
    else:
        classes = Classes.create(NAMES, [(0, 0, 0), (255, 0, 0), (0, 255, 0)], ignore_index=255)
        mask = np.array([[0, 1], [2, 2]], np.uint8)
        figure = image_grid([[np.zeros((2, 2, 3), np.uint8), mask]], ["image", "$x$ mask"],
                            row_captions=["$\\frac{a}"], title="$title", classes=classes)  # fmt: skip
    path = save_figure(figure, tmp_path / "figure.png")
    assert path.stat().st_size > 0
    drawn = texts(figure)
    assert "$\\frac$" in drawn and "a $5 $6 b" in drawn


def test_matplotlib_settings_of_the_calling_program_are_left_alone(tmp_path):
    import matplotlib

    before = matplotlib.rcParams["text.parse_math"]
    history = pd.DataFrame({"epoch": [0, 1], "train_loss": [1.0, 0.5], "valid_loss": [1.1, 0.6],
                            "train_miou": [0.2, 0.4], "valid_miou": [0.1, 0.3],
                            "train_pixel_accuracy": [0.5, 0.7],
                            "valid_pixel_accuracy": [0.4, 0.6]})  # fmt: skip
    save_training_curve(history, tmp_path / "curve.png")
    assert matplotlib.rcParams["text.parse_math"] == before


PAYLOAD = "<img src=x onerror=alert(3)>"


def test_the_report_page_escapes_a_payload_in_every_field(tmp_path):
    """Before: a run folder named with markup was written into report.html as markup."""
    import json
    from html.parser import HTMLParser

    from fastseg.runs.folder import RunFolder
    from fastseg.visualization.html import write_html

    run_dir = tmp_path / f"runs/{PAYLOAD}"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"train": {"data": PAYLOAD, PAYLOAD: 1,
                                                               "augment": {PAYLOAD: PAYLOAD}}}))  # fmt: skip
    figure = save_figure(class_iou_chart(["a"], [0.5]), tmp_path / f"{PAYLOAD}.png")
    metrics = {"subset": PAYLOAD, "images": PAYLOAD, "model": str(run_dir / "model.pth"),
               "pixel_accuracy": 0.5, "mean_class_accuracy": 0.5, "mean_iou": 0.5,
               "frequency_weighted_iou": 0.5}  # fmt: skip
    per_class = pd.DataFrame({"class": [PAYLOAD], "iou": [0.5]})
    (tmp_path / "out").mkdir()
    page = write_html(tmp_path / "out", metrics, per_class, [figure], RunFolder(run_dir)).read_text()

    class Elements(HTMLParser):
        def __init__(self):
            super().__init__()
            self.attributes = []

        def handle_starttag(self, tag, attrs):
            self.attributes += [name for name, _ in attrs]

    parser = Elements()
    parser.feed(page)
    assert "onerror" not in parser.attributes
    assert page.count("&lt;img src=x onerror=alert(3)&gt;") >= 7
