"""`fastseg runs`: one row per run folder, to compare runs at a glance or in a script.

Everything comes from the run's own files: config.json (recipe, data set, planned epochs, start
date), history.csv (epochs run, best validation scores, time spent), last.json (status) and, if
`fastseg report` wrote one in its default place, RUN/report/metrics.json (test mIoU).
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

from fastseg.errors import FastsegError, clipped, first_line, quoted
from fastseg.paths import expanded, walk
from fastseg.runs.folder import CONFIG, HISTORY, LAST_STATE, MODEL_FILENAME, REPORT, RunFolder
from fastseg.structured_files import load_json

RUN_FILES = (HISTORY, LAST_STATE, MODEL_FILENAME)  # beside a config.json, they make a run folder
NUMBERS = ("epochs", "planned_epochs", "valid_miou", "valid_pixel_accuracy", "test_miou", "duration")
SCORES = ("valid_miou", "valid_pixel_accuracy", "test_miou")  # shares: a value outside 0-1 is no score
# config.json's fields a row shows as text: anything else there (`"data": 5`) is a damaged file,
# never a made-up name ("5/train")
TEXT_FIELDS = {"recipe": "a recipe's name", "data": "the data set's path", "train_set": "a list's name",
               "keep": "best or final"}  # fmt: skip
# What describing one run may raise when one of its files is damaged or edited by hand.
DAMAGE = (OSError, ValueError, TypeError, KeyError, AttributeError, IndexError, FastsegError)

COLUMNS = (
    "name", "recipe", "data_set", "epochs", "planned_epochs", "valid_miou", "valid_pixel_accuracy",
    "test_miou", "duration", "date", "status",
)  # fmt: skip


def find_runs(root: Path, unreadable: list[Path] | None = None) -> list[RunFolder]:
    """Every folder under `root` (itself included) holding a training config.json; the folders
    this user may not read, which are not searched, go to `unreadable` when one is given."""
    root = Path(root)
    if not root.is_dir():
        raise FastsegError(f"{root}: no such folder")
    runs = []
    for config in sorted(path for path in walk(root, unreadable) if path.name == CONFIG):
        try:
            ours = isinstance(load_json(config, "run config").get("train"), dict)
        except (FastsegError, AttributeError):  # unreadable (not UTF-8, not JSON, a FIFO), or not a mapping
            ours = False
        # another tool's config.json, unless the folder holds run files: then a damaged run
        if ours or any((config.parent / name).is_file() for name in RUN_FILES):
            runs.append(RunFolder(config.parent))
    return runs


def run_row(run: RunFolder, root: Path) -> dict[str, Any]:
    """One row: the values of `COLUMNS` (None where the run has no such value yet)."""
    config_path = run.file(CONFIG)
    train = load_json(config_path, "run config")["train"]  # the strict reader: no NaN, no 1e999
    _check_text_fields(train, config_path)
    row: dict[str, Any] = {
        "name": _name(run, root),
        "recipe": train.get("recipe"),
        "data_set": data_set_label(train),
        "epochs": 0,
        "planned_epochs": train.get("epochs"),
        "valid_miou": None,
        "valid_pixel_accuracy": None,
        "test_miou": None,
        "duration": 0.0,
        "date": datetime.fromtimestamp(config_path.stat().st_mtime).isoformat(" ", "minutes"),
        "status": run.status(),
    }
    if run.file(HISTORY).exists():  # a FIFO or a device there is a damaged history, not none
        history = run.read_history()
        row["epochs"] = len(history)
        kept = _kept_epoch(history, _keep_rule(train, config_path))
        if kept is not None:
            row["valid_miou"] = float(kept["valid_miou"])
            row["valid_pixel_accuracy"] = float(kept["valid_pixel_accuracy"])
        row["duration"] = sum(run.read_epoch_seconds())
    report = run.read_report_metrics()  # damaged: the row says so (`checked_row`)
    exported = report and Path(str(report.get("model", ""))).suffix == ".onnx"  # not model.pth's score
    if report and not exported and report.get("subset") == "test" and report.get("mean_iou") is not None:
        if run.scored_model_pth(report):
            row["test_miou"] = report["mean_iou"]  # checked by `checked_row`
        else:  # a score, but of another model: no test mIoU, and the row says why
            row["status"] = f"{row['status']}; {REPORT}/metrics.json is of another {MODEL_FILENAME}"
    return row


def _kept_epoch(history: Any, keep: str) -> Any:  # noqa: ANN401 - a pandas row, or None
    """history.csv's row of the epoch whose weights model.pth holds (or will, for a run still
    going): the best validation mIoU under `keep: best`, the last epoch under `keep: final` (the
    fast recipe's). The table showed the best epoch's for both, so a fast run was listed above
    the score of the model it made. None where no epoch has a score."""
    scored = history[history["valid_miou"].notna()]
    if not len(scored):
        return None
    if keep == "best":
        return scored.loc[scored["valid_miou"].idxmax()]
    last = history.iloc[-1]
    return None if math.isnan(float(last["valid_miou"])) else last


def _keep_rule(train: dict[str, Any], path: Path) -> str:
    """config.json's `keep` (`best` for a run from before `--keep`, which kept the best epoch), or
    a `FastsegError` naming the file where it is no rule `train` knows: it was shown as `final`."""
    from fastseg.training.config import KEEP_RULES  # no fastai: the training package's plain config

    keep = train.get("keep") or "best"
    if keep not in KEEP_RULES:
        raise FastsegError(f"{path}: 'train' field 'keep' must be one of {', '.join(KEEP_RULES)}, got "
                           f"{quoted(str(keep), 40)}")  # fmt: skip
    return keep


def _check_text_fields(train: Any, path: Path) -> None:
    """A `FastsegError` naming `path` and the field when one of `TEXT_FIELDS` holds anything but
    text (absent or null: the run has no such value, shown as `-`)."""
    if not isinstance(train, dict):
        return  # `run_row` fails on it as it always did, and the row says so
    for name, meaning in TEXT_FIELDS.items():
        value = train.get(name)
        if value is not None and not isinstance(value, str):
            raise FastsegError(f"{path}: 'train' field {name!r} must be text ({meaning}), "
                               f"got {type(value).__name__}")  # fmt: skip


def data_set_label(train: dict[str, Any]) -> str:
    """The data set a run trained on, as a person names it: `voc/trainaug` (VOC's training list
    matters), `mydata` for a dataset.yaml data set (issue #21: it showed `mydata/train`, though
    `--train-set` is VOC-only and refused there; config.json's train_set "train" means nothing for
    such a set). A data folder no longer found is told by its path alone (`.yaml`), else shown as VOC."""
    from fastseg.data.factory import is_dataset_file  # torch-free, but not needed for `runs --help`

    given = str(train.get("data") or "")
    data = Path(given)
    yaml_file = data.suffix.lower() in (".yaml", ".yml")
    own = yaml_file or (bool(given) and is_dataset_file(data))
    folder = data.parent if yaml_file else data
    name = (folder.name or expanded(folder).resolve().name) if given else ""  # "." names the cwd
    return "/".join(part for part in (name, None if own else train.get("train_set")) if part)


def runs_table(root: Path, sort: str = "date", reverse: bool = False,
               unreadable: list[Path] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """The rows of every run under `root`, sorted by `sort` (runs without that value last); the
    folders not searched, for want of permission, go to `unreadable` when one is given."""
    if sort not in COLUMNS:
        raise FastsegError(f"--sort {sort}: choose one of {', '.join(COLUMNS)}")
    rows = [checked_row(run, Path(root)) for run in find_runs(root, unreadable)]
    present = [row for row in rows if _known(row[sort])]
    missing = [row for row in rows if not _known(row[sort])]
    return sorted(present, key=lambda row: row[sort], reverse=reverse) + missing


def checked_row(run: RunFolder, root: Path) -> dict[str, Any]:
    """`run_row(run)`, with every value of the type its column holds: one damaged or hand-edited
    run is a row saying what is wrong with it, and never hides the other rows (issue #19)."""
    try:
        row = run_row(run, root)
    except DAMAGE as error:
        reason = first_line(error)
        row = {name: None for name in COLUMNS}
        status = f"damaged ({type(error).__name__}: {clipped(reason, 240)})"  # room for the file's path
        row.update(name=_name(run, root), epochs=0, status=status)
        return row
    unreadable = [name for name in NUMBERS if row[name] is not None and not _number(row[name])]
    unreadable += [name for name in SCORES if name not in unreadable and row[name] is not None
                   and not 0 <= row[name] <= 1]  # fmt: skip
    for name in unreadable:
        row[name] = None
    for name in set(COLUMNS) - set(NUMBERS):
        row[name] = None if row[name] is None else str(row[name])
    if unreadable:
        row["status"] = f"{row['status']}; unreadable {', '.join(unreadable)}"
    return row


def _name(run: RunFolder, root: Path) -> str:
    return str(run.path.relative_to(root)) if run.path != root else run.path.name


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _known(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))
