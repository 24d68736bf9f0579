"""The training and run-folder packages keep the shape issue #25 gave them, checked.

- No module of `fastseg.training` or `fastseg.runs` is in an import circle, counting every import
  (at the top, inside functions, under `TYPE_CHECKING`): `run_log.py` imported `trainer.py` for
  `TrainResult` while `trainer.py` imported it back.
- No fastseg callback is placed by a bare `order` number. fastai 2.8 calls callbacks sorted by
  `order` alone, so every position is a number; each must be taken from the neighbour it names
  in `run_after` / `run_before` (fastai's own vocabulary), agree with that neighbour's number,
  and lead, through fastseg callbacks if need be, to a fastai callback. Before, resume hung on
  64, 0, 66, 60 and -5 tied to fastai internals nobody named.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from fastai.callback.core import Callback, TrainEvalCallback
from fastai.callback.progress import ProgressCallback
from fastai.learner import Recorder

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fastseg"
CHECKED = ("fastseg.training", "fastseg.runs")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path) -> dict[str, set[str]]:
    """fastseg module -> the fastseg modules it imports anywhere in its file."""
    files = {module_name(path, package.parent): path for path in package.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from fastseg.runs import history` imports the module fastseg.runs.history
                candidates = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            else:
                continue
            for candidate in candidates:
                if candidate in files and candidate != name:
                    targets.add(candidate)
                    break
        graph[name] = targets
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_circle_finder_finds_a_circle_through_a_function_level_import(tmp_path):
    """The checker itself: a circle closed only by an import inside a function, or only under
    TYPE_CHECKING, is a circle."""
    package = tmp_path / "fastseg"
    (package / "training").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "training" / "__init__.py").write_text("")
    (package / "training" / "a.py").write_text("from fastseg.training.b import thing\n")
    (package / "training" / "b.py").write_text("def thing():\n    from fastseg.training import a\n")
    (package / "training" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import fastseg.training.d\n"
    )
    (package / "training" / "d.py").write_text("import fastseg.training.c\n")
    (package / "training" / "e.py").write_text("import fastseg.training.a\n")  # into a circle, not in one
    assert circles(import_graph(package)) == [
        ["fastseg.training.a", "fastseg.training.b"],
        ["fastseg.training.c", "fastseg.training.d"],
    ]


def test_no_training_or_run_folder_module_is_in_an_import_circle():
    found = [component for component in circles(import_graph(PACKAGE))
             if any(member.startswith(CHECKED) for member in component)]  # fmt: skip
    assert found == []


# --- callback order ----------------------------------------------------------------------------


PLACING = {"order", "run_after", "run_before"}  # the class attributes that place a fastai callback


def ordered_classes(package: Path) -> list[tuple[str, str, ast.ClassDef]]:
    """(module, class name, class node) of every class whose own body assigns `order`,
    `run_after` or `run_before`."""
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and PLACING & set(assigned_names(node)):
                found.append((module_name(path), node.name, node))
    return found


def assigned_names(node: ast.ClassDef) -> dict[str, ast.expr]:
    """Class attribute -> the expression its class body assigns (`a, b = x, y` counts both)."""
    names = {}
    for statement in node.body:
        if isinstance(statement, ast.AnnAssign) and statement.value is not None:
            statement = ast.Assign(targets=[statement.target], value=statement.value)
        if not isinstance(statement, ast.Assign):
            continue
        for target in statement.targets:
            if isinstance(target, ast.Tuple) and isinstance(statement.value, ast.Tuple):
                pairs = zip(target.elts, statement.value.elts, strict=False)
            else:
                pairs = [(target, statement.value)]
            names.update({element.id: value for element, value in pairs if isinstance(element, ast.Name)})
    return names


def neighbours(value: object) -> list[type]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def order_problems(cls: type, node: ast.ClassDef) -> list[str]:
    """What is wrong with how callback `cls` places itself, or []."""
    own = vars(cls)
    after, before = neighbours(own.get("run_after")), neighbours(own.get("run_before"))
    if not after and not before:
        return ["sets `order` but names no run_after / run_before neighbour"]
    problems = []
    expression = assigned_names(node).get("order")  # None: the inherited or default order
    read = {sub.value.id for sub in ast.walk(expression or ast.Constant(0)) if isinstance(sub, ast.Attribute)
            and sub.attr == "order" and isinstance(sub.value, ast.Name)}  # fmt: skip
    if expression is not None and not read & {neighbour.__name__ for neighbour in after + before}:
        problems.append(f"order = {ast.unparse(expression)} is not taken from a neighbour's order")
    defaults = (TrainEvalCallback, Recorder, ProgressCallback)  # fastai's `defaults.callbacks`
    for neighbour in after:
        # a tie runs after only a callback that is always added first: one of the Learner's defaults
        if not (cls.order > neighbour.order or (cls.order == neighbour.order and neighbour in defaults)):
            problems.append(f"order {cls.order} does not run after {neighbour.__name__} ({neighbour.order})")
    for neighbour in before:
        if not cls.order < neighbour.order:
            problems.append(f"order {cls.order} does not run before {neighbour.__name__} ({neighbour.order})")
    if not anchored(cls, set()):
        problems.append("no chain of run_after / run_before leads to a fastai callback")
    return problems


def anchored(cls: type, seen: set[type]) -> bool:
    """Whether `cls` is placed, directly or through fastseg callbacks, relative to a fastai one."""
    seen.add(cls)
    for neighbour in neighbours(vars(cls).get("run_after")) + neighbours(vars(cls).get("run_before")):
        if neighbour.__module__.startswith("fastai."):
            return True
        if neighbour not in seen and anchored(neighbour, seen):
            return True
    return False


def fastseg_callbacks_placed_by_order(package: Path) -> list[tuple[type, ast.ClassDef]]:
    found = []
    for module, name, node in ordered_classes(package):
        cls = getattr(importlib.import_module(module), name)
        if isinstance(cls, type) and issubclass(cls, Callback):  # not fasttransform's ItemTransforms
            found.append((cls, node))
    return found


def test_the_order_checker_refuses_a_bare_number_and_a_wrong_neighbour():
    source = """
class Bare(Callback):
    order = 64

class Unnamed(Callback):
    run_after = Recorder
    order = 64

class Wrong(Callback):
    run_before = Recorder
    order = Recorder.order + 1

class Fine(Callback):
    run_after = Recorder
    order = Recorder.order + 1

class Tied(Callback):
    run_after = ProgressCallback
    order = ProgressCallback.order
"""
    scope = {"Callback": Callback, "Recorder": Recorder, "ProgressCallback": ProgressCallback}
    exec(compile(source, "callbacks", "exec"), scope)  # noqa: S102 - the test's own source
    nodes = {node.name: node for node in ast.parse(source).body}
    problems = {name: order_problems(scope[name], nodes[name]) for name in nodes}
    assert problems["Bare"] == ["sets `order` but names no run_after / run_before neighbour"]
    assert problems["Unnamed"] == ["order = 64 is not taken from a neighbour's order"]
    assert problems["Wrong"] == ["order 51 does not run before Recorder (50)"]
    assert problems["Fine"] == [] and problems["Tied"] == []


def test_every_fastseg_callback_is_ordered_relative_to_a_fastai_callback():
    placed = fastseg_callbacks_placed_by_order(PACKAGE)
    names = {cls.__name__ for cls, _ in placed}
    assert {"ResumableCheckpoint", "EpochOffset", "SeededEpochs", "HistoryLogger", "EpochLog"} <= names
    assert "L1Regularization" in names  # placed by run_before alone, at fastai's default order
    problems = {cls.__name__: order_problems(cls, node) for cls, node in placed}
    assert {name: found for name, found in problems.items() if found} == {}


def test_resume_callbacks_run_where_fastai_needs_them():
    """The positions that carry resume (issue #19), as fastai sorts them: the epoch is shifted
    before the Recorder logs it and before the seeding reads it; the saved progress is put back
    after, and saved after, every fastai tracker."""
    from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback

    from fastseg.training.epoch_records import HistoryLogger
    from fastseg.training.resume import EpochOffset, ResumableCheckpoint
    from fastseg.training.schedule import RunScheduler, SeededEpochs

    callbacks = [TrainEvalCallback(), Recorder(), ProgressCallback(), RunScheduler({}, 4),
                 SaveModelCallback(), EarlyStoppingCallback(), HistoryLogger(None),
                 ResumableCheckpoint(None), EpochOffset(2), SeededEpochs(0)]  # fmt: skip
    order = [type(cb).__name__ for cb in sorted(callbacks, key=lambda cb: cb.order)]  # fastai's stable sort
    assert order.index("EpochOffset") < order.index("SeededEpochs") < order.index("Recorder")
    assert order.index("ProgressCallback") < order.index("HistoryLogger")  # chained behind the table
    assert order[-1] == "ResumableCheckpoint" and order[-2] == "EarlyStoppingCallback"
