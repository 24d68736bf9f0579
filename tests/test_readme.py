"""The README's commands, run as written: the quick start's `make demo` (the Makefile's own
command line) and the own-data block, on a generated `mydata`, offline, in a fresh folder."""

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner
from demo_folder import make_demo_folder
from PIL import Image

from cli.main import main

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = ".venv/bin/fastseg"


def code_blocks(markdown: str, heading: str, holding: str = "") -> list[str]:
    """The fenced ```bash blocks of the section under `heading` that hold `holding`, in order."""
    section = markdown.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    return [block for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S) if holding in block]


def commands(block: str) -> list[list[str]]:
    """Each `.venv/bin/fastseg ...` line of a block as arguments, its comment dropped."""
    lines = [shlex.split(line, comments=True) for line in block.splitlines()]
    assert all(words[0] == PROGRAM for words in lines if words), block
    return [words[1:] for words in lines if words]


def test_the_readme_names_the_commands_this_test_runs():
    """If the README's blocks move or change shape, this fails rather than testing nothing."""
    readme = (ROOT / "README.md").read_text()
    own = commands(code_blocks(readme, "## Your own data", "fastseg check-data")[0])
    assert [words[0] for words in own] == ["check-data", "show-data", "train", "predict", "report"]
    assert "make demo" in code_blocks(readme, "## Quick start")[0]
    assert re.search(r"^demo: .*\n\t\$\(BIN\)/fastseg demo ", (ROOT / "Makefile").read_text(), flags=re.M)


@pytest.mark.slow
def test_own_data_commands_run_as_written_offline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_demo_folder(tmp_path / "mydata", ["background", "road", "car"], {"train": 16, "val": 6, "test": 6})
    readme = (ROOT / "README.md").read_text()
    outputs = []
    for arguments in commands(code_blocks(readme, "## Your own data", "fastseg check-data")[0]):
        result = CliRunner().invoke(main, arguments)
        assert result.exit_code == 0, f"{shlex.join(arguments)}:\n{result.output}"
        outputs.append(result.output)
    assert not any("Traceback" in output or "more than the" in output for output in outputs)
    masks = sorted((tmp_path / "outputs" / "masks").glob("*.png"))
    assert len(masks) == 6 and all(Image.open(mask).mode == "P" for mask in masks)
    assert (tmp_path / "outputs" / "runs" / "mine" / "report" / "report.html").is_file()
    assert (tmp_path / "outputs" / "runs" / "mine" / "model.pth").is_file()
