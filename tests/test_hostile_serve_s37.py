"""Session 37's hostile pass over `fastseg serve`, as a stranger's client would attack it. Each test
failed before its fix.

- `--host a..b` (an empty label) or a 300-letter name: a UnicodeError traceback from the IDNA codec
  instead of the one `cannot listen` line; a NUL in --host reached the terminal raw.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from model_files import save_seeded_voc_model

from cli.main import main
from fastseg.inference.segmenter import Segmenter


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return save_seeded_voc_model(tmp_path_factory.mktemp("model") / "model.pth")


# ---- start-up ----


@pytest.mark.parametrize("host", ["a..b", "x" * 300, ".", "bad\x00host"])
def test_a_host_that_names_nothing_is_one_line(model_file, monkeypatch, host):
    """The IDNA codec refuses an empty or 64+ letter label with a UnicodeError (not an OSError):
    it was a traceback. Every --host that cannot be bound is the one `cannot listen` line, its
    name escaped (a NUL in it does not reach the terminal), before the model is loaded."""
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("uvicorn started"))
    monkeypatch.setattr(Segmenter, "open", lambda *a, **k: pytest.fail("the model was loaded"))
    result = CliRunner().invoke(main, ["serve", str(model_file), "--host", host, "--port", "0"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot listen on "), result.output
    assert "\x00" not in result.output and "Traceback" not in result.output
