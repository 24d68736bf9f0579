"""Reading the YAML and JSON files that people and other tools edit: one loader, one set of refusals.

Every such file (`--config`, `dataset.yaml`, a run's JSON files) is read here, so each refusal
holds for all of them, whoever wrote the file, fastseg included:
- only a regular file is read: a FIFO blocked forever waiting for a writer, /dev/zero never ends;
- text that is not UTF-8 is one line naming the file and the byte, not a UnicodeDecodeError;
- a key given twice is refused (YAML and JSON both silently kept the last value);
- NaN and infinities are refused in JSON (Python's parser accepts them, strict JSON does not),
  and so is 1e999, which Python reads as infinity; a number of over `MAX_DIGITS` digits is one
  line (Python's own refusal, past 4300, was a ValueError traceback);
- YAML aliases are limited to `MAX_ALIASES`: a "billion laughs" file of nested aliases costs
  nothing to parse, but expanded by whatever reads it (a JSON dump, a tuple conversion) it ran to
  2.9 GB and a MemoryError.
Errors are `StructuredFileError`, a `FastsegError`: the CLI prints them as one line.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from fastseg.errors import FastsegError, clipped

MAX_ALIASES = 64  # anchors reused by hand stay far below this; an alias bomb needs thousands
MAX_BYTES = 16 * 1024 * 1024  # no config, dataset.yaml or run file comes near this
MAX_DIGITS = 400  # a whole number longer than this is no size, count or seed (2**1024 has 309)


class StructuredFileError(FastsegError):
    """A YAML or JSON file that cannot be read as one: the message names the file and the problem."""


def read_utf8(path: Path | str, what: str = "file", max_bytes: int = MAX_BYTES) -> str:
    """The whole text of `path`, or one line: missing, not a regular file, unreadable, larger than
    `max_bytes` (a labelling tool's export, which `fastseg import` reads, may pass 16 MB), or not UTF-8.

    A FIFO (or `/dev/stdin`, a terminal) named as `--config` or `dataset.yaml` blocked forever in
    `open()` waiting for a writer; a device such as `/dev/zero` never ends. The file is opened
    without blocking and refused unless it is a regular file, checked on the open descriptor so
    a swap between a check and the open cannot slip one through."""
    path = Path(path)
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        raise StructuredFileError(f"{path}: cannot read the {what} ({error.strerror or error})") from None
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            kind = file_kind(status.st_mode)
            raise StructuredFileError(f"{path}: {kind}, not a regular file; a {what} must be a file on disk")
        if status.st_size > max_bytes:
            raise StructuredFileError(f"{path}: {status.st_size:,} bytes, too large for a {what}")
        with os.fdopen(descriptor, "rb", closefd=False) as file:
            data = file.read(max_bytes + 1)
    except OSError as error:
        raise StructuredFileError(f"{path}: cannot read the {what} ({error.strerror or error})") from None
    finally:
        os.close(descriptor)
    if len(data) > max_bytes:  # it grew while being read
        raise StructuredFileError(f"{path}: over {max_bytes:,} bytes, too large for a {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        byte = data[error.start]
        raise StructuredFileError(
            f"{path}: not UTF-8 text (byte 0x{byte:02x} at offset {error.start}); save the {what} as UTF-8"
        ) from None


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is, for the message (a model path's too)."""
    kinds = [(stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")]  # fmt: skip
    return next((name for test, name in kinds if test(mode)), "not a file")


def load_json(path: Path | str, what: str = "JSON file", max_bytes: int = MAX_BYTES) -> Any:
    """Strict JSON: no NaN or infinity, no repeated key."""
    path = Path(path)
    return parse_json(read_utf8(path, what, max_bytes), path, what)


def parse_json(text: str, source: Path | str, what: str = "JSON text") -> Any:
    """`text` as strict JSON (no NaN or infinity, no repeated key, not nested beyond Python's
    recursion limit); `source` names where it came from in the one-line error: a file, or an
    exported model's metadata, which is JSON inside a file."""

    def no_constant(name: str) -> Any:
        raise StructuredFileError(f"{source}: {name} is not a number JSON allows")

    def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        return _unique(source, pairs)

    def finite_float(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):  # 1e999 is inf to Python, a number too large to any reader
            raise StructuredFileError(f"{source}: {clipped(literal, 20)} is too large a number")
        return value

    def bounded_int(literal: str) -> int:
        if len(literal) > MAX_DIGITS:  # Python refuses over 4300 digits with a ValueError
            raise StructuredFileError(f"{source}: a whole number of {len(literal):,} digits is too large")
        return int(literal)

    try:
        return json.loads(text, parse_constant=no_constant, object_pairs_hook=unique_keys,
                          parse_float=finite_float, parse_int=bounded_int)  # fmt: skip
    except json.JSONDecodeError as error:
        raise StructuredFileError(f"{source}: not valid JSON ({error.msg} at line {error.lineno})") from None
    except RecursionError:
        raise StructuredFileError(f"{source}: nested too deeply to be a {what}") from None


def load_yaml(path: Path | str, what: str = "YAML file") -> Any:
    """`yaml.safe_load` with no repeated key and at most `MAX_ALIASES` aliases."""
    import yaml  # comes with fastai; imported here so `--help` does not pay for it

    path = Path(path)
    text = read_utf8(path, what)

    class Loader(yaml.SafeLoader):
        aliases = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                Loader.aliases += 1
                if Loader.aliases > MAX_ALIASES:
                    raise StructuredFileError(
                        f"{path}: more than {MAX_ALIASES} YAML aliases (*name); write the values out"
                    )
            return super().compose_node(parent, index)

        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            keys = [self.construct_object(key, deep=True) for key, _ in node.value]
            seen: set[Any] = set()
            for key in keys:
                if isinstance(key, (list, dict, set)):  # a YAML `? [1, 2]` or `? !!set {a}` key
                    raise StructuredFileError(f"{path}: a key must be a name, not {type(key).__name__}")
                if key in seen:
                    raise StructuredFileError(f"{path}: key {key!r} is given twice")
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

        def construct_bounded_int(self, node: Any) -> int:
            if len(str(node.value)) > MAX_DIGITS:  # Python refuses over 4300 digits with a ValueError
                raise StructuredFileError(f"{path}: a whole number of {len(str(node.value)):,} digits "
                                          "is too large")  # fmt: skip
            return super().construct_yaml_int(node)

    Loader.add_constructor("tag:yaml.org,2002:int", Loader.construct_bounded_int)

    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise StructuredFileError(f"{path}: not valid YAML{where} ({problem})") from None
    except (ValueError, TypeError, OverflowError) as error:  # a tagged value it cannot build: 2001-13-99
        reason = clipped((str(error).splitlines() or [type(error).__name__])[0], 80)
        raise StructuredFileError(f"{path}: not valid YAML ({reason})") from None
    except RecursionError:
        raise StructuredFileError(f"{path}: nested too deeply to be a {what}") from None


def load_structured(path: Path | str, what: str = "file") -> Any:
    """JSON for `.json` files, YAML (a superset of JSON) for anything else."""
    return load_json(path, what) if Path(path).suffix.lower() == ".json" else load_yaml(path, what)


def _unique(path: Path | str, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in pairs:
        if key in values:
            raise StructuredFileError(f"{path}: key {key!r} is given twice")
        values[key] = value
    return values


def finite_number(value: Any) -> bool:
    """A real number (not a bool), neither NaN nor infinite (nor a whole number past float's range,
    which `math.isfinite` raises OverflowError on: JSON takes up to `MAX_DIGITS` digits)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
