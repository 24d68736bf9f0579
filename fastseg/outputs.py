"""Which existing files an output may replace: only a file fastseg itself wrote for the same role.

Before this guard, only predict's masks were checked, and only against its inputs: a user's own
`a.overlay.jpg` beside `a.jpg`, a `model.pth` named as `export --out`, any file named as an
export, and an earlier report were all replaced without a word. Every writer now asks `guard`
first. Each kind of file fastseg writes carries its role inside it, so the answer travels with
the file (a copied or renamed output is still recognised, a user's file of the same name never is):

- mask: a PNG with the text chunk `fastseg: mask` (`fastseg.imaging.masks.write_mask`);
- overlay: a JPEG with the comment `fastseg overlay` (`fastseg.inference.predict.save_overlay`);
- export: an ONNX file whose metadata holds fastseg's description (`fastseg.model.exported`);
- report: a folder whose `report.html` is titled `fastseg report` (every version wrote that), or,
  without a `report.html` (a report of an earlier fastseg stopped before its page, by a full disk
  say: reports are now swapped in whole, `fastseg.inference.report_folder`), whose `metrics.json`
  is a report's (`model`, `subset`, `class_iou`), written first;
- lr-find plot: a PNG with the text chunk `fastseg: lr-find` (`fastseg.visualization.charts`);
- data sample: `train_ds_sample.png` / `val_ds_sample.png` (train, show-data), a PNG with the text
  chunk `fastseg: data sample` (`fastseg.visualization.figures.save_batch_sample`);
- lr-find sweep: `lr_find.csv`, which has no place for a mark: recognised by its content, the
  header `lr,loss` and nothing but pairs of numbers below it (a file of exactly that shape holds
  nothing a new sweep does not).
- predictions log: `predict`'s `predictions.csv`, recognised by its header's first columns
  (`path,width,height,status,error,seconds`, every version's), read from its first bytes only.

A refusal is one line naming the file and the option that allows the role to replace it, which
each writer passes to `guard`: `--replace-foreign` for predict's masks and overlays and report's
folder; none for export and lr-find, whose refusal says to remove the file first (no option
replaces a user's file there); `--force` only as `guard`'s default, which no writer relies on.
"""

from __future__ import annotations

import mmap
from pathlib import Path

from fastseg.errors import FastsegError

MASK_TEXT = ("fastseg", "mask")  # PNG tEXt key and value of every mask fastseg writes
OVERLAY_COMMENT = b"fastseg overlay"  # JPEG comment of every overlay
EXPORT_MARK = b"fastseg-export/"  # the format string inside an exported file's metadata
REPORT_MARK = "<title>fastseg report"
LR_FIND_TEXT = ("fastseg", "lr-find")  # PNG tEXt key and value of `fastseg lr-find`'s plot
SAMPLE_TEXT = ("fastseg", "data sample")  # PNG tEXt of train's and show-data's sample figures
SWEEP_HEADER = "lr,loss"  # `lr_find.csv`'s first line
MAX_SWEEP_BYTES = 1 << 20  # fastai's sweep is at most a few thousand rows
PREDICTIONS_HEADER = b"path,width,height,status,error,seconds,"  # predictions.csv, every version
ROLES = ("mask", "overlay", "export", "report", "lr-find plot", "lr-find sweep", "data sample",
         "predictions log")  # fmt: skip


class OutputRefused(FastsegError):
    """An output would replace a file fastseg did not write for that role."""


def written_by_fastseg(path: Path, role: str) -> bool:
    """Whether the existing `path` is a file (a folder, for reports) fastseg wrote as `role`."""
    if role not in ROLES:
        raise ValueError(f"unknown output role {role!r}")
    try:
        if role == "report":
            page = path / "report.html"
            if path.is_dir() and not page.exists():  # a report stopped before its page (a full disk)
                return _is_report_metrics(path / "metrics.json")
            if not (path.is_dir() and page.is_file()):
                return False
            return REPORT_MARK in page.read_text(encoding="utf-8", errors="replace")[:4096]
        if not path.is_file():
            return False
        if role == "lr-find sweep":
            return _is_sweep(path)
        if role == "predictions log":
            with path.open("rb") as file:
                return file.read(len(PREDICTIONS_HEADER)) == PREDICTIONS_HEADER
        if role == "export":
            with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return data.find(EXPORT_MARK) >= 0
        from PIL import Image

        with Image.open(path) as image:
            if role == "mask":
                return image.format == "PNG" and image.info.get(MASK_TEXT[0]) == MASK_TEXT[1]
            if role == "lr-find plot":
                return image.format == "PNG" and image.info.get(LR_FIND_TEXT[0]) == LR_FIND_TEXT[1]
            if role == "data sample":
                return image.format == "PNG" and image.info.get(SAMPLE_TEXT[0]) == SAMPLE_TEXT[1]
            return image.format == "JPEG" and image.info.get("comment") == OVERLAY_COMMENT
    except (OSError, ValueError, SyntaxError):  # unreadable, empty, not an image: not ours
        return False


def guard(path: Path, role: str, force: bool = False, option: str | None = "--force") -> None:
    """Raise `OutputRefused` unless writing `path` as `role` replaces nothing but fastseg's own
    `role` output: absent, ours, or `force` given. `option`: what allows it (None: nothing does)."""
    path = Path(path)
    if force or not (path.exists() or path.is_symlink()) or written_by_fastseg(path, role):
        return
    kind = "folder" if path.is_dir() else "file"
    if kind == "folder" and role != "report":  # a file never replaces a folder: no option allows it
        option = None
    raise OutputRefused(
        f"{path}: an existing {kind} that fastseg did not write as {_article(role)} {role}; "
        + (
            f"choose another output or use {option} to replace it"
            if option
            else "choose another output or remove it first"
        )
    )


def _is_report_metrics(path: Path) -> bool:
    from fastseg.structured_files import load_json

    try:
        values = load_json(path, "report metrics")
    except FastsegError:
        return False
    return isinstance(values, dict) and {"model", "subset", "class_iou"} <= set(values)


def _is_sweep(path: Path) -> bool:
    """`lr,loss` and then only rows of two numbers: what `save_lr_find` writes."""
    if path.stat().st_size > MAX_SWEEP_BYTES:
        return False
    header, *rows = path.read_text(encoding="utf-8").splitlines() or [""]
    if header != SWEEP_HEADER:
        return False
    for row in rows:
        cells = row.split(",")
        if len(cells) != 2:
            return False
        for cell in cells:
            float(cell)  # ValueError: not ours
    return True


def _article(role: str) -> str:
    return "an" if role[0] in "aeioul" else "a"  # "an lr-find plot": the letter is read "el"
