"""Every text file fastseg reads or writes names its encoding. Without one, Python uses the
locale's: on a machine set to Latin-1 a UTF-8 split list reads as other names ("image not
found" for a file that is there), and a name it cannot encode is a traceback (helper M's pass
found `.txt` split lists read that way). One scan of the source, so the next call cannot forget."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEXT_CALLS = ("read_text", "write_text")


def text_calls_without_encoding(source: str) -> list[int]:
    """Line numbers of `open(...)` (the builtin, not in a binary mode), `path.open(...)` with a
    literal text mode, and `path.read_text`/`path.write_text` calls that pass no `encoding`."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or any(keyword.arg == "encoding" for keyword in node.keywords):
            continue
        function = node.func
        name = function.id if isinstance(function, ast.Name) else getattr(function, "attr", None)
        mode_arguments = [keyword.value for keyword in node.keywords if keyword.arg == "mode"]
        if name == "open" and isinstance(function, ast.Name):
            mode_arguments = [*node.args[1:2], *mode_arguments]
            text = True
        elif name == "open":  # path.open("w"): the mode is its first argument; Image.open(...) has none
            mode_arguments = [*node.args[:1], *mode_arguments]
            text = bool(mode_arguments)
        else:  # path.read_text(); a bare write_text(...) is fastseg.atomic's, which writes UTF-8
            text = name in TEXT_CALLS and isinstance(function, ast.Attribute)
        mode = mode_arguments[0] if mode_arguments else None
        if isinstance(mode, ast.Constant) and isinstance(mode.value, str) and "b" in mode.value:
            continue
        if text and (mode is None or isinstance(mode, ast.Constant)):
            lines.append(node.lineno)
    return lines


def test_the_scan_finds_each_kind_of_call_and_passes_binary_ones():
    source = "\n".join([
        "open(p)", "open(p, 'w')", "p.open('r')", "p.read_text()", "p.write_text(t)",  # lines 1-5
        "open(p, 'rb')", "p.open('wb')", "p.read_bytes()", "Image.open(p)", "tarfile.open(p)",
        "open(p, encoding='utf-8')", "p.read_text(encoding='utf-8', errors='replace')",
        "p.open(mode='w', encoding='utf-8')", "write_text(p, t, durable)",
    ])  # fmt: skip
    assert text_calls_without_encoding(source) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("package", ["fastseg", "cli"])
def test_every_text_file_is_read_and_written_with_an_encoding(package):
    found = [f"{path.relative_to(ROOT)}:{line}"
             for path in sorted((ROOT / package).rglob("*.py"))
             for line in text_calls_without_encoding(path.read_text(encoding="utf-8"))]  # fmt: skip
    assert found == []
