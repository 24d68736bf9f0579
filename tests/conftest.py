"""Shared fixtures: a tiny generated VOC 2012 tree, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastseg.data.demo_voc import make_demo_voc


@pytest.fixture(scope="session")
def voc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding `VOCdevkit/VOC2012`: 16 train and 12 val images, 32-64 px."""
    root = tmp_path_factory.mktemp("voc")
    make_demo_voc(root, n_train=16, n_val=12, seed=1, min_size=32, max_size=64)
    return root


@pytest.fixture
def voc_copy(voc_root: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny dataset, for tests that damage it."""
    import shutil

    target = tmp_path / "data"
    shutil.copytree(voc_root, target)
    return target
