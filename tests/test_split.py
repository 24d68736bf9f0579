import json

import pytest
import torch

from fastseg.data.split import halve, seed_split
from fastseg.errors import CheckpointError
from fastseg.runs.folder import RunFolder

VOC_VAL_SIZE = 1449


def fake_ids(n: int) -> list[str]:
    return [f"2008_{i:06d}" for i in range(n)]


def test_halving_voc_val_gives_seed_sizes():
    valid, test = halve(fake_ids(VOC_VAL_SIZE))
    assert (len(valid), len(test)) == (725, 724)
    assert not set(valid) & set(test)
    assert set(valid) | set(test) == set(fake_ids(VOC_VAL_SIZE))


def test_halving_follows_random_split_rule_with_seed_42():
    """The seed: random_split(val, [0.5, 0.5], Generator().manual_seed(42)) == randperm order."""
    ids = fake_ids(VOC_VAL_SIZE)
    order = torch.randperm(VOC_VAL_SIZE, generator=torch.Generator().manual_seed(42)).tolist()
    valid, test = halve(ids, seed=42)
    assert valid == [ids[i] for i in order[:725]]
    assert test == [ids[i] for i in order[725:]]


def test_halving_is_deterministic_and_seed_dependent():
    ids = fake_ids(100)
    assert halve(ids) == halve(ids)
    assert halve(ids, seed=1) != halve(ids, seed=42)


def test_split_round_trips_through_json(tmp_path):
    split = seed_split([f"2007_{i:06d}" for i in range(10)], fake_ids(9))
    run = RunFolder(tmp_path)
    run.write_split(split)
    assert run.read_split() == split
    assert json.loads((tmp_path / "split.json").read_text())["seed"] == 42
    assert split.ids("test") == split.test and split.ids("val") == split.valid


def test_unreadable_split_file_names_the_file(tmp_path):
    path = tmp_path / "split.json"
    path.write_text("{not json")
    with pytest.raises(CheckpointError, match="split.json: not a fastseg split file"):
        RunFolder(tmp_path).read_split()


def test_an_id_listed_twice_in_one_split_is_refused_naming_it(tmp_path):
    """Found by a hostile pass: a hand-edited split.json listing a test image twice made report
    score it twice (and training would weigh a repeated one double)."""
    split = seed_split([f"2007_{i:06d}" for i in range(10)], fake_ids(9))
    values = split.to_dict()
    values["test"] = [*values["test"], values["test"][0]]
    (tmp_path / "split.json").write_text(json.dumps(values))
    with pytest.raises(CheckpointError, match=rf"split.json: .*'test' lists '{values['test'][0]}' twice"):
        RunFolder(tmp_path).read_split()


@pytest.mark.parametrize(("ids", "valid", "test"), [([], [], []), (["a"], ["a"], [])])
def test_halving_zero_or_one_id_warns_nothing(ids, valid, test):
    """torch's "Length of split at index 1 is 0" UserWarning was printed on the user's terminal
    (a val split of one image); the halves are the same as before."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert halve(ids) == (valid, test)
