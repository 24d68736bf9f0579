"""The training and run-folder packages keep the shape issue #25 gave them, checked.

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
from import_graph import module_name

PACKAGE = Path(__file__).resolve().parents[1] / "fastseg"


# --- callback order ----------------------------------------------------------------------------


PLACING = {"order", "run_after", "run_before"}  # the class attributes that place a fastai callback


def ordered_classes(package: Path) -> list[tuple[str, str, ast.ClassDef]]:
    """(module, class name, class node) of every class whose own body assigns `order`,
    `run_after` or `run_before`."""
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and PLACING & set(assigned_names(node)):
                found.append((module_name(path, PACKAGE), node.name, node))
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
