"""`report.html`: one self-contained page (figures embedded), readable offline and mailable."""

from __future__ import annotations

import base64
from pathlib import Path

import pandas as pd

from fastseg.atomic import write_text


def _embed(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{path.stem}" src="data:image/png;base64,{data}">'


def write_html(out: Path, metrics: dict, per_class: pd.DataFrame, figures: list[Path]) -> Path:
    """One self-contained page: headline metrics, per-class table, every figure embedded."""
    headline = pd.DataFrame(
        [
            (name, metrics[name])
            for name in ("pixel_accuracy", "mean_class_accuracy", "mean_iou", "frequency_weighted_iou")
        ],  # fmt: skip
        columns=["metric", "value"],
    )
    sections = "\n".join(f"<h2>{path.stem.replace('_', ' ')}</h2>\n{_embed(path)}" for path in figures)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>fastseg report: {metrics["subset"]}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto}}img{{max-width:100%}}
table{{border-collapse:collapse}}
td,th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}}</style>
</head><body>
<h1>fastseg report — {metrics["subset"]} split, {metrics["images"]} images</h1>
<p>model: {metrics["model"]}<br>evaluated at each image's original resolution; void pixels excluded.</p>
{headline.to_html(index=False, float_format=lambda v: f"{v:.4f}")}
<h2>per class</h2>
{per_class.to_html(index=False, float_format=lambda v: f"{v:.4f}", na_rep="absent")}
{sections}
</body></html>
"""
    return write_text(out / "report.html", page)
