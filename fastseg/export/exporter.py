"""`fastseg export`: a run's `model.pth` as an ONNX file beside it (or at `--out`), fp32 or INT8.

Steps: load the model, trace it to ONNX with its description in the metadata
(`fastseg.export.onnx_file`); with `--int8`, quantise it on the run's training images and score
both on its validation half (`fastseg.export.int8`) before anything is written. The file is
written whole or not at all (`fastseg.atomic`).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fastseg.atomic import DISK_FULL, left_by_dead_process, remove_stale_temporaries
from fastseg.data.factory import open_dataset
from fastseg.errors import CheckpointError, FastsegError, OptionError
from fastseg.export import CALIBRATION_IMAGES, FORMATS
from fastseg.export.int8 import MAX_MIOU_DROP, Int8Check, quantize_checked, require_quantization
from fastseg.export.onnx_file import export_graph, require_onnx, save_onnx, with_description
from fastseg.inference.runtime import ONNX_SUFFIX
from fastseg.inference.segmented import Progress, no_progress
from fastseg.launch.device import loader_workers
from fastseg.model.checkpoint import load_model, resolve_model_path
from fastseg.model.exported import SOURCE_DIGEST, description_json, file_sha256
from fastseg.outputs import guard
from fastseg.paths import UNUSABLE_PATH, path_problem
from fastseg.runs.folder import INT8_FILENAME, ONNX_FILENAME, RunFolder


@dataclass
class ExportResult:
    path: Path
    precision: str  # fp32 or int8
    check: Int8Check | None = None  # INT8's validation figures


def export(
    model: Path | str,
    format: str = "onnx",
    out: Path | None = None,
    int8: bool = False,
    calibration_images: int = CALIBRATION_IMAGES,
    data: Path | None = None,
    max_drop: float = MAX_MIOU_DROP,
    force: bool = False,
    batch_size: int = 8,
    num_workers: int | None = None,
    progress: Progress = no_progress,
) -> ExportResult:
    """Export the model of a run folder or `model.pth` to `out` (default: `model.onnx`, or
    `model.int8.onnx` with `int8`, beside the model). INT8 needs the run folder: its training
    images calibrate, its validation half measures the mIoU cost (refused above `max_drop`
    unless `force`); `data` overrides the data folder recorded in its config.json."""
    if format not in FORMATS:
        raise OptionError(f"--format {format}: choose one of {', '.join(FORMATS)}")
    path = resolve_model_path(model)
    if path.suffix.lower() == ONNX_SUFFIX:
        raise FastsegError(f"{path}: already an ONNX export; pass the run folder or its model.pth")
    out = Path(out) if out is not None else path.with_name(INT8_FILENAME if int8 else ONNX_FILENAME)
    check_out_path(out)
    guard(out, "export", option=None)  # never a model.pth, a photo, or any file not an export
    if out.suffix.lower() != ONNX_SUFFIX:  # predict, report and serve tell an ONNX file by its suffix
        raise FastsegError(f"{out}: an ONNX file's name ends in {ONNX_SUFFIX} (predict, report and serve "
                           "would read any other as a torch model.pth); choose another --out")  # fmt: skip
    remove_stale_temporaries(out.parent, [out.name])  # the .model.onnx.PID.tmp of an export killed with -9
    remove_dead_scratch()  # and an INT8 export's scratch folder
    try:  # a folder nothing can be written in (/proc, /sys): said now, not after tracing the graph
        tempfile.TemporaryFile(dir=out.parent, prefix=f".{out.name[:200]}.").close()
    except OSError as error:
        raise FastsegError(f"{out}: cannot write there ({error.strerror or error})") from None
    require_onnx()
    if int8:  # the run's files first: a wrong folder is told before minutes of work
        require_quantization()  # and a machine without onnxruntime (fp32 needs only onnx, onnxscript)
        run = RunFolder.of_model(path)  # a folder with split.json, or one line saying it is not a run
        dataset = open_dataset(data or run.data_folder())
        split = run.read_split(dataset, ("valid",))  # a lost validation image: one line naming split.json
    try:
        with path.open("rb") as opened:  # the digest of the very bytes loaded, for `predict --runtime auto`
            source = {SOURCE_DIGEST: file_sha256(opened)}  # (a model.pth replaced meanwhile: another inode)
            opened.seek(0)
            loaded = load_model(path, opened=opened)
    except OSError as error:  # unreadable (permissions, I/O): one line, as load_model says it
        raise CheckpointError(f"{path}: not a readable fastseg model ({error.strerror or error})") from None
    if int8:  # INT8's check scored against other classes would pass or fail for no reason
        from fastseg.inference.report import require_same_classes  # report's check (pandas, matplotlib)

        require_same_classes(loaded.class_set, dataset)
    try:  # metadata an export cannot carry (NaN, a tensor): said before any work, naming the file
        description_json(loaded)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
    if not int8:
        save_onnx(with_description(export_graph(loaded), loaded, precision="fp32", **source), out)
        return ExportResult(out, "fp32")
    with scratch_folder() as scratch:
        fp32 = save_onnx(with_description(export_graph(loaded), loaded, precision="fp32", **source),
                         scratch / ONNX_FILENAME)  # fmt: skip
        proto, check = quantize_checked(fp32, loaded, dataset, split.train, split.valid, calibration_images,
                                        batch_size, loader_workers(num_workers), max_drop, force,
                                        progress)  # fmt: skip
    check_record = {**check.to_dict(), "forced": force}
    save_onnx(with_description(proto, loaded, precision="int8", int8=check_record, **source), out)
    return ExportResult(out, "int8", check)


def check_out_path(out: Path) -> None:
    """One line unless `out` can name a new file in an existing folder: not a folder itself, its
    folder there. Asked with `stat`, not `is_dir` alone: `is_dir` raised ENAMETOOLONG (a name past
    255 bytes: a traceback) and answered False for a symbolic link loop ("no such folder")."""
    for checked, role in ((out, "file"), (out.parent, "folder")):
        try:
            mode = checked.stat().st_mode
        except FileNotFoundError:
            if role == "folder":
                raise FastsegError(f"{checked}: no such folder for --out") from None
            continue
        except UNUSABLE_PATH as error:
            raise FastsegError(f"{checked}: unusable for --out ({path_problem(error)})") from None
        if role == "file" and stat.S_ISDIR(mode):
            raise FastsegError(f"{out}: is a folder; --out names the file to write")
        if role == "folder" and not stat.S_ISDIR(mode):
            raise FastsegError(f"{checked}: no such folder for --out (a file stands there)")


SCRATCH_PREFIX = "fastseg-export."
SCRATCH = re.compile(r"^fastseg-export\.(\d+)\.[a-z0-9_]{8}$")  # `tempfile.mkdtemp`'s 8 characters


@contextmanager
def scratch_folder() -> Iterator[Path]:
    """A folder in the system's temporary folder for INT8's intermediate graphs (the fp32 graph,
    the prepared one, onnxruntime's own temporaries: `tempfile.tempdir` points into it meanwhile,
    so its `ort.quant.*` go there too), removed at the end. Named after this process
    (`fastseg-export.PID.XXXXXXXX`): a `kill -9` (the OOM killer, in calibration) left 75 MB there
    for VGG16-BN, for ever, and the next export removes it now (`remove_dead_scratch`). A full
    disk there, as write(2) says it, names no file: the folder is named, so its disk, not --out's.
    `tempfile.tempdir` is the process's: not for an export on one thread beside other work."""
    folder = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}."))
    before = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield folder
    except OSError as error:
        if error.errno in DISK_FULL and not error.filename:
            raise OSError(error.errno, error.strerror, str(folder)) from error
        raise
    finally:
        tempfile.tempdir = before
        shutil.rmtree(folder, ignore_errors=True)


def remove_dead_scratch() -> list[Path]:
    """The scratch folders (`scratch_folder`) of exports whose process is gone; another user's,
    which this one cannot remove, are passed over."""
    try:  # no usable temporary folder at all (FileNotFoundError): nothing to clear in it
        entries = list(Path(tempfile.gettempdir()).iterdir())
    except OSError:
        return []
    dead = [entry for entry in entries if (match := SCRATCH.match(entry.name)) and entry.is_dir()
            and not entry.is_symlink() and left_by_dead_process(entry, int(match.group(1)))]  # fmt: skip
    for entry in dead:
        shutil.rmtree(entry, ignore_errors=True)
    return dead
