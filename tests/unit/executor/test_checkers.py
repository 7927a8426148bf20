"""The stdio checkers: pure functions of (expected, output), linear in their inputs."""

from __future__ import annotations

import pytest

from acecoder.executor.sandbox.checkers import Checker, parse


@pytest.mark.parametrize(("spec", "want", "got", "ok"), [
    ("tokens", "1 2\n3\n", "1\t2 3", True),
    ("tokens", "1 2\n3\n", "1 2", False),
    ("tokens", "", "\n\n", True),
    ("exact", "a\n", "a\n", True),
    ("exact", "a\n", "a", False),
    ("lines", "a b\nc\n", "a b  \nc\n\n\n", True),
    ("lines", "a b\nc\n", "a  b\nc\n", False),
    ("lines", "a\n\nb\n", "a\nb\n", False),  # an empty line inside counts
    ("float:1e-6", "0.5 x", "0.5000004 x", True),
    ("float:1e-6", "1000000", "1000000.5", True),  # relative: 5e-7
    ("float:1e-6", "0.5 x", "0.5 y", False),  # words still match exactly
    ("float:1e-6", "1", "nan", False),
    ("float:1e-6", "1", "inf", False),
    ("float_abs:1e-3", "1000", "1000.5", False),
    ("float_rel:1e-3", "1000", "1000.5", True),
    ("float_rel:1e-3", "0", "0.0001", False),
    ("float_abs:1e-3", "0", "0.0001", True),
])
def test_checkers_compare_as_judges_do(spec: str, want: str, got: str, ok: bool) -> None:
    assert parse(spec)(want, got) is ok


@pytest.mark.parametrize(("spec", "message"), [
    ("fuzzy", "unknown checker"),
    ("tokens:1", "takes no tolerance"),
    ("float:abc", "tolerance"),
    ("float:-1", "tolerance"),
    ("float:nan", "tolerance"),
])
def test_bad_specs_say_what_is_accepted(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(spec)


def test_spec_round_trips_and_defaults() -> None:
    assert parse("float").spec == "float:1e-06"
    assert parse(parse("float_rel:0.001").spec) == Checker("float_rel", 0.001)
    assert parse(" tokens ").spec == "tokens"


def test_a_hostile_output_costs_linear_time() -> None:
    """A megabyte of digits in one token is not a number to parse for long."""
    huge = "9" * (1 << 20)
    assert parse("float:1e-6")("1", huge) is False
    assert parse("tokens")("1 " * 100_000, "1 " * 100_000) is True
