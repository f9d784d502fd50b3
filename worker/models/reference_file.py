"""The reference rows an operator gives at publish (`--reference`): a CSV file with a header
row, or Parquet with pyarrow installed, read into a matrix in the model's feature order."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from worker.errors import ConfigError

PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})


def read_reference(path: Path, features: Sequence[str]) -> np.ndarray:
    """A CSV (with a header) or Parquet file -> float64 matrix, columns in `features` order.

    Parquet by suffix (.parquet, .pq) and only with pyarrow installed; anything else is CSV.
    Every problem is a ConfigError naming the file, and the column and 1-based data row where
    there is one.
    """
    if path.suffix.lower() in PARQUET_SUFFIXES:
        matrix = _read_parquet(path, features)
        numbers: Sequence[int] = range(1, len(matrix) + 1)
    else:
        numbers, cells = _read_csv(path, features)
        matrix = _csv_matrix(path, features, numbers, cells)
    if len(matrix) == 0:
        raise ConfigError(f"reference file {path}: no data rows")
    _check_finite(path, features, matrix, numbers)
    return matrix


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


def _csv_matrix(
    path: Path, features: Sequence[str], numbers: Sequence[int], cells: list[list[str]]
) -> np.ndarray:
    try:
        return np.array(cells, dtype=np.float64).reshape(len(cells), len(features))
    except ValueError:
        pass
    # The slow path: only to find the cell to name.
    for number, row in zip(numbers, cells, strict=True):
        for name, cell in zip(features, row, strict=True):
            try:
                float(cell)
            except ValueError:
                raise ConfigError(
                    f"reference file {path}: column {name!r}, data row {number}: "
                    f"{cell!r} is not a number"
                ) from None
    raise ConfigError(f"reference file {path}: cannot read the values as numbers")


def _check_finite(
    path: Path, features: Sequence[str], matrix: np.ndarray, numbers: Sequence[int]
) -> None:
    bad = np.argwhere(~np.isfinite(matrix))
    if len(bad):
        row, column = (int(i) for i in bad[0])
        raise ConfigError(
            f"reference file {path}: column {features[column]!r}, data row {numbers[row]}: "
            f"{float(matrix[row, column])} is not finite"
        )


def _read_parquet(path: Path, features: Sequence[str]) -> np.ndarray:
    """Untested here (pyarrow is not a dependency): read the named columns as float64."""
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
        table = pq.read_table(path, columns=list(features))
    except (OSError, ValueError) as exc:  # pyarrow's ArrowIOError, ArrowInvalid
        raise ConfigError(f"reference file {path}: cannot read: {exc}") from None
    return _parquet_matrix(path, features, table)


def _parquet_matrix(path: Path, features: Sequence[str], table: Any) -> np.ndarray:
    matrix = np.empty((table.num_rows, len(features)), dtype=np.float64)
    for index, name in enumerate(features):
        column = table.column(name)
        if column.null_count:
            raise ConfigError(
                f"reference file {path}: column {name!r} has {column.null_count} empty values"
            )
        try:
            matrix[:, index] = column.to_numpy()
        except (TypeError, ValueError):
            kind = table.schema.field(name).type
            raise ConfigError(
                f"reference file {path}: column {name!r} is not numeric ({kind})"
            ) from None
    return matrix
