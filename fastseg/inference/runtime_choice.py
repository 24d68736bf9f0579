"""`--runtime auto|torch|onnx|int8`: which of a run's model files predict (and report) run, and why.

A run folder may hold `model.pth` (torch), `model.onnx` (onnxruntime fp32) and `model.int8.onnx`
(onnxruntime INT8, `fastseg export --int8`). INT8 is the fastest on a CPU (about twice torch's
forward pass, benchmarks/README.md) but its masks can differ from fp32's, so `auto` takes it only
when its file records an accuracy check that passed: the export scored the fp32 and the INT8 graph
on the run's validation images and INT8 lost at most `MAX_MIOU_DROP` mIoU, and when its description
is the run's model.pth's (classes, size, config, training metadata: a passed check of another
model copied into the folder is no reason to run it). Without such a file,
without onnxruntime, or on a GPU, `auto` is `model.pth` on torch. `--runtime onnx|int8` on a run
folder holds its file to the same test (model.onnx has no check to pass) and refuses it in one
line otherwise. A model *file* given to `--model` is always that file; a `--runtime` that names
another kind is a usage error.

torch is not imported at module level (nor `fastseg.model`, which imports it): the CLI reads
`RUNTIMES` for `--help`.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastseg.errors import CheckpointError, FastsegError, OptionError
from fastseg.extras import install_hint
from fastseg.number_style import score
from fastseg.runs.folder import INT8_FILENAME, MODEL_FILENAME, ONNX_FILENAME
from fastseg.structured_files import file_kind

if TYPE_CHECKING:
    import torch

    from fastseg.inference.runtime import Opened

RUNTIMES = ("auto", "torch", "onnx", "int8")  # `--runtime` of predict and report
RUNTIME_HELP = (
    "auto: a run folder's model.int8.onnx on onnxruntime when its accuracy check passed at export "
    "(masks may then differ from model.pth's by that check's figure), else model.pth on torch; "
    "torch: model.pth; onnx: model.onnx; int8: model.int8.onnx (each only as model.pth's export, "
    "int8 with its check passed). A model file is run as it is."
)
FILES = {"torch": MODEL_FILENAME, "onnx": ONNX_FILENAME, "int8": INT8_FILENAME}


@dataclass
class RuntimeChoice:
    """The model file to run, its kind (`torch`, `onnx` for onnxruntime fp32, `int8`), why it was
    chosen (one clause for the printed line), and the file already opened when choosing needed it."""

    path: Path
    kind: str
    reason: str
    opened: Opened | None = None
    alternative: str = ""  # e.g. "--runtime torch for model.pth"

    def line(self, label: str) -> str:
        """`runtime: LABEL (REASON) — ALTERNATIVE`, what predict prints; `label` is the runtime and
        precision actually run (`runtime_label`)."""
        tail = f" — {self.alternative}" if self.alternative else ""
        return f"runtime: {label} ({self.reason}){tail}"


def runtime_label(runtime: Any, loaded: Any) -> str:  # noqa: ANN401 - a Runtime and a LoadedModel
    """What ran the network, as predictions.csv records it: `torch bf16`, `torch fp32`,
    `torch fp16`, `onnxruntime fp32` or `onnxruntime int8`."""
    if runtime.name == "torch":
        dtype = getattr(runtime, "dtype", None)
        return "torch " + {"torch.bfloat16": "bf16", "torch.float16": "fp16"}.get(str(dtype), "fp32")
    precision = (loaded.export or {}).get("precision", "fp32") if loaded is not None else "fp32"
    return f"{runtime.name} {precision if precision in ('fp32', 'int8') else 'fp32'}"


def planned_label(choice: RuntimeChoice, device: torch.device, precision: str) -> str:
    """`runtime_label` before the file is opened (report opens it itself): torch's autocast type
    for `device` and `precision`, or the onnxruntime precision the choice names."""
    if choice.kind == "torch":
        from fastseg.inference.precision import autocast_dtype

        dtype = autocast_dtype(device, precision)
        return "torch " + {"torch.bfloat16": "bf16", "torch.float16": "fp16"}.get(str(dtype), "fp32")
    if choice.reason.endswith("as given"):  # an .onnx file: its precision is in its metadata
        return "onnxruntime"
    return "onnxruntime " + ("int8" if choice.kind == "int8" else "fp32")


def int8_check(export: dict[str, Any]) -> tuple[bool, str]:
    """Whether an INT8 file's metadata records a passed accuracy check, and the clause saying so.
    Passed: both validation mIoUs are numbers from 0 to 1 (-1 or 1e308 is no mIoU, so no check) and
    INT8 lost at most `MAX_MIOU_DROP` (a file written with
    `--accept-int8-loss` past that limit has failed)."""
    from fastseg.model.exported import MAX_MIOU_DROP  # not at --help

    check = export.get("int8")
    if export.get("precision") != "int8":
        return False, f"{INT8_FILENAME} is not an INT8 export"
    if not isinstance(check, dict):
        return False, f"{INT8_FILENAME} records no accuracy check"
    fp32, int8 = check.get("validation_miou_fp32"), check.get("validation_miou_int8")
    images = check.get("validation_images")
    if not all(_number(value) and math.isfinite(value) and 0 <= value <= 1 for value in (fp32, int8)):
        return False, f"{INT8_FILENAME} records no usable accuracy check"
    drop = round(fp32 - int8, 6)  # the figures are recorded to 6 places: 0.8 - 0.79 is 0.01, not 0.0100...09
    on = f" on {images} validation images" if isinstance(images, int) and not isinstance(images, bool) else ""
    if drop > MAX_MIOU_DROP:
        return False, (f"{INT8_FILENAME}'s check lost {score(drop)} mIoU{on}, more than "
                       f"{score(MAX_MIOU_DROP)}")  # fmt: skip
    change = f"lost {score(drop)}" if drop >= 0 else f"gained {score(-drop)}"  # 0: not "gained -0.000"
    return True, f"{INT8_FILENAME}: its check {change} mIoU{on}"


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _export_hint(folder: Path, int8_file: Path) -> str:
    """The command that makes a run's INT8 file: on a CPU it runs about twice as fast as
    model.pth (#24), so a run without one is told how, with the install line export would stop at."""
    make = f"fastseg export --model {shlex.quote(str(folder))} --int8 makes {int8_file}, faster on a CPU"
    return make if _export_installed() else f"{make} (after {install_hint('onnx')})"


def _export_installed() -> bool:
    """Whether the `onnx` extra that `export --int8` needs is installed: found, not imported (the
    torch path would pay onnx's 0.8 s import for one hint)."""
    from importlib.util import find_spec

    return all(find_spec(name) is not None for name in ("onnx", "onnxruntime", "onnxscript"))


def onnxruntime_importable() -> bool:
    try:
        import onnxruntime  # noqa: F401 - only whether it imports
    except ImportError:
        return False
    return True


def choose_runtime(model: Path | str, runtime: str = "auto", device: torch.device | str | None = None,
                   precision: str = "auto", requested_device: str = "auto") -> RuntimeChoice:  # fmt: skip
    """The model file `--runtime` means for `--model` (a run folder or a model file) on `device`
    (the resolved one, or its name: `cpu`, `cuda:0`; `requested_device` is what the user asked for).

    `auto` on a run folder: `model.int8.onnx` when it exists, records a passed accuracy check
    (`int8_check`), onnxruntime imports, the device is the CPU and `--precision` is left at auto;
    else `model.pth`. Raises `OptionError` for a `--runtime` that contradicts the model file given
    or a run folder without the file it names."""
    if runtime not in RUNTIMES:
        raise OptionError(f"--runtime {runtime}: choose one of {', '.join(RUNTIMES)}")
    path = Path(model)
    if not path.is_dir():
        return _given_file(path, runtime)
    if runtime != "auto":
        file = path / FILES[runtime]
        if not file.is_file():
            make = {"torch": "`fastseg train` writes it", "onnx": "`fastseg export` makes it",
                    "int8": "`fastseg export --int8` makes it"}[runtime]  # fmt: skip
            odd = _not_a_file(file)
            if odd:
                raise OptionError(f"--runtime {runtime}: {file} is {odd}, not a model file ({make})")
            raise OptionError(f"--runtime {runtime}: {path} holds no {FILES[runtime]} ({make})")
        if runtime != "torch":  # the run's export was asked for: model.pth's, proven as auto proves it
            return _asked_export(path, runtime, reuse=not _int8_unusable(device, precision, requested_device))
        return RuntimeChoice(file, runtime, f"--runtime {runtime}: {FILES[runtime]}")
    torch_file = path / MODEL_FILENAME
    int8_file = path / INT8_FILENAME
    if not int8_file.is_file():
        odd = _not_a_file(int8_file)
        found = (
            f"{INT8_FILENAME} is {odd}, not a model file" if odd else f"no {INT8_FILENAME} in the run folder"
        )
        hint = "" if odd or _device_not_cpu(device, requested_device) else _export_hint(path, int8_file)
        return RuntimeChoice(torch_file, "torch", f"{MODEL_FILENAME}; {found}", alternative=hint)
    reason = _int8_unusable(device, precision, requested_device)
    if reason:
        return RuntimeChoice(torch_file, "torch", f"{MODEL_FILENAME}; {reason}")
    from fastseg.inference.runtime import Opened, open_onnx

    try:
        loaded, onnx_runtime = open_onnx(int8_file)
    except (CheckpointError, FastsegError) as error:
        return RuntimeChoice(torch_file, "torch", f"{MODEL_FILENAME}; {INT8_FILENAME} unusable: {error}")
    clause, unproven = int8_proof(torch_file, loaded)
    if unproven:
        return RuntimeChoice(torch_file, "torch", f"{MODEL_FILENAME}; {unproven}")
    return RuntimeChoice(int8_file, "int8", clause, Opened(loaded, onnx_runtime),
                         alternative=f"--runtime torch for {MODEL_FILENAME}")  # fmt: skip


def int8_proof(torch_file: Path, loaded: Any, owner: str = "its") -> tuple[str, str]:  # noqa: ANN401 - LoadedModel
    """(what the INT8 file's check says, why it is unproven or ""): proven when its recorded check
    passed (`int8_check`) and it is the export of the run's `torch_file` (`_other_model`). The one
    test both `auto` and `--runtime int8` on a run folder apply; `owner` names model.pth in the
    reason ("its" after auto's "model.pth; ")."""
    passed, clause = int8_check(loaded.export or {})
    if not passed:
        return clause, clause
    differs = _other_model(torch_file, loaded)
    return clause, f"{INT8_FILENAME} is not {owner} export ({differs})" if differs else ""


def _accepted_loss(export: dict[str, Any]) -> bool:
    """Whether an INT8 file records a usable check that lost more than the limit and was written
    anyway with `--accept-int8-loss`: `auto` never runs it, `--runtime int8` does and says so."""
    check = export.get("int8")
    if not isinstance(check, dict) or check.get("forced") is not True:
        return False
    passed, clause = int8_check(export)
    return not passed and "more than" in clause


def _asked_export(folder: Path, runtime: str, reuse: bool) -> RuntimeChoice:
    """`--runtime onnx|int8` on a run folder: its `model.onnx` when it is the export of the run's
    model.pth (`_other_model`), its `model.int8.onnx` when `int8_proof` holds (that, and a passed
    check). Anything else is an `OptionError` naming the file and the reason: it ran before, said
    only as "--runtime int8: model.int8.onnx", with the old weights after a new training, other
    classes in predictions.csv, or a loss the export had refused. The file given as `--model`
    still runs as it is (`_given_file`); a file that does not open is its own one line. The
    opened file is handed on only with `reuse` (the CPU, --precision auto): otherwise predict
    opens it again, so that `open_model` refuses a GPU or a torch precision as for any ONNX file."""
    from fastseg.inference.runtime import Opened, open_onnx

    file, torch_file = folder / FILES[runtime], folder / MODEL_FILENAME
    loaded, onnx_runtime = open_onnx(file)
    choice = RuntimeChoice(file, runtime, f"--runtime {runtime}: {FILES[runtime]}")
    check_opened(choice, loaded, runtime)  # an INT8 graph is not --runtime onnx, nor fp32 --runtime int8
    if runtime == "int8":
        clause, unproven = int8_proof(torch_file, loaded, owner=f"{MODEL_FILENAME}'s")
        if unproven == clause and _accepted_loss(loaded.export or {}):  # asked for by name, and the
            # loss was accepted at export (--accept-int8-loss): the user's choice twice, said in the line
            differs = _other_model(torch_file, loaded)
            unproven = f"{INT8_FILENAME} is not {MODEL_FILENAME}'s export ({differs})" if differs else ""
            clause = f"{clause}, accepted at export (--accept-int8-loss)"
        choice.reason = f"--runtime int8: {clause}"
    else:
        differs = _other_model(torch_file, loaded)
        unproven = f"{FILES[runtime]} is not {MODEL_FILENAME}'s export ({differs})" if differs else ""
    if unproven:
        raise OptionError(f"--runtime {runtime}: {file}: {unproven}; --runtime auto runs {MODEL_FILENAME}, "
                          f"--model {file} runs this file as it is")  # fmt: skip
    choice.opened = Opened(loaded, onnx_runtime) if reuse else None
    return choice


COMPARED = ("classes", "size", "resize", "colors", "ignore_index", "mean", "std", "metadata")


def _other_model(torch_file: Path, loaded: Any) -> str:  # noqa: ANN401 - the INT8 file's LoadedModel
    """Which field of the run's `model.pth` (its model config or one of `COMPARED`) the INT8 file's
    description contradicts, or "": a passed check is about the file's own graph, and `auto` must
    never swap the run's model for another one (other classes, size or training) copied into the
    folder. An INT8 file whose description records the digest of the `model.pth` it was made from
    and of its own fields as exported (`fastseg export` since issue #24), both matching here, is
    that model's export, described as it was: nothing to compare, and no torch to import.
    Otherwise (an older export, another model.pth, a description edited since) both sides go
    through the same field checks (defaults of older files applied); the weights are
    memory-mapped, not read (a few ms). A recorded source digest that differs is another
    model.pth's export even when every field agrees: a retrained model.pth with the same
    classes, size, config and metadata passed the comparison, and auto ran the old weights'
    graph (fastseg writes a model.pth once; the same weights saved again, whose bytes differ by
    the archive's name inside, come from outside it, and a new export is the way back). A
    `model.pth` that is absent or unreadable contradicts nothing else: `--runtime torch` reports
    its own problem."""
    if not torch_file.is_file():
        return ""
    recorded = _recorded_source(torch_file, loaded.export or {})
    if recorded == "same":
        return ""
    # the fields first (a differing one says more), the digest when they all agree
    other = f"exported from another {MODEL_FILENAME}: the SHA-256 it records differs" if recorded else ""
    import torch

    from fastseg.model.checkpoint import FORMAT, _checked_fields
    from fastseg.model.config import ModelConfig

    try:
        state = torch.load(torch_file, map_location="cpu", weights_only=True, mmap=True)
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            return other
        ours = _checked_fields(torch_file, state)
    except Exception:  # noqa: BLE001 - any unreadable model.pth: see the docstring
        return other
    try:
        config = ModelConfig.from_dict((loaded.export or {}).get("model_config") or {})
    except FastsegError:
        return "different model_config"
    if config != ours["config"]:
        return "different model_config"
    return next((f"different {name}" for name in COMPARED if ours[name] != getattr(loaded, name)), other)


def _recorded_source(torch_file: Path, export: dict[str, Any]) -> str:
    """`same` when an export's description records `torch_file`'s SHA-256 as its source and its
    own fields' SHA-256 as they still are (`fastseg.model.exported`); `other` when it records a
    source digest that is not `torch_file`'s; "" when it records none, or `torch_file` cannot be
    read, or the fields were edited since (the field comparison then decides)."""
    from fastseg.model.exported import DESCRIPTION_DIGEST, SOURCE_DIGEST, description_sha256, file_sha256

    source, described = export.get(SOURCE_DIGEST), export.get(DESCRIPTION_DIGEST)
    if not isinstance(source, str):
        return ""
    try:
        if file_sha256(torch_file) != source:
            return "other"
    except OSError:  # unreadable: the field comparison says what it can
        return ""
    return "same" if isinstance(described, str) and described == description_sha256(export) else ""


def _not_a_file(path: Path) -> str:
    """What stands at `path` when it is not a regular file ("a folder", "a named pipe (FIFO)", "a
    broken link"), or "" when nothing does: "no model.int8.onnx" would be untrue, and opening a
    FIFO or /dev/zero would block or read forever."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return "a broken link" if path.is_symlink() else ""
    return file_kind(mode)


def _device_not_cpu(device: torch.device | str | None, requested_device: str) -> str:
    """The device's kind (`cuda`, `mps`) when predict runs elsewhere than the CPU, or "" on it."""
    kind = device.split(":")[0] if isinstance(device, str) else getattr(device, "type", None)
    if requested_device not in ("auto", "cpu") or (kind is not None and kind != "cpu"):
        return kind if kind is not None else requested_device
    return ""


def _int8_unusable(device: torch.device | str | None, precision: str, requested_device: str) -> str:
    """Why `auto` leaves a run's INT8 file aside before opening it, or ""."""
    here = _device_not_cpu(device, requested_device)
    if here:
        return f"INT8 runs on the CPU, the device here is {here}"
    if precision != "auto":
        return f"--precision {precision} is torch's"
    if not onnxruntime_importable():
        return f"onnxruntime is not installed ({install_hint('onnx')} for model.int8.onnx)"
    return ""


def _given_file(path: Path, runtime: str) -> RuntimeChoice:
    """A model file runs as it is; `--runtime` may only confirm its kind (an .onnx file's fp32 or
    INT8 is read from its metadata once opened: `check_opened`)."""
    onnx = path.suffix.lower() == ".onnx"
    if runtime == "torch" and onnx:
        raise OptionError(f"--runtime torch: {path} is an ONNX export; pass its run folder or "
                          f"{MODEL_FILENAME}")  # fmt: skip
    if runtime in ("onnx", "int8") and not onnx:
        raise OptionError(f"--runtime {runtime}: {path} is a torch model; pass its run folder (with "
                          f"{FILES[runtime]}) or the .onnx file itself")  # fmt: skip
    kind = runtime if runtime != "auto" else ("onnx" if onnx else "torch")
    return RuntimeChoice(path, kind, f"{path.name}, as given")


def check_opened(choice: RuntimeChoice, loaded: Any, runtime: str) -> None:  # noqa: ANN401 - LoadedModel
    """After an .onnx file given with `--runtime onnx|int8` is opened: its recorded precision must
    be the one asked for (an INT8 file is not `--runtime onnx`, the fp32 graph)."""
    if runtime not in ("onnx", "int8") or loaded is None or loaded.export is None:
        return
    precision = loaded.export.get("precision", "fp32")
    found = "int8" if precision == "int8" else "onnx"
    if found != runtime:
        described = "an INT8" if found == "int8" else "an fp32"
        raise OptionError(f"--runtime {runtime}: {choice.path} is {described} ONNX export; leave "
                          "--runtime out to run it as it is")  # fmt: skip
