"""Text that reaches a figure or a page is data, not markup (issue #19, item 4)."""

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.text import Text

from fastseg.classes import Classes
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
    save_training_curve(_history(), tmp_path / "curve.png")
    assert matplotlib.rcParams["text.parse_math"] == before


PAYLOAD = "<img src=x onerror=alert(3)>"


def _history():
    return pd.DataFrame({"epoch": [0, 1], "train_loss": [1.0, 0.5], "valid_loss": [1.1, 0.6],
                         "train_miou": [0.2, 0.4], "valid_miou": [0.1, 0.3],
                         "train_pixel_accuracy": [0.5, 0.7], "valid_pixel_accuracy": [0.4, 0.6]})  # fmt: skip


def test_the_report_page_escapes_a_payload_in_every_field(tmp_path):
    """Before: a run folder named with markup was written into report.html as markup. Every text
    the page takes from outside (title, facts, class names, image ids, scores, notes, config names
    and values, chart titles) carries the payload here, and none becomes an element or attribute."""
    from html.parser import HTMLParser

    from fastseg.visualization.charts import training_curve_panels
    from fastseg.visualization.html import Example, ExampleSet, ReportPage, write_html

    classes = Classes.create([PAYLOAD, "b"], [(0, 0, 0), (255, 0, 0)])
    mask = np.array([[0, 1], [1, 255]], np.uint8)
    curve = training_curve_panels(_history())
    curve[0].axes[0].set_title(PAYLOAD)
    page = ReportPage(
        title=PAYLOAD, facts=[(PAYLOAD, PAYLOAD)], metrics={"mean_iou": 0.5},
        per_class=pd.DataFrame({"class": [PAYLOAD, "b"], "iou": [0.5, 0.2], "accuracy": [0.5, float("nan")],
                                "truth_pixels": [3, 0], "predicted_pixels": [2, 1]}),
        matrix=np.array([[2, 1], [0, 0]]), classes=classes,
        example_sets=[ExampleSet(PAYLOAD, PAYLOAD, PAYLOAD, [
            Example(PAYLOAD, [(PAYLOAD, PAYLOAD)], np.zeros((2, 2, 3), np.uint8), mask, mask)])],
        curve=curve, curve_note=PAYLOAD, config=[(PAYLOAD, PAYLOAD)], config_note=PAYLOAD,
    )  # fmt: skip
    text = write_html(tmp_path, page).read_text()

    class Elements(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.attributes = [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            self.attributes += [name for name, _ in attrs]

    parser = Elements()
    parser.feed(text)
    assert "onerror" not in parser.attributes
    assert parser.tags.count("img") == 3 + len(curve)  # the pictures, none made by the payload
    escaped = "&lt;img src=x onerror=alert(3)&gt;"
    # title x2, fact x2, class row, legend, confusion row/column/hover, example set id/title/note,
    # image id (caption and three alts), score name and value, chart alt, notes, config name/value
    assert text.count(escaped) >= 20
    assert "<img src=x" not in text


def test_a_path_that_is_not_utf8_is_written_with_a_replacement_character(tmp_path):
    """Python keeps a file name's undecodable bytes as lone surrogates, which UTF-8 cannot encode:
    the page would fail to be written."""
    from fastseg.visualization.html import text

    name = b"run-\xff".decode("utf-8", "surrogateescape")
    assert text(name) == "run-\ufffd"
    (tmp_path / "page.html").write_text(text(name), encoding="utf-8")


def test_the_training_curve_panels_keep_their_text_at_10_points_or_more():
    """The page shows each panel at about 350 px of its 420: text of 10 points at 100 dpi is
    13.9 px in the PNG, 11.6 px on the page (the browser test measures it)."""
    from fastseg.visualization.charts import training_curve_panels
    from fastseg.visualization.figures import figure_png, smallest_font_px

    panels = training_curve_panels(_history(), planned_epochs=5)  # with the early-stop mark
    assert len(panels) == 3
    for figure in panels:
        assert smallest_font_px(figure, dpi=72) >= 10  # at 72 dpi a point is a pixel
        assert smallest_font_px(figure, dpi=144) == pytest.approx(2 * smallest_font_px(figure, dpi=72))
    assert "early stop (2 of 5 epochs)" in texts(panels[0])
    fresh = training_curve_panels(_history())[1]  # the page saves, then measures without drawing again
    assert figure_png(fresh, dpi=150).startswith(b"\x89PNG")
    assert (
        smallest_font_px(fresh, dpi=150, draw=False) == smallest_font_px(panels[1], dpi=150) >= 10 * 150 / 72
    )
