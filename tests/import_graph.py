"""fastseg's import graph, read from the source: every import a module makes (at the top, inside a
function, or under `if TYPE_CHECKING:`) is an edge, so a circle Python's lazy imports hide is
still a circle (#25: four such circles hid behind imports inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fastseg"


def imported_names(source: str, package: str, names_too: bool = False) -> list[str]:
    """Every module a source imports, at the top or inside a function, relative imports resolved
    against `package` (in `fastseg.model`, `from ..data import x` is `fastseg.data`); `names_too`
    adds `a.b` for `from a import b`, which may name a module."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[: max(0, len(parts) + 1 - node.level)] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            named = [f"{module}.{alias.name}" for alias in node.names]  # `from a import b`: b may be a module
            names += ([module] + (named if names_too else [])) if node.module else named
    return names


def module_name(path: Path, root: Path) -> str:
    """`fastseg/inference/loop.py` -> `fastseg.inference.loop`; a package's `__init__.py` is the package."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """fastseg module -> the fastseg modules it imports. `from a.b import c` is `a.b.c` when `c` is
    a module of its own, else `a.b`; importing `a.b.c` also runs the packages `a` and `a.b`, which
    are edges too (a package whose `__init__` imports back would close a circle)."""
    modules = {module_name(path, root): path for path in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from its own package, `level - 1` packages up
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in node.names:
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        edges = set()
        for target in targets:
            parts = target.split(".")
            edges |= {".".join(parts[:end]) for end in range(1, len(parts) + 1)} & modules.keys()
        graph[name] = edges - {name}
    return graph


def circles(graph: dict[str, set[str]], watched: tuple[str, ...] = ("fastseg",)) -> list[list[str]]:
    """Each strongly connected group of more than one module (Tarjan's algorithm) that holds a
    module under `watched`, sorted: every module in it imports, step by step, every other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph.get(module, ())):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1 and any(m == w or m.startswith(f"{w}.") for m in group for w in watched):
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(found)
