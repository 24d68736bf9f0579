"""`fastseg runs --json` writes a run folder named in bytes that are not UTF-8 as `run\\xff`, the
spelling of every fastseg line and CSV; it wrote the lone surrogate Python keeps (`\\udcff`),
which strict JSON parsers refuse (helper E's note)."""

from __future__ import annotations

import json
import os

from click.testing import CliRunner

from cli.main import main


def test_runs_json_spells_a_non_utf8_folder_name_as_its_bytes(tmp_path):
    folder = tmp_path / os.fsdecode(b"run\xff")
    folder.mkdir()
    (folder / "config.json").write_text("")  # with a history.csv: a damaged run, listed by its name
    (folder / "history.csv").write_text("epoch\n")
    result = CliRunner().invoke(main, ["runs", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "\\udcff" not in text
    rows = json.loads(text)
    assert [row["name"] for row in rows] == ["run\\xff"], rows
    text.encode("utf-8")  # every character one UTF-8 can hold: no surrogate
