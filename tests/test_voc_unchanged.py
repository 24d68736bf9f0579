"""VOC runs are unchanged by own-data-set support (issue 11): a VOC run's config, split, class
weights and fixed-seed first batches, for both recipes, equal the fingerprints recorded with the
code before that change (`tests/data/voc_run_fingerprint.json`, made by this module's
`fingerprint` on commit 27183c1). The batches are compared by sha256 of their bytes: bit for bit.
Regenerate only for a change that is meant to alter VOC runs, and say so in its commit."""

import hashlib
import json
from pathlib import Path

import pytest
import torch

from fastseg.launch.processes import launched
from fastseg.runs.folder import RunFolder
from fastseg.training.recipes import recipe
from fastseg.training.trainer import make_learner, prepare_run

RECORDED = Path(__file__).parent / "data" / "voc_run_fingerprint.json"


def digest(tensor: torch.Tensor) -> str:
    values = tensor.as_subclass(torch.Tensor).detach().cpu().contiguous().numpy()
    return hashlib.sha256(values.tobytes()).hexdigest()[:16]


def fingerprint(voc_root: Path, work: Path, name: str) -> dict:
    """What a new VOC run of recipe `name` writes before its first epoch, and its first batches."""
    run_dir = work / name
    config = recipe(name, data=str(voc_root), out=str(run_dir), size=48, batch_size=4, epochs=1,
                    pretrained=False, num_workers=0, seed=0, train_set="train")  # fmt: skip
    run = RunFolder(run_dir)
    with launched("cpu") as launch:
        prepared = prepare_run(config, run, False, launch, False)
        learn = make_learner(config, run, prepared, launch, False, False)
    config_json = json.loads((run_dir / "config.json").read_text())
    train = {key: value for key, value in config_json["train"].items() if key not in ("data", "out")}
    images, masks = learn.dls.train.one_batch()
    valid_images, valid_masks = learn.dls.valid.one_batch()
    return {
        "train_config": train,
        "model_config": config_json["model"],
        "split": json.loads((run_dir / "split.json").read_text()),
        "class_weights": json.loads((run_dir / "class_weights.json").read_text()),
        "train_batch": [digest(images), digest(masks)],
        "valid_batch": [digest(valid_images), digest(valid_masks)],
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", ["seed", "fast"])
def test_a_voc_run_starts_exactly_as_before(voc_root, tmp_path, name):
    recorded = json.loads(RECORDED.read_text())[name]
    assert fingerprint(voc_root, tmp_path, name) == recorded
