"""setup.cfg promises Python 3.10 (`python_requires = >=3.10`), but CI runs 3.11, so a 3.11-only
call passes every other test: `hashlib.file_digest` broke `fastseg export` on 3.10 and
`asyncio.timeout` broke `serve` there (found by a hostile pass, issue #24). No 3.10 interpreter
with the project's packages is at hand, so the code is read instead: no call of the standard
library's 3.11+ names, and no module of 3.11+ imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEWER_ATTRIBUTES = {  # module.name, new in Python 3.11 or later
    ("asyncio", "timeout"), ("asyncio", "timeout_at"), ("asyncio", "TaskGroup"), ("hashlib", "file_digest"),
    ("datetime", "UTC"), ("typing", "Self"), ("typing", "LiteralString"), ("typing", "Never"),
    ("typing", "assert_never"), ("typing", "reveal_type"), ("enum", "StrEnum"), ("operator", "call"),
}  # fmt: skip
NEWER_MODULES = {"tomllib", "wsgiref.types"}


def sources() -> list[Path]:
    return sorted([*(ROOT / "fastseg").rglob("*.py"), *(ROOT / "cli").rglob("*.py")])


def newer_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in NEWER_ATTRIBUTES:
                found.append(f"{node.value.id}.{node.attr} (line {node.lineno})")
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [f"from {node.module} import {alias.name} (line {node.lineno})" for alias in node.names
                      if (node.module, alias.name) in NEWER_ATTRIBUTES]  # fmt: skip
            if node.module in NEWER_MODULES:
                found.append(f"import {node.module} (line {node.lineno})")
        elif isinstance(node, ast.Import):
            found += [f"import {alias.name} (line {node.lineno})" for alias in node.names
                      if alias.name in NEWER_MODULES]  # fmt: skip
        elif type(node).__name__ == "TryStar":  # except* (3.11)
            found.append(f"except* (line {node.lineno})")
    return found


def test_the_package_calls_nothing_newer_than_python_3_10():
    used = {str(path.relative_to(ROOT)): uses for path in sources() if (uses := newer_uses(path))}
    assert used == {}


@pytest.mark.parametrize(
    "code", ["import hashlib\nhashlib.file_digest(f, 'sha256')", "import asyncio\nasyncio.timeout(3)",
             "from typing import Self", "import tomllib"],
)  # fmt: skip
def test_the_check_sees_each_kind_of_newer_use(tmp_path, code):
    path = tmp_path / "module.py"
    path.write_text(code)
    assert newer_uses(path)
