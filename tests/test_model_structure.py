"""The model knows no data set (issue #25): `fastseg.model` imports nothing from the data sets, the
run folder or training, and a network is never built without the caller's class count."""

import ast
from pathlib import Path

import pytest

from fastseg.model.config import ModelConfig
from fastseg.model.network import SegmentationModel

PACKAGE = Path(__file__).resolve().parents[1] / "fastseg"
MODEL = PACKAGE / "model"
FORBIDDEN = ("fastseg.data", "fastseg.runs", "fastseg.training")


def fastseg_imports(source: str, package: str = "fastseg.model", names_too: bool = False) -> list[str]:
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


def forbidden_imports(source: str) -> list[str]:
    return [name for name in fastseg_imports(source)
            if any(f"{name}.".startswith(f"{prefix}.") for prefix in FORBIDDEN)]  # fmt: skip


def test_model_imports_no_data_set_run_folder_or_training():
    files = sorted(MODEL.rglob("*.py"))
    assert len(files) >= 8  # the package is there, not an empty glob
    found = {path.name: forbidden_imports(path.read_text()) for path in files}
    assert {name: imports for name, imports in found.items() if imports} == {}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from fastseg.data.voc import VOC\n", ["fastseg.data.voc"]),
        ("def f():\n    import fastseg.runs.folder\n", ["fastseg.runs.folder"]),
        ("class A:\n    def f(self):\n        from fastseg.training import trainer\n", ["fastseg.training"]),
        ("from ..data import voc\n", ["fastseg.data"]),
        ("from .. import runs\n", ["fastseg.runs"]),
        ("from fastseg.classes import Classes\nfrom fastseg.database import x\n", []),
        ("import fastseg.model.config\nfrom . import network\n", []),
    ],
)
def test_the_rule_catches_each_kind_of_import(source, expected):
    """Not vacuous: a top-level, a function-level, a method-level and a relative import are each
    caught; a core module, a name that only starts like a forbidden one and model's own are not."""
    assert forbidden_imports(source) == expected


def test_model_config_needs_the_class_count():
    with pytest.raises(TypeError, match="num_classes"):
        ModelConfig()
    assert ModelConfig(num_classes=3).num_classes == 3


def test_network_needs_its_config():
    with pytest.raises(TypeError, match="config"):
        SegmentationModel()
    network = SegmentationModel(ModelConfig(num_classes=4, decoder_channels=(8, 8, 8, 8, 8)))
    assert network.head.out_channels == 4
