"""`fastseg import FORMAT SOURCE --out DATASET`: read the export with its format's reader, then
check, draw and write it whole (`fastseg.importing.writer`)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from pathlib import Path

from fastseg.errors import OptionError
from fastseg.importing import FORMATS
from fastseg.importing.source import ReadOptions
from fastseg.importing.writer import ImportOptions, ImportResult, write_dataset


def import_dataset(
    format_name: str,
    source: Path,
    out: Path,
    options: ImportOptions | None = None,
    read_options: ReadOptions | None = None,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> ImportResult:
    """Import the export at `source` into a new data set at `out`; `ImportProblems` lists every
    problem (and nothing is created) when the export cannot be imported as it is."""
    if format_name not in FORMATS:
        raise OptionError(f"unknown format {format_name!r}: choose one of {', '.join(FORMATS)}")
    options = options or ImportOptions()
    read_options = read_options or ReadOptions()
    options.check()
    reader = importlib.import_module(f"fastseg.importing.{FORMATS[format_name]}")
    read = reader.read(Path(source), read_options)
    return write_dataset(read, Path(out), options, format_name, Path(source), progress)
