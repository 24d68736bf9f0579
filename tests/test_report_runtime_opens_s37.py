"""`report --runtime onnx|int8` on a run folder opened the chosen ONNX file's session once more
only to check its precision, which `choose_runtime` had checked already (review): a session of a
large graph costs seconds. A file given as --model is still checked (nothing checked it before)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.report import chosen_model
from fastseg.errors import OptionError
from fastseg.inference import runtime, runtime_choice
from fastseg.inference.runtime_choice import RuntimeChoice


@pytest.fixture
def opened(monkeypatch):
    calls = []
    monkeypatch.setattr(runtime, "open_onnx", lambda path: calls.append(path) or (None, None))
    return calls


def test_a_run_folders_chosen_export_is_not_opened_again(tmp_path, opened, monkeypatch):
    folder = tmp_path / "run"
    folder.mkdir()
    chosen = RuntimeChoice(folder / "model.onnx", "onnx", "--runtime onnx: model.onnx")
    monkeypatch.setattr(runtime_choice, "choose_runtime", lambda *a: chosen)
    assert chosen_model(folder, "onnx", "cpu", "auto", quiet=True) == folder / "model.onnx"
    assert opened == []


def test_a_given_file_is_still_checked_for_the_precision_asked_for(tmp_path, opened, monkeypatch):
    given = tmp_path / "model.int8.onnx"
    given.write_bytes(b"")
    chosen = RuntimeChoice(given, "onnx", "--runtime onnx: model.int8.onnx")
    monkeypatch.setattr(runtime_choice, "choose_runtime", lambda *a: chosen)

    def refused(choice, loaded, asked):
        raise OptionError("an INT8 export")

    monkeypatch.setattr(runtime_choice, "check_opened", refused)
    with pytest.raises(OptionError):
        chosen_model(given, "onnx", "cpu", "auto", quiet=True)
    assert opened == [Path(given)]
