"""One grammar for every command (issue #21): the data set is `--data` and the model `--model`
everywhere (the old positional spellings `check-data DATA` and `export MODEL` still work, hidden),
`--force` only ever replaces fastseg's own earlier output, `--verbose` is on every command that
prints progress and means the same there, and scores print in one style.

The checks walk the commands the group registers, so a new command is covered the day it is added:
it must first be described in `GRAMMAR` below, or the test says so by name."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cli.main import main
from cli.options import FORCE_HELP, VERBOSE_HELP, UnlistedArgument


@dataclass(frozen=True)
class Grammar:
    """What a command takes, as `--help` must show it."""

    data: bool  # reads a data set: `--data`
    model: bool  # reads a model (run folder, model.pth or .onnx): `--model`
    progress: bool  # prints progress lines: `--quiet` and `--verbose`
    positional: tuple[str, ...] = ()  # the bare arguments `--help` may list (none names a data set or model)


# Every registered command. A command that writes a data set (download --root) does not read one.
GRAMMAR = {
    "download": Grammar(data=False, model=False, progress=True),
    # FORMAT SOURCE: a labelling tool's export, not a data set fastseg reads; --out is the data set made
    "import": Grammar(data=False, model=False, progress=True, positional=("FORMAT", "SOURCE")),
    "check-data": Grammar(data=True, model=False, progress=True),
    "show-data": Grammar(data=True, model=False, progress=False),
    "train": Grammar(data=True, model=False, progress=True),
    "lr-find": Grammar(data=True, model=False, progress=True),
    "predict": Grammar(data=False, model=True, progress=True, positional=("INPUTS",)),
    "export": Grammar(data=True, model=True, progress=True),  # --data: the run's images for --int8
    "report": Grammar(data=True, model=True, progress=True),
    "runs": Grammar(data=False, model=False, progress=False, positional=("FOLDER",)),
    "demo": Grammar(data=False, model=False, progress=True),  # it makes its own data set
    "serve": Grammar(data=False, model=True, progress=False),  # a server's log lines, no progress
}

# Flags renamed by issue #21 whose old spelling is kept, hidden, with its old effect (and a note).
OLD_SPELLINGS = {
    ("export", "--force"): "--accept-int8-loss",
    ("predict", "--force"): "--replace-foreign",
    ("report", "--force"): "--replace-foreign",
}
# What `--force` may say: replacing fastseg's own earlier output, and nothing about keeping a lossy
# file or replacing what fastseg did not write (those have their own flags).
FORCE_MEANING = re.compile(r"^Replace .*\b(fastseg's own|earlier|previous)\b")
OTHER_MEANINGS = ("INT8", "loss", "accuracy", "did not write,", "not a fastseg", "that fastseg did not")
MODEL_HELP = re.compile(r"run folder", re.IGNORECASE)


def registered() -> list[str]:
    context = click.Context(main)
    return main.list_commands(context)


def command(name: str) -> click.Command:
    found = main.get_command(click.Context(main), name)
    assert found is not None, name
    return found


def grammar(name: str) -> Grammar:
    assert name in GRAMMAR, (
        f"`fastseg {name}` is registered in cli/main.py but not described in tests/test_cli_grammar.py's "
        "GRAMMAR: say whether it reads a data set (--data), a model (--model) and prints progress "
        "(--quiet, --verbose), and which bare arguments its --help may list"
    )
    return GRAMMAR[name]


def options(cmd: click.Command) -> dict[str, click.Option]:
    """Every visible option by each of its spellings."""
    return {spelling: param for param in cmd.params if isinstance(param, click.Option) and not param.hidden
            for spelling in param.opts}  # fmt: skip


def hidden_options(cmd: click.Command) -> dict[str, click.Option]:
    return {spelling: param for param in cmd.params if isinstance(param, click.Option) and param.hidden
            for spelling in param.opts}  # fmt: skip


def help_text(name: str) -> str:
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def test_the_table_names_real_commands_only():
    """A command removed from cli/main.py leaves no stale row here (a stale row hides nothing, but
    misleads whoever adds the next command)."""
    stale = sorted(set(GRAMMAR) - set(registered()))
    assert not stale, f"GRAMMAR describes commands cli/main.py does not register: {stale}"


@pytest.mark.parametrize("name", registered())
def test_data_and_model_are_options_with_one_help(name):
    expected, cmd = grammar(name), command(name)
    visible = options(cmd)
    assert ("--data" in visible) == expected.data, f"{name}: --data expected {expected.data}"
    assert ("--model" in visible) == expected.model, f"{name}: --model expected {expected.model}"
    if expected.data:
        assert "a dataset.yaml, a folder holding one, or a voc root" in visible["--data"].help.lower(), name
    if expected.model:
        assert MODEL_HELP.search(visible["--model"].help), f"{name}: --model's help names no run folder"
    listed = [param.human_readable_name for param in cmd.params
              if isinstance(param, click.Argument) and not isinstance(param, UnlistedArgument)]  # fmt: skip
    assert tuple(listed) == expected.positional, (
        f"{name}: --help lists the bare arguments {listed}, GRAMMAR expects {list(expected.positional)}; "
        "a data set or model is --data / --model (an old positional spelling stays working, unlisted, "
        "with cli.options.positional_alias)"
    )
    usage = help_text(name).splitlines()[0]
    assert " DATA" not in usage and " MODEL" not in usage, usage


@pytest.mark.parametrize("name", registered())
def test_force_only_ever_replaces_fastsegs_own_earlier_output(name):
    grammar(name)
    cmd = command(name)
    force = options(cmd).get("--force")
    if force is not None:
        assert FORCE_MEANING.match(force.help), f"{name} --force: {force.help!r}"
        assert not any(word in force.help for word in OTHER_MEANINGS), f"{name} --force: {force.help!r}"
    for spelling in hidden_options(cmd):
        assert (name, spelling) in OLD_SPELLINGS, f"{name}: hidden {spelling} is no documented old spelling"
        new = OLD_SPELLINGS[(name, spelling)]
        assert new in options(cmd), f"{name}: {spelling} names {new}, which the command lacks"
        assert f"Old spelling of {new}" in hidden_options(cmd)[spelling].help
    assert "--force" not in help_text(name) or force is not None  # no help text advertises a hidden --force


def test_the_shared_force_help_reads_as_replacing_own_output():
    assert FORCE_MEANING.match(FORCE_HELP.format(what="run in --out"))


@pytest.mark.parametrize("name", registered())
def test_verbose_wherever_progress_is_printed_with_one_meaning(name):
    expected, visible = grammar(name), options(command(name))
    assert ("--quiet" in visible) == expected.progress, f"{name}: --quiet expected {expected.progress}"
    if expected.progress:
        assert "--verbose" in visible, f"{name} prints progress but has no --verbose"
    if "--verbose" in visible:
        assert visible["--verbose"].help == VERBOSE_HELP, f"{name} --verbose: {visible['--verbose'].help!r}"


@pytest.mark.parametrize("name", registered())
def test_no_help_says_the_data_is_voc_only_where_it_is_not(name):
    """Stale help of issue #21: predict's 'pixel values are VOC class indices', train's 'Train ...
    on VOC 2012', report's '--model: the run folder' (an .onnx works too)."""
    text = " ".join(help_text(name).split())
    assert "VOC class indices" not in text
    assert "on VOC 2012" not in text, text
    if name == "report":
        assert ".onnx" in text and "model.pth" in text


@pytest.mark.parametrize("name", ["check-data", "export"])
def test_verbose_is_taken_by_the_error_handler_on_the_new_commands(name, tmp_path):
    """--verbose is consumed before the command body (cli.errors.user_errors): a user's mistake
    with it is still one line and exit 1, not a TypeError about an unexpected keyword."""
    argument = "--data" if name == "check-data" else "--model"
    result = invoke(name, argument, tmp_path, "--verbose", "--quiet")
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and len(result.output.splitlines()) == 1, result.output


# --- the old spellings still work, and give what the new ones give ----------------------------


@pytest.fixture(scope="module")
def own_data(tmp_path_factory):
    from demo_folder import make_demo_folder

    folder = tmp_path_factory.mktemp("own") / "data"
    make_demo_folder(folder, ["background", "road"], counts={"train": 3, "val": 2})
    return folder


def invoke(*arguments: object):
    return CliRunner().invoke(main, [str(argument) for argument in arguments])


def test_check_data_positional_and_option_agree(own_data, voc_root, tmp_path):
    for data in (own_data, voc_root, tmp_path / "missing"):
        old, new = invoke("check-data", data, "--quiet"), invoke("check-data", "--data", data, "--quiet")
        assert (old.exit_code, old.output) == (new.exit_code, new.output), data
    assert invoke("check-data", "--data", own_data, "--quiet").exit_code == 0
    assert "no problems found" in invoke("check-data", own_data, "--quiet").output
    both = invoke("check-data", own_data, "--data", os.path.relpath(own_data), "--quiet")
    assert both.exit_code == 0, both.output  # the same folder, spelt twice


def test_two_different_data_sets_are_one_usage_error(own_data, voc_root):
    result = invoke("check-data", own_data, "--data", voc_root)
    assert result.exit_code == 2
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert error == [
        f"Error: {own_data} and --data {voc_root} name two different data sets: give one, as --data"
    ]
    assert "Traceback" not in result.output


def test_no_data_at_all_is_a_usage_error_naming_the_option():
    result = invoke("check-data")
    assert result.exit_code == 2 and "Missing option '--data'" in result.output


@pytest.fixture
def export_calls(monkeypatch):
    """`fastseg.export.exporter.export` replaced by a recorder: what the CLI passes it."""
    import fastseg.export.exporter as exporter

    calls = []

    def fake(model, **options):
        calls.append({"model": model, **options})
        path = Path(options.get("out") or Path(model) / "model.onnx")
        path.write_bytes(b"x")
        return exporter.ExportResult(path, "fp32")

    monkeypatch.setattr(exporter, "export", fake)
    return calls


def test_export_model_positional_is_the_same_call_as_model_option(export_calls, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    old, new = invoke("export", run, "--quiet"), invoke("export", "--model", run, "--quiet")
    assert old.exit_code == new.exit_code == 0, (old.output, new.output)
    assert old.output == new.output
    first, second = export_calls
    assert first.pop("progress") is not None and second.pop("progress") is not None
    assert first == second and first["model"] == run and first["force"] is False
    assert invoke("export").exit_code == 2
    assert invoke("export", run, "--model", tmp_path).exit_code == 2


@pytest.mark.parametrize("spelling", ["--accept-int8-loss", "--force"])
def test_export_force_is_still_accept_int8_loss(export_calls, tmp_path, spelling):
    """Decision (cli/export.py's docstring): `export --force` keeps its old effect, keeping a lossy
    INT8 file, with a note naming --accept-int8-loss; it is not listed in --help."""
    result = invoke("export", "--model", tmp_path, "--int8", spelling, "--quiet")
    assert result.exit_code == 0, result.output
    assert export_calls[0]["force"] is True and export_calls[0]["int8"] is True
    note = "note: `main export --force` is the old spelling of --accept-int8-loss (same effect)"
    assert (note in result.stderr) == (spelling == "--force")
    assert note not in result.stdout


def test_export_accept_int8_loss_without_int8_is_a_usage_error(export_calls, tmp_path):
    """`--accept-int8-loss` means something only with `--int8` (it was silently ignored): one usage
    line naming both, exit 2, nothing exported. The old `--force` without `--int8` still passes, as
    scripts written before issue #21 ran it."""
    result = invoke("export", "--model", tmp_path, "--accept-int8-loss", "--quiet")
    assert result.exit_code == 2 and not export_calls, result.output
    error = "Error: --accept-int8-loss applies to --int8 only: add --int8, or leave it out"
    assert [line for line in result.output.splitlines() if line.startswith("Error")] == [error]
    old = invoke("export", "--model", tmp_path, "--force", "--quiet")
    assert old.exit_code == 0, old.output
    assert export_calls[0]["force"] is True and export_calls[0]["int8"] is False


@pytest.mark.parametrize("name", ["predict", "report"])
def test_predict_and_report_force_is_still_replace_foreign(monkeypatch, tmp_path, name):
    import fastseg.inference.predict as predict_module
    import fastseg.inference.report as report_module

    seen = {}

    def stop(*args, **options):
        seen.update(options)
        raise SystemExit(0)  # the CLI's mapping is what is tested, not the inference

    module = predict_module if name == "predict" else report_module
    monkeypatch.setattr(module, name, stop)
    arguments = [name, "--model", str(tmp_path), "--quiet"]
    arguments += [str(tmp_path), "--out", str(tmp_path / "out")] if name == "predict" else []
    for spelling, expected in (("--force", True), ("--replace-foreign", True), (None, False)):
        seen.clear()
        result = CliRunner().invoke(main, arguments + ([spelling] if spelling else []))
        assert result.exit_code == 0, result.output
        assert seen["force"] is expected, spelling
        assert ("old spelling of --replace-foreign" in result.stderr) == (spelling == "--force")


# --- one number style -------------------------------------------------------------------------


def test_scores_print_with_three_decimals_everywhere():
    from cli.runs import format_table
    from fastseg.number_style import score, score_change

    assert [score(0.95549), score(0.5831), score(1.0), score(float("nan")), score(None)] == [
        "0.955", "0.583", "1.000", "n/a", "n/a"]  # fmt: skip
    assert score_change(-0.0089) == "-0.009" and score_change(0.01) == "+0.010"
    row = {"name": "r", "recipe": "fast", "data_set": "mine", "epochs": 2, "planned_epochs": 40,
           "valid_miou": 0.61694, "valid_pixel_accuracy": 0.9, "test_miou": None, "duration": 65.0,
           "date": "2026-12-06 10:00", "status": "finished"}  # fmt: skip
    assert format_table([row]).splitlines()[1].split()[3:8] == ["2/40", "0.617", "0.900", "-", "1m05s"]


def test_epoch_lines_use_the_same_style():
    pytest.importorskip("fastai")
    from fastseg.training.epoch_records import epoch_line

    names = ["epoch", "train_loss", "valid_loss", "valid_miou", "time"]
    line = epoch_line(names, [0, 0.51234, float("nan"), 0.41239, "00:05"], 0, 40, 1.2e-3, True)
    assert line == (
        "epoch 0 (40 planned)  train_loss 0.512  valid_loss nan  valid_miou 0.412  lr 1.20e-03  "
        "time 00:05  best"
    )


def test_own_data_runs_show_their_data_set_without_a_voc_list(own_data, voc_root):
    """Own-data runs recorded train_set "train" and `fastseg runs` showed "data/train", although
    --train-set is refused with a dataset.yaml: the data set's own train split is used."""
    from fastseg.runs.table import data_set_label

    assert data_set_label({"data": str(own_data), "train_set": "train"}) == "data"
    assert data_set_label({"data": str(own_data / "dataset.yaml"), "train_set": "train"}) == "data"
    assert data_set_label({"data": str(voc_root), "train_set": "trainaug"}) == f"{voc_root.name}/trainaug"
    assert data_set_label({"data": str(voc_root), "train_set": "train"}) == f"{voc_root.name}/train"
    assert data_set_label({"train_set": "train"}) == "train"  # no data recorded: what there is


@pytest.mark.slow
def test_export_model_positional_writes_the_same_file_as_model_option(tmp_path):
    """The real export, both spellings: byte-identical ONNX files (measured: 8-25 s each here)."""
    pytest.importorskip("onnx")
    import torch

    from fastseg.data.voc import VOC
    from fastseg.model.checkpoint import save_model
    from fastseg.model.config import ModelConfig
    from fastseg.model.network import SegmentationModel

    torch.manual_seed(0)
    config = ModelConfig(num_classes=len(VOC))
    save_model(tmp_path / "model.pth", SegmentationModel(config).eval(), config, size=32, classes=VOC)
    old = invoke("export", tmp_path / "model.pth", "--out", tmp_path / "old.onnx", "--quiet")
    new = invoke("export", "--model", tmp_path / "model.pth", "--out", tmp_path / "new.onnx", "--quiet")
    assert old.exit_code == new.exit_code == 0, (old.output, new.output)
    assert old.output.replace("old.onnx", "new.onnx") == new.output
    assert (tmp_path / "old.onnx").read_bytes() == (tmp_path / "new.onnx").read_bytes()


def test_runs_shows_an_own_data_run_by_its_data_set_alone(own_data, tmp_path):
    import json

    run = tmp_path / "runs" / "mine"
    run.mkdir(parents=True)
    train = {"data": str(own_data), "train_set": "train", "recipe": "fast", "epochs": 2}
    (run / "config.json").write_text(json.dumps({"train": train}))
    result = invoke("runs", tmp_path / "runs", "--json")
    assert result.exit_code == 0, result.output
    assert [row["data_set"] for row in json.loads(result.output)] == ["data"]
    table = invoke("runs", tmp_path / "runs").output.splitlines()
    assert table[1].split()[:3] == ["mine", "fast", "data"], table


def test_a_path_under_the_home_of_no_user_is_compared_as_written(tmp_path, monkeypatch):
    """A positional and its option (`report RUN --model RUN`) are compared after `~` expansion;
    `~nosuchuser/x` made Path.expanduser raise RuntimeError (found by a hostile pass)."""
    from cli.options import _same_path

    monkeypatch.chdir(tmp_path)
    assert _same_path(Path("~nosuchuser-fastseg/x"), Path("~nosuchuser-fastseg/./x"))
    assert not _same_path(Path("~nosuchuser-fastseg/x"), Path("~nosuchuser-fastseg/y"))
