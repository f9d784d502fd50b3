"""The reference rows an operator gives at publish (`--reference`): a CSV file with a header
row, or Parquet with pyarrow installed, read as a table of the model's feature columns; the
kinds its columns show, and its rows as a worker decodes them (features.rows_matrix).

An empty CSV cell (a null in Parquet) is a missing value, as pandas reads one.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from worker.errors import ConfigError
from worker.models.features import CATEGORY, NUMBER, FeatureKind, FeatureSchema, rows_matrix

PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})


@dataclass(frozen=True)
class ReferenceTable:
    """Each feature's values, None where missing: CSV text, or Parquet's own values."""

    path: Path
    features: tuple[str, ...]
    numbers: Sequence[int]  # each row's 1-based data row number in the file
    columns: tuple[list[object], ...]

    def kinds(self) -> dict[str, FeatureKind]:
        """A column whose values are all numbers (or text that reads as one) is a number, any
        other a category; a column with no value at all says nothing."""
        kinds: dict[str, FeatureKind] = {}
        for name, column in zip(self.features, self.columns, strict=True):
            present = [value for value in column if value is not None]
            if present:
                kinds[name] = NUMBER if all(map(_reads_as_number, present)) else CATEGORY
        return kinds

    def matrix(self, kinds: Sequence[FeatureKind]) -> np.ndarray:
        """The rows as a worker decodes them: float64 (NaN where missing) for numbers only,
        else an object matrix with the category texts and None where missing. A number
        column's value that is not a finite number is a ConfigError naming it."""
        schema = FeatureSchema(self.features, tuple(kinds), accepts_missing=True)
        columns = [
            column if kind == CATEGORY else self._numbers(name, column)
            for name, kind, column in zip(self.features, kinds, self.columns, strict=True)
        ]
        return rows_matrix(schema, list(zip(*columns, strict=True)))

    def _numbers(self, name: str, column: list[object]) -> list[object]:
        values: list[object] = []
        for number, value in zip(self.numbers, column, strict=True):
            try:
                parsed = None if value is None else float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise self._error(name, number, f"{value!r} is not a number") from None
            if parsed is not None and not math.isfinite(parsed):
                raise self._error(name, number, f"{parsed} is not finite")
            values.append(parsed)
        return values

    def _error(self, name: str, number: int, what: str) -> ConfigError:
        return ConfigError(
            f"reference file {self.path}: column {name!r}, data row {number}: {what}"
        )


def _reads_as_number(value: object) -> bool:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return True
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def read_reference(path: Path, features: Sequence[str]) -> ReferenceTable:
    """A CSV (with a header) or Parquet file -> the table of `features`' columns.

    Parquet by suffix (.parquet, .pq) and only with pyarrow installed; anything else is CSV.
    Every problem is a ConfigError naming the file, and the column and 1-based data row where
    there is one.
    """
    if path.suffix.lower() in PARQUET_SUFFIXES:
        columns = _read_parquet(path, features)
        numbers: Sequence[int] = range(1, len(columns[0]) + 1 if columns else 1)
    else:
        numbers, cells = _read_csv(path, features)
        columns = tuple(
            [cell if cell != "" else None for cell in column]
            for column in (zip(*cells, strict=True) if cells else [()] * len(features))
        )
    if not numbers:
        raise ConfigError(f"reference file {path}: no data rows")
    return ReferenceTable(path, tuple(features), numbers, columns)


def _read_csv(path: Path, features: Sequence[str]) -> tuple[list[int], list[list[str]]]:
    """Data row numbers (1-based, blank lines skipped but counted) and their cells."""
    numbers: list[int] = []
    cells: list[list[str]] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header:
                raise ConfigError(f"reference file {path}: no header row")
            columns = _feature_columns(path, header, features)
            for number, row in enumerate(reader, start=1):
                if row:
                    cells.append(_pick(path, number, row, columns, len(header)))
                    numbers.append(number)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"reference file {path}: cannot read: {_reason(exc)}") from None
    return numbers, cells


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return str(exc)


def _feature_columns(path: Path, header: list[str], features: Sequence[str]) -> list[int]:
    missing = [name for name in features if name not in header]
    if missing:
        names = ", ".join(repr(name) for name in missing)
        raise ConfigError(f"reference file {path}: missing feature column(s) {names}")
    repeated = [name for name in features if header.count(name) > 1]
    if repeated:
        raise ConfigError(f"reference file {path}: column {repeated[0]!r} appears twice")
    return [header.index(name) for name in features]


def _pick(path: Path, number: int, row: list[str], columns: list[int], width: int) -> list[str]:
    try:
        return [row[column] for column in columns]
    except IndexError:
        raise ConfigError(
            f"reference file {path}: data row {number} has {len(row)} fields, "
            f"the header has {width}"
        ) from None


def _read_parquet(path: Path, features: Sequence[str]) -> tuple[list[object], ...]:
    """Untested here (pyarrow is not a dependency): the named columns' values, None where
    null."""
    try:
        import pyarrow.parquet as pq  # type: ignore[import-not-found]  # optional, untyped
    except ImportError:
        raise ConfigError("reading Parquet needs pyarrow: pip install pyarrow") from None
    try:
        names = pq.read_schema(path).names
        missing = [name for name in features if name not in names]
        if missing:
            listed = ", ".join(repr(name) for name in missing)
            raise ConfigError(f"reference file {path}: missing feature column(s) {listed}")
        table: Any = pq.read_table(path, columns=list(features))
    except (OSError, ValueError) as exc:  # pyarrow's ArrowIOError, ArrowInvalid
        raise ConfigError(f"reference file {path}: cannot read: {exc}") from None
    return tuple(table.column(name).to_pylist() for name in features)
