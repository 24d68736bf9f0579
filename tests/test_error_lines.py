"""Every command's `Error:` is one line, or one line per listed problem: the CLI escapes what a
name in the message holds (`cli.errors.user_errors`), so no command needs to remember it. Before,
predict, download and demo each wrapped their body for it; export, train, report and the rest
printed a newline in a path as it was, splitting the line."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from model_files import save_untrained_voc_model

from cli.main import main
from fastseg.errors import DatasetError, FastsegError


def error_lines(result) -> list[str]:
    assert result.exit_code in (1, 2), (result.exit_code, result.output)
    assert "Traceback" not in result.output
    return [line for line in result.output.splitlines() if line.strip()]


@pytest.fixture
def odd(tmp_path):
    """A folder whose name holds a newline, a tab and a byte that is not UTF-8."""
    folder = tmp_path / "a\nb\tc\udcff"
    folder.mkdir()
    return folder


def test_export_and_train_say_a_newline_in_a_path_on_one_line(odd, tmp_path, voc_root):
    model = tmp_path / "model.pth"
    save_untrained_voc_model(model, 32)
    (odd / "notes.txt").write_text("mine")
    runner = CliRunner()
    exported = runner.invoke(main, ["export", "--model", str(model), "--out", str(odd / "no" / "x.onnx")])
    trained = runner.invoke(main, ["train", "--data", str(voc_root), "--out", str(odd / "notes.txt"),
                                   "--epochs", "1", "--no-pretrained"])  # fmt: skip
    for result, words in ((exported, "no such folder for --out"), (trained, "is a file")):
        lines = error_lines(result)
        errors = [line for line in lines if line.startswith("Error: ")]
        assert len(errors) == 1 and errors[0] == lines[-1] and words in errors[0], lines
        assert "a\\nb\\tc\\xff" in errors[0]  # the name, escaped as everywhere else
    assert (odd / "notes.txt").read_text() == "mine"


def test_a_listing_error_keeps_one_line_per_problem_each_escaped():
    error = DatasetError(lines=["2 problems:", "x\ny.png: unreadable", "z.png: no mask"])
    assert error.shown_lines() == ["2 problems:", "x\\ny.png: unreadable", "z.png: no mask"]
    assert str(error).splitlines() == error.shown_lines()  # a log writing str(error) gets the same
    assert FastsegError("one\ntwo").shown_lines() == ["one\\ntwo"]
    assert FastsegError("plain").lines == ["plain"] and str(FastsegError("plain")) == "plain"


def test_the_verbose_details_are_escaped_line_by_line(monkeypatch):
    import click

    from cli.errors import user_errors

    @click.command()
    @click.option("--verbose", is_flag=True)
    @user_errors
    def failing():
        raise FastsegError("bad \x1b[31mfile", details="key a\x07\nkey b")

    result = CliRunner().invoke(failing, ["--verbose"])
    assert result.exit_code == 1
    assert result.output.splitlines() == ["Error: bad \\x1b[31mfile", "key a\\x07", "key b"]


def test_the_cli_prints_lines_holding_values_through_say():
    """`cli.output.say` escapes what a name holds; `click.echo` of anything but a fixed text, or
    handed to the library as its `echo`, prints it raw. tests/test_option_values.py runs every
    command on paths holding a newline; this keeps a new line of output from slipping past `say`
    meanwhile (a value put in a variable first included)."""
    import ast
    from pathlib import Path

    allowed = {  # (file, function): why click.echo is right there
        ("download.py", "_count"),  # redraws `\r LABEL: N MB` in place (nl=False): a fixed label, numbers
        ("runs.py", "command"),  # the runs table and its JSON: several lines, each cell `shown`
        ("output.py", "say"),  # the one place that escapes
    }
    found = []
    for path in sorted((Path(__file__).resolve().parents[1] / "cli").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            called = {id(node.func) for node in ast.walk(function) if isinstance(node, ast.Call)}
            for node in ast.walk(function):
                if ast.unparse(node) != "click.echo" or (path.name, function.name) in allowed:
                    continue
                call = next((parent for parent in ast.walk(function)
                             if isinstance(parent, ast.Call) and parent.func is node), None)  # fmt: skip
                fixed = call is not None and all(isinstance(argument, ast.Constant) for argument in call.args)
                if id(node) not in called or not fixed:
                    found.append(f"{path.name}:{node.lineno} in {function.name}")
    assert found == [], "\n".join(found)
