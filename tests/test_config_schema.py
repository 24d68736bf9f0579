"""Every value of a `--config` file is checked before anything starts (issue #19, item 3).

Each case below was a traceback (or, for `lr: .nan`, a finished run with NaN weights) and five
of them left config.json and split.json behind, so the next start needed --force. Now each is
one line naming the file and the field, exit 1, and the run folder is not created. A property
test generates values for every field and asserts the same of all of them.
"""

import re
import string

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.main import main
from fastseg.structured_files import MAX_ALIASES, StructuredFileError, load_json, load_yaml
from fastseg.training.config import TrainConfig, field_problem
from fastseg.training.config_file import read_config_file


def start(voc_root, tmp_path, text, name="my.yaml", data=True):
    config = tmp_path / name
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    arguments = ["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"]
    return CliRunner().invoke(main, [*arguments, *(["--data", str(voc_root)] if data else [])])


def assert_one_line_and_nothing_made(result, tmp_path, *expected):
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for part in expected:
        assert part in lines[0], lines[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("epochs: -3", "epochs -3: out of range"),
        ("batch_size: eight", "batch_size 'eight': expected a whole number"),
        ("size: -64", "size -64: out of range"),
        ("recipe: turbo", "recipe 'turbo': choose one of fast, seed"),
        ("seed: abc", "seed 'abc': expected a whole number"),
        ("flip_p: 7", "augment.flip_p 7: out of range"),
        ("num_workers: many", "num_workers 'many'"),
        ("data: 5", "data 5: expected text"),
        ("lr: .nan", "lr nan: expected a number"),
        ("lr: .inf", "lr inf: expected a number"),
        ("trackers: &t [*t]", "trackers"),
        ("epochs: 2\nepochs: 3", "key 'epochs' is given twice"),
        ("augment: [1, 2]", "augment"),
        ("scale_range: [1.1, 0.9]", "augment.scale_range"),
        ("keep: worst", "keep 'worst'"),
        ("epochs: 3.5", "epochs 3.5: expected a whole number"),
        ("pretrained: maybe", "pretrained 'maybe': expected true or false"),
    ],
)
def test_a_bad_config_value_is_one_line_naming_the_file_and_nothing_is_made(voc_root, tmp_path, text,
                                                                             expected):  # fmt: skip
    result = start(voc_root, tmp_path, text)
    assert_one_line_and_nothing_made(result, tmp_path, expected)


def test_a_config_file_that_is_not_utf8_is_one_line(voc_root, tmp_path):
    result = start(voc_root, tmp_path, b"lr: 0.001\n# caf\xe9\n")
    assert_one_line_and_nothing_made(result, tmp_path, "my.yaml: not UTF-8 text (byte 0xe9 at offset 15)")


def test_an_alias_bomb_is_refused_before_it_is_expanded(voc_root, tmp_path):
    """9 levels of 9 aliases under scale_range: 139 s and 2.9 GB, then a MemoryError, before."""
    lines = ["a0: &a0 [0.9, 1.1]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    result = start(voc_root, tmp_path, "\n".join([*lines, "scale_range: *a9"]))
    assert_one_line_and_nothing_made(result, tmp_path, f"more than {MAX_ALIASES} YAML aliases")


def test_a_run_config_json_with_nan_or_wrong_types_is_one_line(voc_root, tmp_path):
    result = start(voc_root, tmp_path, '{"train": {"lr": NaN, "epochs": 1}}', name="config.json")
    assert_one_line_and_nothing_made(result, tmp_path, "config.json: NaN is not a number JSON allows")
    bad_types = '{"train": {"batch_size": "x", "augment": [1, 2]}}'
    result = start(voc_root, tmp_path, bad_types, name="config.json")
    assert_one_line_and_nothing_made(result, tmp_path, "config.json")


def test_the_loaders_refuse_duplicates_and_keep_everything_else(tmp_path):
    (tmp_path / "a.json").write_text('{"a": 1, "b": {"c": [1, 2.5, "x", null, true]}}')
    assert load_json(tmp_path / "a.json") == {"a": 1, "b": {"c": [1, 2.5, "x", None, True]}}
    (tmp_path / "b.json").write_text('{"a": 1, "a": 2}')
    with pytest.raises(StructuredFileError, match="key 'a' is given twice"):
        load_json(tmp_path / "b.json")
    (tmp_path / "c.yaml").write_text("base: &b {x: 1}\nuse: *b\n")  # an alias or two is fine
    assert load_yaml(tmp_path / "c.yaml") == {"base": {"x": 1}, "use": {"x": 1}}


# --- the property: whatever a field holds, one line or a valid config, never a traceback -------

FIELDS = [name for name, _ in TrainConfig().items()]
ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=string.printable, max_size=12),
    st.lists(st.one_of(st.integers(-5, 5), st.floats(-3, 3), st.text(max_size=3)), max_size=4),
    st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=5), st.integers(), max_size=3),
)  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.dictionaries(st.sampled_from(FIELDS), ANY_VALUE, min_size=1, max_size=4))
def test_any_config_file_is_a_valid_config_or_one_line(tmp_path, values):
    import json

    from fastseg.errors import FastsegError
    from fastseg.training.recipes import recipe

    nested: dict = {}
    for name, value in values.items():
        if name.startswith("augment."):
            nested.setdefault("augment", {})[name.split(".", 1)[1]] = value
        else:
            nested[name] = value
    path = tmp_path / "generated.json"
    path.write_text(json.dumps(nested, allow_nan=True))
    try:
        overrides = read_config_file(path)
        config = recipe(overrides.pop("recipe", "fast"), **overrides)
    except FastsegError as error:
        assert "\n" not in str(error) and str(error)
        return
    # accepted: then every field really is of its type and in range
    assert all(field_problem(name, value) is None for name, value in config.items())


# --- not a regular file: a FIFO blocked forever (issue #19) ------------------------------------


def test_a_fifo_as_config_or_dataset_yaml_is_one_line_not_a_hang(voc_root, tmp_path, alarm):
    import os

    from fastseg.data.dataset_file import read_dataset_file
    from fastseg.errors import DatasetError

    fifo = tmp_path / "my.yaml"
    os.mkfifo(fifo)
    arguments = ["train", "--config", str(fifo), "--data", str(voc_root), "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(main, [*arguments, "--quiet"])
    assert_one_line_and_nothing_made(result, tmp_path, f"{fifo}: a named pipe (FIFO), not a regular file")
    with pytest.raises(DatasetError, match=r"dataset.yaml: a named pipe \(FIFO\), not a regular file"):
        read_dataset_file(fifo.rename(tmp_path / "dataset.yaml"))
    with pytest.raises(StructuredFileError, match="/dev/zero: a character device, not a regular file"):
        load_yaml("/dev/zero")
    with pytest.raises(StructuredFileError, match="a folder, not a regular file"):
        load_json(tmp_path)


def test_numbers_no_reader_can_hold_are_one_line(tmp_path):
    """Python reads JSON's 1e999 as infinity (past the NaN check) and refuses whole numbers of
    over 4300 digits with a ValueError traceback; YAML's tagged values failed the same way."""
    cases = {"a.json": ('{"lr": 1e999}', "1e999 is too large a number"),
             "b.json": ('{"seed": ' + "9" * 5000 + "}", "a whole number of 5,000 digits is too large"),
             "c.yaml": ("seed: " + "9" * 5000, "a whole number of 5,000 digits is too large"),
             "d.yaml": ("when: !!timestamp 2001-13-99", "not valid YAML (month must be in 1..12)"),
             "e.yaml": ("? !!set {a}\n: 1", "a key must be a name, not set")}  # fmt: skip
    for name, (text, expected) in cases.items():
        (tmp_path / name).write_text(text)
        loader = load_json if name.endswith(".json") else load_yaml
        with pytest.raises(StructuredFileError, match=re.escape(expected)):
            loader(tmp_path / name)
