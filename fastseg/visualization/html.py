"""`report.html`: one self-contained page (figures embedded), readable offline and mailable."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd

from fastseg.atomic import write_text
from fastseg.runs.folder import CONFIG, TRAINING_CURVE, RunFolder


def _embed(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def run_sections(run: RunFolder | None) -> str:
    """The run behind the model: its training curve and the config it trained with (config.json)."""
    if run is None:
        return ""
    parts = []
    if run.file(TRAINING_CURVE).is_file():
        parts.append(f"<h2>training curve</h2>\n{_embed(run.file(TRAINING_CURVE))}")
    try:
        train = json.loads(run.file(CONFIG).read_text())["train"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return "\n".join(parts)
    rows = [(f"augment.{name}", item) for name, item in train.pop("augment", {}).items()]
    rows = [*train.items(), *rows]
    cells = "\n".join(f"<tr><th>{html.escape(str(name))}</th><td>{html.escape(str(value))}</td></tr>"
                      for name, value in rows)  # fmt: skip
    parts.append(f'<h2>training config</h2>\n<table class="config">\n{cells}\n</table>')
    return "\n".join(parts)


def write_html(out: Path, metrics: dict, per_class: pd.DataFrame, figures: list[Path],
               run: RunFolder | None = None) -> Path:  # fmt: skip
    """One self-contained page: headline metrics, per-class table, every figure embedded, and the
    run's training curve and config when `run` is given."""
    headline = pd.DataFrame(
        [
            (name, metrics[name])
            for name in ("pixel_accuracy", "mean_class_accuracy", "mean_iou", "frequency_weighted_iou")
        ],  # fmt: skip
        columns=["metric", "value"],
    )
    sections = "\n".join(f"<h2>{html.escape(path.stem.replace('_', ' '))}</h2>\n{_embed(path)}"
                         for path in figures)  # fmt: skip
    # Every value below is escaped: a run folder, a model path or a split can hold markup.
    subset, images, model = (html.escape(str(metrics[key])) for key in ("subset", "images", "model"))
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>fastseg report: {subset}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto}}img{{max-width:100%}}
table{{border-collapse:collapse}}
td,th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}}
.config th,.config td{{text-align:left}}</style>
</head><body>
<h1>fastseg report — {subset} split, {images} images</h1>
<p>model: {model}<br>evaluated at each image's original resolution; void pixels excluded.</p>
{headline.to_html(index=False, float_format=lambda v: f"{v:.4f}")}
<h2>per class</h2>
{per_class.to_html(index=False, float_format=lambda v: f"{v:.4f}", na_rep="absent")}
{sections}
{run_sections(run)}
</body></html>
"""
    return write_text(out / "report.html", page)
