"""Every option of every command, given a value no one means (NaN, infinities, 10**40, an empty
string, a newline, a byte that is not UTF-8), either runs or is refused in one `Error:` line: never
a traceback, never a hang.

The options are read from the commands the group registers, so an option added tomorrow is tried
the day it is added. Paths, the device and secrets are left out (their own tests cover them); each
command gets small valid inputs, so an accepted value does real, quick work. `serve` is stopped
where it would start listening. This found `show-data --seed 10**40` (a traceback from
`torch.manual_seed`) and `lr-find --iterations 10**19` (a sweep that never ended)."""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cli.main import main

SKIPPED = {"--config", "--data", "--out", "--model", "--resume", "--root", "--encoder-weights", "--images",
           "--device", "--host", "--token", "--label-studio-url", "--label-studio-token"}  # fmt: skip
NOT_UTF8 = os.fsdecode(b"\xff")  # how Python hands a command line's non-UTF-8 byte to click
VALUES = {
    "integer": [str(10**40), str(-(10**40))],
    "float": ["nan", "inf", "-inf", "1e400"],
    "text": ["", "a\nb", NOT_UTF8],
}


def kind(option: click.Option) -> str | None:
    name = option.type.name
    if "integer" in name:
        return "integer"
    if "float" in name or name == "LR|auto":
        return "float"
    return "text" if name == "text" else None


def registered_options() -> list[tuple[str, str, str]]:
    context = click.Context(main)
    cases = []
    for name in main.list_commands(context):
        command = main.get_command(context, name)
        for option in command.params:
            if not isinstance(option, click.Option) or option.is_flag or option.hidden:
                continue
            if option.opts[0] in SKIPPED or kind(option) is None:
                continue
            cases += [(name, option.opts[0], value) for value in VALUES[kind(option)]]
    return cases


@pytest.fixture(scope="module")
def inputs(voc_root, tmp_path_factory):
    """A trained run (one epoch on the tiny VOC set), a folder of one image, a YOLO export."""
    from test_import_leftovers_s33 import yolo_export

    root = tmp_path_factory.mktemp("inputs")
    run = root / "run"
    arguments = ["train", "--data", str(voc_root), "--out", str(run), "--epochs", "1", *TINY, "--quiet"]
    trained = CliRunner().invoke(main, arguments)
    assert trained.exit_code == 0, trained.output
    images = root / "images"
    images.mkdir()
    first = sorted((Path(voc_root) / "VOCdevkit" / "VOC2012" / "JPEGImages").iterdir())[0]
    (images / first.name).write_bytes(first.read_bytes())
    return {"voc": voc_root, "run": run, "images": images, "yolo": yolo_export(root / "yolo")}


TINY = ["--size", "32", "--crop-size", "32", "--batch-size", "4", "--no-pretrained", "--train-set", "train",
        "--num-workers", "0"]  # fmt: skip


def command_line(name: str, inputs: dict, out: Path) -> list[str]:
    voc, run = str(inputs["voc"]), str(inputs["run"])
    return {
        "download": ["download", "--root", str(out), "--url", "http://127.0.0.1:9/VOC.tar", "--quiet"],
        "import": ["import", "yolo", str(inputs["yolo"]), "--out", str(out), "--quiet"],
        "check-data": ["check-data", "--data", voc],
        "show-data": ["show-data", "--data", voc, "--out", str(out)],
        "train": ["train", "--data", voc, "--out", str(out), "--epochs", "1", *TINY, "--quiet"],
        "lr-find": ["lr-find", "--data", voc, "--out", str(out), *TINY, "--iterations", "20"],
        "predict": ["predict", "--model", run, str(inputs["images"]), "--out", str(out), "--quiet"],
        "export": ["export", "--model", run, "--out", str(out) + ".onnx"],
        "report": ["report", "--model", run, "--data", voc, "--out", str(out), "--quiet"],
        "runs": ["runs", str(Path(run).parent)],
        "serve": ["serve", "--model", run, "--port", "0"],
        "demo": ["demo", "--out", str(out), "--epochs", "1", "--quiet"],
    }[name]


class Listening(Exception):
    """serve got as far as starting the server: its options were taken."""


@pytest.mark.slow
@pytest.mark.parametrize(("name", "option", "value"), registered_options())
def test_any_value_of_any_option_runs_or_is_one_line(inputs, tmp_path, monkeypatch, alarm, name, option,
                                                     value):  # fmt: skip
    import uvicorn

    def listen(*args, **kwargs):
        raise Listening

    monkeypatch.setattr(uvicorn, "run", listen)
    arguments = [*command_line(name, inputs, tmp_path / "out"), option, value]
    result = CliRunner().invoke(main, arguments)
    if isinstance(result.exception, Listening):  # its options were taken: NaN must not be
        assert value != "nan", f"serve took {option} nan"
        return
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1, 2), result.output
    assert "Traceback" not in result.output
    assert "\n" not in value or value not in result.output, "the newline reached the output as it is"
    if value == "nan":  # no option means anything by it: refused, not run
        assert result.exit_code in (1, 2), result.output
    if result.exit_code:
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, result.output


def test_workers_fastseg_accepts_bring_no_warning_from_torch(inputs, tmp_path):
    """fastseg takes up to 4 loader workers a core (`launch.device.loader_workers`); torch's
    DataLoader warned, twice, four lines each time, at more than one a core: noise beside a
    value fastseg had already checked."""
    import subprocess
    import sys

    from fastseg.launch.device import available_cores

    workers = available_cores() + 1
    arguments = [*command_line("predict", inputs, tmp_path / "out"), "--num-workers", str(workers)]
    result = subprocess.run([sys.executable, "-m", "fastseg", *arguments], capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stderr
    assert result.stdout.startswith("1 segmented, 0 failed")


@pytest.fixture(scope="module")
def odd_inputs(inputs, tmp_path_factory):
    """`inputs` again, under a folder whose name holds a newline and a tab: every path a command
    prints comes from the user, and a script's variable can hold anything."""
    import shutil

    root = tmp_path_factory.mktemp("odd") / "a\nb\tc"
    root.mkdir()
    copied = {}
    for name, path in inputs.items():
        copied[name] = root / Path(path).name
        shutil.copytree(path, copied[name])
    return copied


@pytest.mark.slow
@pytest.mark.parametrize("name", ["download", "import", "check-data", "show-data", "train", "lr-find",
                                  "predict", "export", "report", "runs", "serve", "demo"])  # fmt: skip
def test_a_path_holding_a_newline_is_printed_on_one_line_by_every_command(odd_inputs, tmp_path, monkeypatch,
                                                                          alarm, name):  # fmt: skip
    """The paths given (the data, the run) and made (--out) all lie under `a<newline>b<tab>c`:
    whatever a command prints, the name is escaped (`errors.shown`), so no line is split in two."""
    import uvicorn

    def listen(*args, **kwargs):
        raise Listening

    monkeypatch.setattr(uvicorn, "run", listen)
    out = tmp_path / "x\ny" / "out"
    out.parent.mkdir()
    result = CliRunner().invoke(main, command_line(name, odd_inputs, out))
    assert result.exception is None or isinstance(result.exception, (SystemExit, Listening)), repr(
        result.exception)  # fmt: skip
    # each ran to its end: download finds no server on port 9 (its one Error: line names the root)
    assert result.exit_code == {"download": 1, "serve": 1}.get(name, 0), result.output
    assert isinstance(result.exception, Listening) == (name == "serve")
    assert "Traceback" not in result.output
    assert "a\nb" not in result.output and "x\ny" not in result.output, result.output
    assert "\t" not in result.output, result.output
    if name != "runs":  # the runs table names runs, not paths
        assert "a\\nb\\tc" in result.output or "x\\ny" in result.output, result.output  # printed, escaped
