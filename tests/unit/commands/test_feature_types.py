"""`scorer model publish --feature-types`: a spec or @FILE, every fault a one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.commands.model import feature_kinds_of
from worker.errors import ConfigError


def test_a_spec_and_a_file_give_the_same_kinds(tmp_path: Path) -> None:
    kinds = tmp_path / "kinds.json"
    kinds.write_text('{"I1": "number", "C1": "category"}')
    assert feature_kinds_of(f"@{kinds}") == feature_kinds_of("I1:number,C1:category")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "--feature-types: cannot read .*: No such file or directory"),
        ("{not json", "--feature-types: .* is not JSON"),
        ('["C1"]', "--feature-types: .* must hold a JSON object name: kind"),
        ('{"C1": "text"}', "--feature-types: feature 'C1': unknown kind 'text'"),
    ],
)
def test_each_fault_of_a_kinds_file_is_a_config_error(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "kinds.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=f"^{message}"):
        feature_kinds_of(f"@{path}")
