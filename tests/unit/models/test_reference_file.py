"""Reference files given at publish: CSV columns in the model's order, one-line errors."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from worker.errors import ConfigError
from worker.models.features import CATEGORY, NUMBER
from worker.models.reference_file import read_reference

NUMBERS = (NUMBER, NUMBER)


def test_csv_columns_come_back_in_feature_order(tmp_path: Path) -> None:
    path = tmp_path / "ref.csv"
    path.write_text("id,b,note,a\n1,2.5,hello,-1\n2,1e3,,0.25\n", encoding="utf-8-sig")
    matrix = read_reference(path, ["a", "b"]).matrix(NUMBERS)
    assert matrix.dtype == np.float64
    assert matrix.tolist() == [[-1.0, 2.5], [0.25, 1000.0]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no header row"),
        ("a,c\n1,2\n", "missing feature column\\(s\\) 'b'"),
        ("a,b\n", "no data rows"),
        ("a,b\n1,2\n\n3,x\n", "column 'b', data row 3: 'x' is not a number"),
        ("a,b\n1,2\n\n1,2x\n", "column 'b', data row 3: '2x' is not a number"),
        ("a,b\n1,2\n3,inf\n", "column 'b', data row 2: inf is not finite"),
        ("b,a\nnan,1\n", "column 'b', data row 1: nan is not finite"),
        ("a,b\n1\n", "data row 1 has 1 fields, the header has 2"),
        ("a,b,a\n1,2,3\n", "column 'a' appears twice"),
    ],
)
def test_each_csv_problem_is_a_one_line_config_error(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "ref.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"^reference file {re.escape(str(path))}: {message}$"):
        read_reference(path, ["a", "b"]).matrix(NUMBERS)


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"a\n\xff\xfe\n")
    for path, reason in [(missing, "No such file or directory"), (binary, "not UTF-8 text")]:
        with pytest.raises(ConfigError) as raised:
            read_reference(path, ["a"])
        assert str(raised.value) == f"reference file {path}: cannot read: {reason}"


@pytest.mark.parametrize("suffix", [".parquet", ".PQ"])
def test_parquet_without_pyarrow_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # absent, whatever is installed
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    path = tmp_path / f"ref{suffix}"
    path.write_bytes(b"PAR1")
    with pytest.raises(ConfigError) as raised:
        read_reference(path, ["a"])
    assert str(raised.value) == "reading Parquet needs pyarrow: pip install pyarrow"


def test_empty_cells_are_missing_and_the_columns_say_their_kinds(tmp_path: Path) -> None:
    path = tmp_path / "ref.csv"
    path.write_text("n,c,e,m\n1.5,x,,3\n,y,,\n2,,,1e2\n")
    table = read_reference(path, ["n", "c", "e", "m"])
    assert table.kinds() == {"n": NUMBER, "c": CATEGORY, "m": NUMBER}  # e: nothing to say
    matrix = table.matrix((NUMBER, CATEGORY, CATEGORY, NUMBER))
    assert matrix.tolist() == [
        [1.5, "x", None, 3.0],
        [None, "y", None, None],
        [2.0, None, None, 100.0],
    ]
    numbers = read_reference(path, ["n", "m"]).matrix(NUMBERS)
    assert np.isnan(numbers[1]).all() and numbers[2].tolist() == [2.0, 100.0]
