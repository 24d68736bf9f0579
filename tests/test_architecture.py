"""The rules of ARCHITECTURE.md, checked: who may import whom, and inference without fastai."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from import_graph import circles, import_graph, imported_names, module_name
from PIL import Image

from fastseg.data.voc import VOC
from fastseg.model.checkpoint import save_model
from fastseg.model.config import ModelConfig
from fastseg.model.network import SegmentationModel

PACKAGE = Path(__file__).resolve().parents[1] / "fastseg"
FASTAI = ("fastai", "fasttransform", "fastprogress", "fastcore")
# Packages that must work without fastai installed, and fastseg packages each may not import.
FORBIDDEN = {
    "data": ("training", "inference", "model"),
    "imaging": ("training", "inference", "model", "data.voc"),
    "model": ("training", "inference", "data", "runs"),  # a model knows no data set (#25)
    "inference": ("training", "export"),
    "export": ("training",),
    "launch": ("training", "inference", "model"),
    "runs": ("inference",),
    "visualization": ("training", "inference"),
    "metrics.py": ("training", "inference"),
    "serving": ("training", "export"),
    "importing": ("training", "inference", "model", "export", "serving"),
}


def imports_of(path: Path, package: Path = PACKAGE) -> list[str]:
    """Every module `path` imports, at the top or inside a function, relative imports resolved."""
    return imported_names(path.read_text(encoding="utf-8"), module_name(path, package).rpartition(".")[0])


def breaches(part: str, package: Path = PACKAGE) -> list[str]:
    """Every import in `package/part` that the rules forbid: fastai anywhere, and the fastseg
    packages `FORBIDDEN[part]` names."""
    files = [package / part] if part.endswith(".py") else sorted((package / part).rglob("*.py"))
    assert files, f"{package / part} holds no Python file"
    return [
        f"{path.relative_to(package)} imports {name}"
        for path in files
        for name in imports_of(path, package)
        if name.split(".")[0] in FASTAI
        or any(f"{name}.".startswith(f"fastseg.{other}.") for other in FORBIDDEN[part])
    ]


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_layers_import_only_what_they_may(part):
    assert breaches(part) == []


def test_the_rule_catches_a_breach(tmp_path):
    """The rule above is not vacuous: in a package laid out like fastseg's, an inference module
    importing fastai inside a function, or training at the top, is each reported; an allowed
    import is not."""
    (tmp_path / "inference").mkdir()
    (tmp_path / "inference" / "bad.py").write_text(
        "import fastseg.training.trainer\nimport fastseg.model.network\n"
        "def f():\n    from fastai.learner import Learner\n"
    )
    assert breaches("inference", tmp_path) == [
        "inference/bad.py imports fastseg.training.trainer",
        "inference/bad.py imports fastai.learner",
    ]


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
def test_the_rule_catches_each_kind_of_import(tmp_path, source, expected):
    """Not vacuous for a model module: a top-level, a function-level, a method-level and a relative
    import are each caught; a core module, a name that only starts like a forbidden one and
    model's own are not."""
    package = tmp_path / "fastseg"
    (package / "model").mkdir(parents=True)
    (package / "model" / "bad.py").write_text(source)
    assert breaches("model", package) == [f"model/bad.py imports {name}" for name in expected]


def test_importing_predict_and_report_loads_no_fastai():
    code = (
        "import sys, fastseg.inference.predict, fastseg.inference.report, cli.predict, cli.report, "
        "fastseg.export.exporter, cli.export; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FASTAI!r}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_inference_imports_no_torchvision():
    """torchvision's import pulls in torch._dynamo (1.8 s of a 6 s predict start-up); inference
    needs none of it."""
    code = (
        "import sys, fastseg.inference.predict, fastseg.inference.report, fastseg.model.checkpoint; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torchvision'))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["vgg16_bn", "mobilenetv3_large_100"])  # fastseg's own, and timm's
def test_predict_runs_with_fastai_uninstalled(tmp_path, encoder):
    """`fastseg predict` end to end in a process where importing fastai fails."""
    torch.manual_seed(0)
    config = ModelConfig(num_classes=len(VOC), encoder=encoder)
    model = save_model(tmp_path / "model.pth", SegmentationModel(config).eval(), config, size=32, classes=VOC)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), np.uint8)).save(tmp_path / "a.png")
    blocked = ", ".join(f"{name!r}: None" for name in FASTAI)
    code = (
        f"import sys; sys.modules.update({{{blocked}}}); from cli.main import main; "
        f"main(['predict', '--model', {str(model)!r}, {str(tmp_path / 'a.png')!r}, "
        f"'--out', {str(tmp_path / 'out')!r}, '--num-workers', '0'])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "1 segmented, 0 failed" in result.stdout
    with Image.open(tmp_path / "out" / "a.png") as mask:
        assert mask.size == (30, 20) and mask.mode == "P"


def test_no_fastseg_module_is_in_an_import_circle():
    """#25: the circles data/dataset <-> folder_dataset/voc, inference/loop <-> sliding,
    inference/runtime <-> segmenter and training/run_log <-> trainer (and model/pretrained <->
    timm_pretrained, found on the way) are gone, and no new one may form anywhere."""
    graph = import_graph()
    assert {"fastseg.inference.segmenter", "fastseg.training.trainer", "fastseg.data.factory"} <= graph.keys()
    assert circles(graph) == []


def test_the_circle_check_finds_a_circle(tmp_path):
    """The check is not vacuous: in a package laid out like fastseg's, a circle closed by an import
    inside a function, one closed under TYPE_CHECKING, and one through a package's `__init__` are
    each found; imports that only go one way are not."""
    root = tmp_path / "fastseg"
    for folder in ("inference", "serving", "model"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    files = {
        "inference/loop.py": "from fastseg.inference.files import loader\n",
        "inference/files.py": "def f():\n    from fastseg.inference import loop\n",
        "inference/segmenter.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from fastseg.inference.runtime import Runtime\n",
        "inference/runtime.py": "import fastseg.inference.segmenter\nimport fastseg.model.network\n",
        "model/network.py": "import torch\n",
        "serving/engine.py": "from fastseg.model.network import x\n",
        "serving/__init__.py": "from . import app\n",
        "serving/app.py": "from fastseg.serving.engine import Engine\n",
    }
    for name, text in files.items():
        (root / name).write_text(text)
    graph = import_graph(root)
    assert graph["fastseg.inference.files"] == {"fastseg", "fastseg.inference", "fastseg.inference.loop"}
    assert circles(graph) == [
        ["fastseg.inference.files", "fastseg.inference.loop"],
        ["fastseg.inference.runtime", "fastseg.inference.segmenter"],
        ["fastseg.serving", "fastseg.serving.app"],  # app imports the package, which imports app
    ]
