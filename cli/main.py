"""The `fastseg` command group. Subcommands are imported lazily so `--help` stays instant."""

from __future__ import annotations

import codecs
import importlib
import io
import keyword
import sys
import warnings

import click

from fastseg import __version__
from fastseg.errors import bytes_escaped

# fastai's import scripts a function with torch.jit, which torch 2.14 deprecates: noise to a user.
warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
# torch's DataLoader warns at more workers than cores, twice, four lines each: fastseg has already
# checked --num-workers against its own limit (`fastseg.launch.device.loader_workers`).
warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)


def _bytes_escaped(error: UnicodeError) -> tuple[str, int]:
    """A stream's error handler: what UTF-8 cannot encode, written as `errors.bytes_escaped` does."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    return bytes_escaped(error.object[error.start : error.end]), error.end


BYTES_ESCAPED = "fastseg.bytes_escaped"
codecs.register_error(BYTES_ESCAPED, _bytes_escaped)

# name -> one-line help. Each command is the module named after it (`command_module`), imported
# only when the command runs.
SUMMARIES: dict[str, str] = {
    "download": "Download and extract PASCAL VOC 2012 (resumable, MD5-checked).",
    "import": "Import a tool's export (COCO, LabelMe, YOLO, CVAT, ...) as a data set.",
    "check-data": "Check a data set: images and class pixels per split, every problem.",
    "show-data": "Write sample figures of the augmented training and validation data.",
    "train": "Train a U-Net (VGG16-BN or a timm encoder); writes a run folder.",
    "lr-find": "Find a learning rate for train: fastai's lr_find, its plot and suggestion.",
    "predict": "Segment images and folders with a trained model (palette PNGs).",
    "export": "Export a trained model to ONNX (fp32, or INT8 checked on validation).",
    "report": "Evaluate a run on its test split: metrics, confusion matrix, best/worst.",
    "runs": "List the run folders: recipe, epochs, best and test mIoU, duration, status.",
    "serve": "Serve a model over HTTP: predict's masks, a web page, Label Studio's /predict.",
    "demo": "Offline end-to-end demo on a small generated VOC-format dataset.",
}


def command_module(name: str) -> str:
    """`check-data` -> `cli.check_data`; a Python keyword takes PEP 8's trailing underscore
    (`import` -> `cli.import_`)."""
    module = name.replace("-", "_")
    return f"cli.{module}_" if keyword.iskeyword(module) else f"cli.{module}"


# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    name: (command_module(name), text) for name, text in SUMMARIES.items()
}


class LazyGroup(click.Group):
    """A group whose subcommands live in their own modules and load on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module_name, _ = COMMANDS[name]
        return importlib.import_module(module_name).command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fastseg")
def main() -> None:
    """Semantic segmentation with fastai, on PASCAL VOC 2012 or your own data: train, predict, report."""
    # A path the shell passed with bytes that are not UTF-8 (Linux allows them) reaches Python as
    # lone surrogates, which a UTF-8 stream refuses: `train --out $'run\xff'` trained, then died
    # printing `model: PATH`. Every line is written, such a byte as `\xff` (`errors.bytes_escaped`).
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors=BYTES_ESCAPED)
