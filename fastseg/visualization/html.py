"""`report.html`: one self-contained page (pictures embedded as data: URIs), readable offline and
mailable, laid out the way mmseg's and ultralytics' result pages are read: a summary card with the
run and the three headline scores, each explained, then sections named in words with a table of
contents. Numbers are HTML tables (a confusion matrix of coloured cells, counts on hover), so
nothing a person must read is text inside a picture; the training curve, the one chart, keeps its
text at 10 points or more. Every value that reaches the page is escaped: a class, a run folder or
a config value may hold markup. Every such value is also isolated where it could reorder the
text around it (right-to-left letters, or a direction override such as U+202E): in `<bdi>` as an
element's text (`user_text`), between U+2068 and U+2069 inside an attribute, the `<title>` or a
sentence built around it (`isolated`).
"""

from __future__ import annotations

import base64
import html
import io
import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from fastseg.atomic import write_text
from fastseg.classes import Classes
from fastseg.imaging.masks import VOID_LABEL
from fastseg.number_style import score
from fastseg.visualization.charts import row_shares
from fastseg.visualization.figures import figure_png, smallest_font_px

THUMBNAIL = 320  # px, the longest side of an example picture on the page (the file is the truth)
CHART_DPI = 150  # the training curve's resolution: sharp on a high-density screen at half size


@dataclass
class Example:
    """One shown image: its id, its scores as text (the ranking's first), and `(H, W, 3)` RGB
    picture, truth and predicted class-index masks `(H, W)` (void 255 in the truth)."""

    image_id: str
    scores: list[tuple[str, str]]
    picture: np.ndarray
    truth: np.ndarray
    prediction: np.ndarray


@dataclass
class ExampleSet:
    anchor: str  # the section's id
    title: str
    note: str
    examples: list[Example]


@dataclass
class ReportPage:
    """Everything the page shows. `title`: plain text starting `fastseg report` (what marks the
    folder as fastseg's), a user's value inside it `isolated` by the caller (the `<title>` can
    hold no `<bdi>`); `facts`: the summary card's rows (label, value) in order;
    `per_class`: `fastseg.inference.report.per_class_table`; `matrix`: confusion counts `(C, C)`,
    rows true, columns predicted; `curve`: the training curve's panels; `config`: (name, value)
    rows of the run's training config."""

    title: str
    facts: list[tuple[str, str]]
    metrics: dict[str, Any]
    per_class: pd.DataFrame
    matrix: np.ndarray
    classes: Classes
    example_sets: list[ExampleSet] = field(default_factory=list)
    curve: list[Figure] = field(default_factory=list)
    curve_note: str = ""
    config: list[tuple[str, str]] = field(default_factory=list)
    config_note: str = ""


# Bidirectional classes (Unicode's) of the characters that can reorder the text around them in this
# left-to-right page: right-to-left letters, Arabic digits, and the explicit embeddings, overrides
# and isolates (U+202A-U+202E, U+2066-U+2069). Text without any of them reads as written.
REORDERING = frozenset({"R", "AL", "AN", "LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"})
ISOLATE_OPENERS = frozenset("\u2066\u2067\u2068")  # LRI, RLI, FSI: each a PDI (U+2069) closes
FIRST_STRONG_ISOLATE, POP_DIRECTIONAL_ISOLATE = "\u2068", "\u2069"


def _reorders(value: str) -> bool:
    return any(unicodedata.bidirectional(character) in REORDERING for character in value)


def _balanced_isolates(value: str) -> str:
    """`value` with its own isolates balanced: without a U+2069 (PDI) that closes no isolate opened
    inside it (it would close the isolate around the value, and let an override after it reach
    the rest of the page), and with a PDI after it for each isolate it leaves open (the closing
    PDI around the value would close that one instead). A PDI also ends every embedding and
    override opened after its isolate, so nothing else escapes."""
    kept, open_isolates = [], 0
    for character in value:
        if character == POP_DIRECTIONAL_ISOLATE:
            if not open_isolates:
                continue
            open_isolates -= 1
        elif character in ISOLATE_OPENERS:
            open_isolates += 1
        kept.append(character)
    return "".join(kept) + POP_DIRECTIONAL_ISOLATE * open_isolates


def isolated(value: Any) -> str:
    """`value` as plain text that cannot reorder what surrounds it: between U+2068 (first strong
    isolate) and U+2069 where it holds a character that could, else as it is (a page of plain
    names stays byte for byte what it was). For attributes, the `<title>`, and sentences that
    embed a user's value (escape the result with `text`)."""
    shown = str(value)
    if not _reorders(shown):
        return shown
    return f"{FIRST_STRONG_ISOLATE}{_balanced_isolates(shown)}{POP_DIRECTIONAL_ISOLATE}"


def user_text(value: Any) -> str:
    """A value from outside (a class name, a path, an image id, a config value) as an element's
    HTML text: escaped, and in `<bdi>` where it could reorder the text around it."""
    shown = str(value)
    if not _reorders(shown):
        return text(shown)
    return f"<bdi>{text(_balanced_isolates(shown))}</bdi>"


def text(value: Any) -> str:
    """Any value as HTML text, quotes included (it may land in an attribute). A path's undecodable
    bytes (Python keeps them as lone surrogates, which UTF-8 cannot write) show as U+FFFD."""
    shown = str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return html.escape(shown, quote=True)


def count(value: Any) -> str:
    return f"{int(value):,}"


def _data_uri(data: bytes, kind: str) -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def _hex(colour: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(channel) for channel in colour[:3]))


def _picture_uri(picture: np.ndarray) -> str:
    """An RGB photo as JPEG, its longest side at most `THUMBNAIL` px."""
    image = Image.fromarray(np.ascontiguousarray(picture[..., :3]).astype(np.uint8))
    image.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=85)
    return _data_uri(buffer.getvalue(), "image/jpeg")


def _mask_uri(mask: np.ndarray, classes: Classes) -> str:
    """A class-index mask as a palette PNG in the classes' colours (nearest-neighbour thumbnail)."""
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(classes.palette())
    image.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return _data_uri(buffer.getvalue(), "image/png")


def _swatch(colour: Sequence[int]) -> str:
    return f'<span class="swatch" style="background:{_hex(colour)}"></span>'


# ------------------------------------------------------------------------------------------ summary


def headline_scores(metrics: dict[str, Any], per_class: pd.DataFrame) -> str:
    """The three headline scores, each with what it means on this split."""
    scored = int((per_class["truth_pixels"] + per_class["predicted_pixels"] > 0).sum())
    in_truth = int((per_class["truth_pixels"] > 0).sum())
    tiles = (
        ("mean IoU", "mean_iou", "For each class, the pixels both predicted and true divided by those "
         f"either predicted or true; averaged over the {scored} classes in the truth or the prediction."),
        ("pixel accuracy", "pixel_accuracy", "The share of labelled pixels given their true class. "
         "Large classes (often the background) dominate it."),
        ("mean class accuracy", "mean_class_accuracy", "For each class, the share of its true pixels "
         f"found (recall); averaged over the {in_truth} classes in the truth."),
    )  # fmt: skip
    cells = "\n".join(
        f'<div class="metric"><div class="name">{name}</div>'
        f'<div class="value">{score(metrics.get(key))}</div><p>{meaning}</p></div>'
        for name, key, meaning in tiles
    )
    weighted = score(metrics.get("frequency_weighted_iou"))
    return (
        f'<div class="headline">\n{cells}\n</div>\n<p class="note">Also: frequency-weighted IoU {weighted} '
        "(each class's IoU weighted by its share of the true pixels). Scores are fractions from 0 to 1. "
        "Void pixels (not labelled) are not counted.</p>"
    )


def summary_card(page: ReportPage) -> str:
    facts = "\n".join(
        f"<dt>{user_text(label)}</dt><dd>{user_text(value)}</dd>" for label, value in page.facts
    )
    return (
        f'<section id="summary" class="card">\n<h1>{user_text(page.title)}</h1>\n'
        f'<dl class="facts">\n{facts}\n</dl>\n{headline_scores(page.metrics, page.per_class)}\n</section>'
    )


# ---------------------------------------------------------------------------------------- per class


def per_class_section(per_class: pd.DataFrame, classes: Classes) -> str:
    """One row per class present in the truth or the prediction; the absent ones in one line."""
    present = per_class["truth_pixels"] + per_class["predicted_pixels"] > 0
    rows = []
    for index, row in per_class[present].iterrows():
        iou = row["iou"]
        width = 0.0 if math.isnan(iou) else max(0.0, min(1.0, float(iou))) * 100
        recall = row["accuracy"]
        only_predicted = '<span title="no true pixels of this class: only predicted">n/a</span>'
        recall_cell = only_predicted if math.isnan(recall) else score(recall)
        rows.append(
            f'<tr><th scope="row">{_swatch(classes.colors[index])}{user_text(row["class"])}</th>'
            f'<td class="iou">{score(iou)}<span class="bar"><span style="width:{width:.1f}%"></span>'
            "</span></td>"
            f"<td>{recall_cell}</td><td>{count(row['truth_pixels'])}</td>"
            f"<td>{count(row['predicted_pixels'])}</td></tr>"
        )
    body = "\n".join(rows)
    absent = list(per_class.loc[~present, "class"])
    absent_line = ""
    if absent:
        names = ", ".join(user_text(name) for name in absent)
        absent_line = (
            f'<details class="absent"><summary>{len(absent)} of {len(per_class)} classes are absent: no '
            "pixels in the truth and none predicted, so no score (left out of every mean)</summary>"
            f"<p>{names}</p></details>"
        )
    return f"""<section id="per-class">
<h2>Per-class scores</h2>
<p class="note">IoU as above, per class; recall is the share of the class's true pixels predicted as
it (the per-class accuracy of metrics.json).</p>
<div class="scroll"><table class="classes">
<thead><tr><th scope="col">class</th><th scope="col">IoU</th><th scope="col">recall</th>
<th scope="col">true pixels</th><th scope="col">predicted pixels</th></tr></thead>
<tbody>
{body}
</tbody></table></div>
{absent_line}
</section>"""


# ---------------------------------------------------------------------------------- confusion matrix


def _cell_colour(share: float) -> str:
    """White to dark blue as the share of the true class's pixels goes 0 -> 1."""
    light, dark = np.array([247, 251, 255]), np.array([8, 48, 107])
    return _hex(np.round(light + (dark - light) * share).astype(int))


def confusion_section(matrix: np.ndarray, classes: Classes) -> str:
    """The matrix as a table of the classes present in the truth or the prediction (an absent
    class's row and column are all zeros): colour = share of the row's pixels, the share written
    in percent, the pixel count on hover and each row's total in the last column."""
    matrix = np.asarray(matrix, dtype=np.int64)
    shown = [index for index in range(len(matrix)) if matrix[index].sum() + matrix[:, index].sum() > 0]
    shares = row_shares(matrix)
    names = [user_text(classes.names[index]) for index in shown]
    head = "".join(f'<th scope="col" class="turned"><span>{name}</span></th>' for name in names)
    rows = []
    for true in shown:
        total = matrix[true].sum()
        cells = []
        for guess in shown:
            share, pixels = shares[true, guess], matrix[true, guess]
            diagonal = ' class="diagonal"' if true == guess else ""
            if pixels == 0:  # most cells of a large matrix: no colour, number or hover to carry
                cells.append(f"<td{diagonal}></td>")
                continue
            written = "&lt;1" if share < 0.005 else f"{100 * share:.0f}"
            ink = "#fff" if share > 0.5 else "#1f2328"
            unit = "pixel" if pixels == 1 else "pixels"
            true_name, guessed_name = isolated(classes.names[true]), isolated(classes.names[guess])
            hover = (f"true {true_name}, predicted {guessed_name}: {count(pixels)} {unit}"
                     f" ({100 * share:.1f} % of the true {true_name})")  # fmt: skip
            cells.append(f'<td{diagonal} style="background:{_cell_colour(share)};color:{ink}" '
                         f'title="{text(hover)}">{written}</td>')  # fmt: skip
        rows.append(f'<tr><th scope="row">{user_text(classes.names[true])}</th>{"".join(cells)}'
                    f'<td class="total">{count(total)}</td></tr>')  # fmt: skip
    left_out = len(matrix) - len(shown)
    absent = (
        f" The {left_out} absent classes are left out: their rows and columns are all zero."
        if left_out
        else ""
    )
    return f"""<section id="confusion">
<h2>Confusion matrix</h2>
<p class="note">Rows are the true class, columns the predicted one. Each cell is the percentage of
the row's true pixels predicted as the column's class (the diagonal is the class's recall); hover
for the pixel count. The last column counts each true class's pixels.{absent} All counts:
confusion_matrix.csv beside this page.</p>
<div class="scroll"><table class="confusion">
<thead><tr><th scope="col" class="corner">true \\ predicted</th>{head}<th scope="col" class="turned">
<span>true pixels</span></th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table></div>
<p class="scale" aria-hidden="true"><span>0 %</span><span class="gradient"></span><span>100 % of the true
class's pixels</span></p>
</section>"""


# ---------------------------------------------------------------------------------------- examples


def _legend(example_sets: list[ExampleSet], classes: Classes) -> str:
    """Swatches of every class (and void) in the shown masks."""
    masks = [
        mask for group in example_sets for shown in group.examples for mask in (shown.truth, shown.prediction)
    ]
    if not masks:
        return ""
    present = sorted(set(np.unique(np.concatenate([mask.ravel() for mask in masks])).tolist()))
    items = []
    for label in present:
        if label == VOID_LABEL:
            items.append(
                f"<li>{_swatch(classes.palette()[3 * VOID_LABEL : 3 * VOID_LABEL + 3])}void (not scored)</li>"
            )
        elif label < len(classes):
            items.append(f"<li>{_swatch(classes.colors[label])}{user_text(classes.names[label])}</li>")
    return f'<ul class="legend" aria-label="mask colours">{"".join(items)}</ul>'


def _example(shown: Example, classes: Classes) -> str:
    identity = text(isolated(shown.image_id))  # in attributes
    pairs = [f"{user_text(name)} {user_text(value)}" for name, value in shown.scores]
    scores = " · ".join(f"<b>{pair}</b>" if position == 0 else pair for position, pair in enumerate(pairs))
    return f"""<figure class="example">
<div class="triple labels" aria-hidden="true"><span>image</span><span>ground truth</span>
<span>prediction</span></div>
<div class="triple"><img alt="{identity}: image" src="{_picture_uri(shown.picture)}">
<img class="mask" alt="{identity}: ground truth" src="{_mask_uri(shown.truth, classes)}">
<img class="mask" alt="{identity}: prediction" src="{_mask_uri(shown.prediction, classes)}"></div>
<figcaption><span class="id">{user_text(shown.image_id)}</span> {scores}</figcaption>
</figure>"""


def examples_section(example_sets: list[ExampleSet], classes: Classes) -> str:
    parts = []
    for group in example_sets:
        if group.examples:
            shown = "\n".join(_example(item, classes) for item in group.examples)
            body = f'<div class="examples">\n{shown}\n</div>'
        else:
            body = ""
        heading = f'<h3 id="{text(group.anchor)}">{user_text(group.title)}</h3>'
        parts.append(f'{heading}\n<p class="note">{user_text(group.note)}</p>\n{body}')
    return f"""<section id="examples">
<h2>Example predictions</h2>
{_legend(example_sets, classes)}
{chr(10).join(parts)}
</section>"""


# ---------------------------------------------------------------------------------------- training


def training_section(curve: list[Figure], note: str) -> str:
    """The curve's panels, each with its smallest text in PNG pixels (`data-smallest-font-px`): the
    browser test checks it reads at 10 px or more at the width the page shows it."""
    images = []
    for figure in curve:
        title = figure.axes[0].get_title() if figure.axes else "training curve"
        source = _data_uri(figure_png(figure, CHART_DPI), "image/png")
        smallest = smallest_font_px(figure, CHART_DPI, draw=False)  # figure_png drew it
        images.append(f'<img class="chart" alt="training curve: {text(isolated(title))}" '
                      f'data-smallest-font-px="{smallest:.2f}" src="{source}">')  # fmt: skip
    charts = f'<div class="charts">{"".join(images)}</div>' if images else ""
    return (
        f'<section id="training">\n<h2>Training curve</h2>\n<p class="note">{user_text(note)}</p>\n'
        f"{charts}\n</section>"
    )


def _breakable(name: str) -> str:
    """A field name that may wrap after its dots and underscores on a narrow screen (isolated as
    `user_text` isolates)."""
    wrapping = text(_balanced_isolates(name)).replace(".", ".<wbr>").replace("_", "_<wbr>")
    return f"<bdi>{wrapping}</bdi>" if _reorders(name) else wrapping


def config_section(config: list[tuple[str, str]], note: str) -> str:
    """The config's fields as name/value pairs in newspaper columns (three on a wide screen)."""
    pairs = "\n".join(
        f"<div><dt>{_breakable(name)}</dt><dd>{user_text(value)}</dd></div>" for name, value in config
    )
    listing = f'<dl class="config">\n{pairs}\n</dl>' if pairs else ""
    return (
        f'<section id="config">\n<h2>Training configuration</h2>\n<p class="note">{user_text(note)}</p>\n'
        f"{listing}\n</section>"
    )


# -------------------------------------------------------------------------------------------- page

CONTENTS = (
    ("per-class", "Per-class scores"), ("confusion", "Confusion matrix"), ("examples", "Example predictions"),
    ("training", "Training curve"), ("config", "Training configuration"),
)  # fmt: skip

STYLE = """
:root{--ink:#1f2328;--muted:#59636e;--line:#d1d9e0;--card:#f6f8fa;--link:#0969da}
*{box-sizing:border-box}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
 color:var(--ink);max-width:1120px;margin:0 auto;padding:16px;overflow-wrap:break-word}
h1{font-size:1.55em;line-height:1.25;margin:0 0 .6em;overflow-wrap:anywhere}
h2{font-size:1.3em;margin:1.8em 0 .5em;padding-bottom:.25em;border-bottom:1px solid var(--line)}
h3{font-size:1.08em;margin:1.4em 0 .2em}
a{color:var(--link)}
.note{color:var(--muted);margin:.3em 0 .8em;max-width:75ch;overflow-wrap:anywhere}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:16px 20px}
.facts{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:3px 16px;margin:0}
.facts dt{color:var(--muted)}
.facts dd{margin:0;overflow-wrap:anywhere}
.headline{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(230px,100%),1fr));gap:12px;margin-top:16px}
.metric{background:#fff;border:1px solid var(--line);border-radius:6px;padding:10px 14px}
.metric .name{font-weight:600}
.metric .value{font-size:2em;font-weight:600;line-height:1.2;font-variant-numeric:tabular-nums}
.metric p{margin:.3em 0 0;color:var(--muted);font-size:.9em}
nav.toc{margin:14px 0 0;display:flex;flex-wrap:wrap;gap:4px 18px;font-size:.95em}
nav.toc b{color:var(--muted);font-weight:normal}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:right;vertical-align:middle;
 line-height:1.35}
thead th{vertical-align:bottom}
thead th:first-child{text-align:left}
th[scope=row]{text-align:left;font-weight:normal;white-space:nowrap}
.swatch{display:inline-block;width:.9em;height:.9em;border:1px solid #0006;border-radius:2px;
 margin-right:.45em;vertical-align:-.1em}
td.iou{white-space:nowrap}
.bar{display:inline-block;width:90px;height:.6em;margin-left:.6em;background:#eaeef2;border-radius:3px;
 vertical-align:middle;overflow:hidden}
.bar span{display:block;height:100%;background:#2f81f7}
details.absent{margin:.6em 0;color:var(--muted)}
details.absent p{margin:.3em 0 0 1.2em;overflow-wrap:anywhere}
table.confusion th,table.confusion td{border:1px solid #fff;padding:0;font-size:.8em}
table.confusion td{width:2.6em;min-width:2.6em;height:2.2em;text-align:center;background:#f7fbff}
table.confusion td.total{width:auto;padding:0 8px;text-align:right;color:var(--muted)}
table.confusion th[scope=row]{padding:0 8px}
table.confusion td.diagonal{outline:1px solid #0003;outline-offset:-1px}
th.turned{height:9em;vertical-align:bottom;padding:4px 0}
th.turned span{writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap;font-weight:normal}
th.corner{vertical-align:bottom;text-align:left;font-weight:normal;color:var(--muted);padding:4px 8px}
.scale{display:flex;align-items:center;gap:8px;color:var(--muted);font-size:.85em;flex-wrap:wrap}
.scale .gradient{display:inline-block;width:160px;height:.8em;border:1px solid var(--line);
 background:linear-gradient(to right,#f7fbff,#08306b)}
.legend{list-style:none;padding:0;margin:.4em 0;display:flex;flex-wrap:wrap;gap:4px 16px;font-size:.92em}
.triple{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:6px}
.triple.labels{color:var(--muted);font-size:.8em;line-height:1.3}
.examples{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(420px,100%),1fr));gap:14px 16px}
.example{margin:0}
.triple img{width:100%;height:auto;aspect-ratio:1;object-fit:contain;background:#eef1f4;display:block}
img.mask{image-rendering:pixelated}
figcaption{font-size:.85em;margin-top:3px;overflow-wrap:anywhere}
figcaption .id{color:var(--muted);margin-right:.4em}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(340px,100%),1fr));gap:12px}
img.chart{width:100%;height:auto;display:block}
dl.config{columns:2 400px;column-gap:32px;margin:0}
dl.config div{display:grid;grid-template-columns:minmax(0,16em) minmax(0,1fr);gap:0 10px;
 break-inside:avoid;padding:3px 0;border-bottom:1px solid var(--line)}
dl.config dt{color:var(--muted);overflow-wrap:break-word}
dl.config dd{margin:0;overflow-wrap:anywhere}
@media (max-width:700px){body{padding:10px}.card{padding:12px}th,td{padding:4px 5px}.bar{display:none}
 table.classes{font-size:.9em}
 .facts{grid-template-columns:minmax(0,1fr)}.facts dt{margin-top:4px}
 dl.config div{grid-template-columns:minmax(0,1fr) minmax(0,1fr)}}
"""


def render(page: ReportPage) -> str:
    """The whole page as text."""
    toc = " ".join(f'<a href="#{anchor}">{name}</a>' for anchor, name in CONTENTS)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{text(_balanced_isolates(page.title))}</title>
<style>{STYLE}</style>
</head><body>
{summary_card(page)}
<nav class="toc" aria-label="contents"><b>On this page:</b> {toc}</nav>
{per_class_section(page.per_class, page.classes)}
{confusion_section(page.matrix, page.classes)}
{examples_section(page.example_sets, page.classes)}
{training_section(page.curve, page.curve_note)}
{config_section(page.config, page.config_note)}
</body></html>
"""


def write_html(out: Path, page: ReportPage) -> Path:
    """`out/report.html`, written whole or not at all."""
    return write_text(Path(out) / "report.html", render(page))
