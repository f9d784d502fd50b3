"""The command line speaks to users: every command says what it does for an operator, with
an example, and no developer note leaks into the help."""

from __future__ import annotations

import argparse

import pytest

from worker.cli import build_parser


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


TOP = commands(build_parser())


@pytest.mark.parametrize("name", sorted(TOP))
def test_every_command_describes_itself_with_an_example(name: str) -> None:
    parser = TOP[name]
    assert parser.description and len(parser.description) > 60, name
    assert parser.epilog and parser.epilog.startswith("example"), name


def test_the_top_level_help_is_for_operators_not_developers() -> None:
    text = build_parser().format_help()
    assert "composition root" not in text
    assert "Score ad-click feature events" in text


def test_examples_keep_their_lines_and_descriptions_wrap() -> None:
    text = TOP["bench"].format_help()
    assert "\n  scorer bench --rounds 5\n" in text
    assert max(len(line) for line in text.split("examples:")[0].splitlines()) <= 100
