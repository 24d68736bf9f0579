"""What runs the network: torch on `model.pth`, onnxruntime on an exported `.onnx` file.

`Segmenter.logits` calls a runtime's `logits`; everything around it (decoding, fitting, the
argmax, writing) is the same code whatever runs the graph. A torch model's logits come back as
a tensor and are upsampled by torch; an ONNX graph's come back as a numpy array and are
upsampled by onnxruntime (`fastseg.inference.onnx_upsampling`: within about 2.5e-4 of the
logits' spread of torch's),
so an ONNX run never imports torch (1.2-1.7 s of its start-up, issue #24). The runtime is chosen
by the model file's suffix (`open_model`; which of a run folder's files runs: `runtime_choice`).
torch is imported inside the functions, so `runtime_choice`, which the CLI imports for
`--help`, may import this module without waiting for torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from fastseg.errors import CheckpointError, FastsegError, OptionError, clipped, first_line
from fastseg.extras import install_hint

if TYPE_CHECKING:
    import torch

    from fastseg.model.description import LoadedModel
    from fastseg.model.network import SegmentationModel

ONNX_SUFFIX = ".onnx"
ONNX_EXTRA = install_hint("onnx")


class Runtime(Protocol):
    """`(N, 3, S, S)` normalised float32 images (a numpy array or a tensor) -> `(N, C, S, S)`
    float32 logits: a tensor on `device` (torch) or a numpy array (onnxruntime)."""

    name: str

    @property
    def device(self) -> torch.device: ...

    def logits(self, images: Any) -> Any: ...  # noqa: ANN401 - an array or a tensor


class TorchRuntime:
    """The network in eager PyTorch: BatchNorm folded, channels_last on CPU and CUDA, autocast in
    the type `fastseg.inference.precision` chooses for the device."""

    name = "torch"

    def __init__(self, model: SegmentationModel, device: torch.device, precision: str = "auto") -> None:
        import torch

        from fastseg.inference.precision import autocast_dtype
        from fastseg.model.batchnorm_folding import fold_batchnorm

        self.device = device
        self.model = fold_batchnorm(model.to(device).eval())
        self.channels_last = device.type in ("cuda", "cpu")
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.dtype = autocast_dtype(device, precision)

    def logits(self, images: Any) -> torch.Tensor:  # noqa: ANN401 - an array or a tensor
        import torch

        images = torch.as_tensor(images).to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with (
            torch.inference_mode(),
            torch.autocast(
                self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None
            ),
        ):
            return self.model(images).float()


class OnnxRuntime:
    """An exported graph in onnxruntime on the CPU: no torch network is built. The graph's own
    precision applies (fp32, or INT8 from `fastseg export --int8`)."""

    name = "onnxruntime"

    def __init__(self, session: Any, path: Path | str = "the ONNX model", classes: int | None = None) -> None:
        self.session = session
        self.path = path
        self.classes = classes  # the maps a pixel its description names; None: not checked
        self.input_name = session.get_inputs()[0].name

    @property
    def device(self) -> torch.device:
        """The CPU, as torch names it (only torch's callers ask: the sliding window, report)."""
        import torch

        return torch.device("cpu")

    def logits(self, images: Any) -> np.ndarray:  # noqa: ANN401 - an array or a CPU tensor
        """`(N, C, S, S)` float32 array. A graph that `check_graph` let through can still refuse
        a batch at run time (a node of its own that fails on this size): one line naming the
        file, not onnxruntime's trace. Nor can `check_graph` count the class maps of a graph
        that leaves their number free: counted here, where a wrong number wrote masks of
        classes its description does not have."""
        if not isinstance(images, np.ndarray):  # a tensor (the sliding window's tiles)
            images = images.detach().cpu().numpy()
        array = np.ascontiguousarray(images, dtype=np.float32)
        try:
            logits = self.session.run(None, {self.input_name: array})[0]
        except Exception as error:  # noqa: BLE001 - onnxruntime's own types (InvalidArgument, Fail, ...)
            reason = first_line(error)
            raise CheckpointError(f"{self.path}: the graph failed on a batch of shape {tuple(array.shape)} "
                                  f"({clipped(reason)})") from None  # fmt: skip
        if self.classes is not None and (logits.ndim != 4 or logits.shape[1] != self.classes):
            shape = logits.shape
            gave = f"{shape[1]} maps a pixel" if logits.ndim == 4 else f"an array of shape {shape}"
            named = f"its metadata names {self.classes} classes"
            raise CheckpointError(f"{self.path}: the graph gave {gave}, but {named}; export the model again "
                                  "with `fastseg export`")  # fmt: skip
        return logits


def onnx_session(path: Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session of `path`; a missing package, or a file onnxruntime cannot read,
    is one line."""
    try:
        import onnxruntime
    except ImportError:
        raise FastsegError(f"{path}: running an ONNX model needs onnxruntime: {ONNX_EXTRA}") from None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # its warnings about unused initialisers are noise to a user
    if threads:
        options.intra_op_num_threads = threads
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
        reason = first_line(error)
        raise CheckpointError(f"{path}: not a readable ONNX model ({reason})") from None


def open_onnx(path: Path, threads: int | None = None) -> tuple[LoadedModel, OnnxRuntime]:
    """An exported file's description (`fastseg.model.exported`) and its onnxruntime runtime;
    the graph's inputs and outputs must be what the description promises (`check_graph`)."""
    from fastseg.model.exported import METADATA_KEY, described_model

    session = onnx_session(path, threads)
    loaded = described_model(path, session.get_modelmeta().custom_metadata_map.get(METADATA_KEY))
    check_graph(path, session.get_inputs(), session.get_outputs(), len(loaded.classes), loaded.size)
    return loaded, OnnxRuntime(session, path, classes=len(loaded.classes))


def check_graph(path: Path, inputs: list[Any], outputs: list[Any], num_classes: int, size: int) -> None:
    """One `CheckpointError` naming the file unless the graph takes one float32 `(N, 3, H, W)`
    input and gives one float32 `(N, num_classes, H, W)` output: N free, H and W free or the
    model's input `size`, the image's 3 channels fixed; the classes compared where fixed.

    Checked when the session is made, so a file whose graph and description disagree is refused
    once, in one line, instead of failing on every image (a uint8 input) or producing masks of
    the wrong classes (an output of other channels)."""
    if len(inputs) != 1:
        raise CheckpointError(f"{path}: the graph takes {len(inputs)} inputs; a fastseg model takes one, "
                              "the images (N, 3, H, W)")  # fmt: skip
    if len(outputs) != 1:
        raise CheckpointError(f"{path}: the graph gives {len(outputs)} outputs; a fastseg model gives one, "
                              "the logits (N, classes, H, W)")  # fmt: skip
    image, logits = inputs[0], outputs[0]
    for role, node in (("input", image), ("output", logits)):
        if node.type != ONNX_FLOAT:
            raise CheckpointError(f"{path}: the graph's {role} {node.name!r} is {node.type}, not float32 "
                                  "(tensor(float)); export the model with `fastseg export`")  # fmt: skip
    shape, out_shape = _shape(image), _shape(logits)
    if shape is None or len(shape) != 4 or shape[1] != 3:
        raise CheckpointError(f"{path}: the graph's input {image.name!r} has shape {_shown(shape)}, not "
                              "(N, 3, H, W): one RGB image per batch item")  # fmt: skip
    if isinstance(shape[0], int) or any(isinstance(side, int) and side != size for side in shape[2:]):
        # a fixed batch failed on every batch but the size it names; a fixed side other than the
        # model's input size on every image (fastseg export leaves N, H and W free)
        raise CheckpointError(f"{path}: the graph's input {image.name!r} has fixed dimensions "
                              f"{_shown(shape, fixed=True)}; fastseg feeds any batch of {size}x{size} images "
                              "(N, H and W free, as `fastseg export` writes them)")  # fmt: skip
    fixed_classes = isinstance(out_shape[1], int) if out_shape and len(out_shape) == 4 else False
    if out_shape is None or len(out_shape) != 4 or (fixed_classes and out_shape[1] != num_classes):
        shown = _shown(out_shape)
        raise CheckpointError(f"{path}: the graph's output {logits.name!r} has shape {shown}, not "
                              f"(N, {num_classes}, H, W): one map per class its metadata names")  # fmt: skip


ONNX_FLOAT = "tensor(float)"  # onnxruntime's name for float32


def _shape(node: Any) -> list[Any] | None:
    """The node's dimensions (int, or a name / None where symbolic); None when the rank is unknown."""
    shape = getattr(node, "shape", None)
    return list(shape) if isinstance(shape, (list, tuple)) else None


def _shown(shape: list[Any] | None, fixed: bool = False) -> str:
    """`(?, 3, ?, ?)`; with `fixed`, symbolic dimensions by their letter: `(1, 3, H, W)`."""
    if shape is None:
        return "unknown"
    free = "NCHW" if fixed and len(shape) == 4 else "?" * len(shape)
    dims = [str(dim) if isinstance(dim, int) else free[index] for index, dim in enumerate(shape)]
    return f"({', '.join(dims)})"


@dataclass
class Opened:
    """A model file opened for inference: its description and what runs it."""

    loaded: LoadedModel
    runtime: Runtime


def open_model(
    model: Path | str, device: torch.device | str, precision: str = "auto", requested_device: str = "auto"
) -> Opened:
    """A run folder or `model.pth` on torch on `device`, an `.onnx` file on onnxruntime on the CPU
    (whatever `--device auto` found; `requested_device` is what the user asked for).

    `--precision` is torch's autocast: an ONNX graph runs in the precision it was exported in
    (fp32, or INT8), so asking for another is an error rather than silently ignored."""
    from fastseg.model.description import resolve_model_path

    path = resolve_model_path(model)
    if path.suffix.lower() != ONNX_SUFFIX:
        from fastseg.model.checkpoint import load_model

        loaded = load_model(path, device)
        return Opened(loaded, TorchRuntime(loaded.model, device, precision))
    if precision not in ("auto", "fp32"):
        raise OptionError(f"--precision {precision}: an ONNX model runs in its own precision "
                          "(fp32, or INT8 from `fastseg export --int8`); leave --precision out")  # fmt: skip
    if requested_device not in ("auto", "cpu"):
        raise OptionError(f"--device {requested_device}: ONNX models run on the CPU; use model.pth on a GPU")
    loaded, runtime = open_onnx(path)
    return Opened(loaded, runtime)
