"""Call tests (fn_name) before they run: the ground-truth formats, the JSON they travel as, the
test statements `validate` makes of them, and the comparison rule the test process applies."""

from __future__ import annotations

import collections
import json
from typing import Any

import pytest

from acecoder.clients.rewards import parse_tests as parse_label
from acecoder.errors import InvalidArgument
from acecoder.executor.config import ExecutorConfig
from acecoder.executor.convert import split_tests
from acecoder.executor.sandbox.harness import CALL, CallCheck, call_matches
from acecoder.executor.sandbox.literal import plain_suite
from acecoder.executor.service import call_statements, validate
from acecoder.executor.types import (
    CallTest,
    CallTests,
    StdioTest,
    call_json,
    parse_ground_truth,
    parse_tests,
)

CFG = ExecutorConfig(workers=1, max_tests=3, max_test_bytes=6000)
P = collections.namedtuple("P", "x y")


@pytest.mark.parametrize(("got", "expected", "match"), [
    (3, 3, True),
    ((0, 1), [0, 1], True),                     # tuples are lists
    ([(0, 1), (2, 3)], [[0, 1], [2, 3]], True),  # recursively
    ({"a": (1, (2,))}, {"a": [1, [2]]}, True),  # through dict values
    (P(1, 2), [1, 2], True),                    # a namedtuple is a tuple
    (collections.OrderedDict(a=[1]), {"a": [1]}, True),
    (5, [5], True),                             # a one-element expected list
    ((1, 2), [[1, 2]], True),
    (5, [5, 6], False),                         # APPS would take expected[0]; not here
    ([5], 5, False),
    ([5], [[5]], True),
    (1.0, 1, True),                             # Python's equality of numbers
    ({1, 2}, [1, 2], False),                    # a set is not a list
    (collections.deque([1]), [1], False),
    ({1: "a"}, {"1": "a"}, False),              # JSON's keys are strings
    (None, None, True),
    (float("nan"), float("nan"), False),
])
def test_the_comparison_rule(got: Any, expected: Any, match: bool) -> None:
    assert call_matches(got, expected) is match


def test_a_result_too_deep_to_compare_matches_nothing() -> None:
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    assert call_matches(deep, [1]) is False


def test_the_helper_refuses_what_no_call_test_sends() -> None:
    check = CallCheck(None)  # type: ignore[arg-type]  # refused before the program is asked
    for fn_name, args in (("__class__", []), ("f()", []), (3, []), ("f", (1,)), ("f", "x")):
        with pytest.raises(TypeError, match="fn_name must be a name"):
            check(fn_name, args, 1)


def test_call_tests_are_plain_checks_for_the_judge() -> None:
    tests = call_statements(CFG, "f", [("[1, [2, -3.5], {\"a\": null}]", "[true, \"x\"]")])
    assert tests == [f"assert {CALL}('f', [1, [2, -3.5], {{'a': None}}], [True, 'x'])"]
    assert plain_suite(tests, "") == {CALL}
    assert plain_suite(["assert __other__('f', [1], 1)"], "") is None  # only that dunder name
    assert plain_suite([f"{CALL} = 1\nassert f(1) == 1", f"assert {CALL}('f', [], 1)"],
                       "") is None  # a name a test binds is never read as the helper


def test_validate_makes_assert_requests_of_call_tests() -> None:
    r = validate(CFG, program="def f(a):\n    return a\n", tests=[], fn_name="f",
                 calls=[(b"[\"\\u00e9\\ud800\"]", "1e2"), ("[[]]", "{}")])
    assert r.kind == "assert" and len(r.tests) == 2
    assert r.tests[0] == f"assert {CALL}('f', ['\u00e9\\ud800'], 100.0)"
    assert r.tests[1] == f"assert {CALL}('f', [[]], {{}})"


@pytest.mark.parametrize(("fields", "message"), [
    ({"fn_name": "f", "calls": []}, "fn_name 'f' is set but call_tests is empty"),
    ({"calls": [("[]", "1")]}, "call tests need fn_name"),
    ({"fn_name": "if", "calls": [("[]", "1")]}, "fn_name must be a Python function name"),
    ({"fn_name": "__eq__", "calls": [("[]", "1")]}, "not starting with '__'"),
    ({"fn_name": "f" * 257, "calls": [("[]", "1")]}, "fn_name must be a Python function name"),
    ({"fn_name": "f", "calls": [("[]", "1")] * 4}, "4 tests sent; the limit is 3 (max_tests)"),
    ({"fn_name": "f", "calls": [("{}", "1")]}, "must be a JSON array of the call's arguments"),
    ({"fn_name": "f", "calls": [("[1]", "-Infinity")]}, "output is not JSON (-Infinity"),
    ({"fn_name": "f", "calls": [("[1]", "[1e400]")]}, "output holds a number out of a double"),
    ({"fn_name": "f", "calls": [("[" + "9" * 5000 + "]", "1")]}, "input is not JSON"),
    ({"fn_name": "f", "calls": [("[" * 101 + "]" * 101, "1")]}, "nested more than 100 levels"),
    ({"fn_name": "f", "calls": [("[" * 4000 + "]" * 4000, "1")]}, "input is 8000 bytes"),
    ({"fn_name": "f", "calls": [("[" + "1," * 1500 + "1]", "[" + "1," * 1400 + "1]")]},
     "bytes as a test (its input and output together); the limit is 6000"),
    ({"fn_name": "f", "calls": [("[]", "1")], "tests": ["assert 1"]}, "not two kinds"),
    ({"fn_name": "f", "calls": [("[]", "1")], "stdio": [("", "")]}, "not two kinds"),
    ({"fn_name": "f", "calls": [("[]", "1")], "language": "java"}, "call tests are Python's"),
])
def test_bad_call_tests_are_refused(fields: dict[str, Any], message: str) -> None:
    request: dict[str, Any] = {"program": "x", "tests": [], **fields}
    with pytest.raises(InvalidArgument) as err:
        validate(CFG, **request)
    assert message in str(err.value)


def test_json_deeper_than_python_parses_is_refused() -> None:
    roomy = ExecutorConfig(workers=1, max_test_bytes=1 << 20)
    with pytest.raises(InvalidArgument, match="input is nested too deeply"):
        call_statements(roomy, "f", [("[" * 100_000 + "]" * 100_000, "1")])


@pytest.mark.parametrize(("value", "fn_name", "expected"), [
    ({"inputs": [[1, 2], [3]], "outputs": [[3], 3], "fn_name": "f"}, "",
     CallTests("f", (CallTest([1, 2], [3]), CallTest([3], 3)))),
    (json.dumps({"inputs": [[1]], "outputs": [2], "fn_name": "f"}), "f",
     CallTests("f", (CallTest([1], 2),))),
    ({"inputs": [[1]], "outputs": [2], "fn_name": ""}, "g", CallTests("g", (CallTest([1], 2),))),
    ([{"input": [[1, 2]], "output": True}, CallTest([], None)], "f",
     CallTests("f", (CallTest([[1, 2]], True), CallTest([], None)))),
    ({"inputs": ["1\n"], "outputs": ["2\n"]}, "", [StdioTest("1\n", "2\n")]),
    (["assert f(1) == 2"], "", ["assert f(1) == 2"]),
])
def test_ground_truth_formats(value: Any, fn_name: str, expected: Any) -> None:
    assert parse_ground_truth(value, fn_name) == expected


@pytest.mark.parametrize(("value", "fn_name", "message"), [
    ([{"input": "1", "output": 2}], "f", "tests[0] must be a call test"),
    ([{"input": [1]}], "f", "tests[0] must be a call test"),
    (["assert f(1) == 2"], "f", "tests[0] must be a call test"),
    ({"inputs": [[1]], "outputs": [1], "fn_name": "g"}, "f", "names 'g' but fn_name is 'f'"),
    ({"inputs": [[1]], "outputs": [1], "fn_name": 3}, "", "fn_name must be a string, got int"),
    ([], 3, "fn_name must be a string, got int"),
    ([{"input": [1], "output": 1}], "", "(call tests need \"fn_name\")"),
])
def test_ground_truth_refused(value: Any, fn_name: Any, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_ground_truth(value, fn_name)
    assert message in str(err.value)


def test_parse_tests_takes_no_call_tests() -> None:
    """For callers that run statements and stdio tests only (SandboxFusion's /run_tests)."""
    with pytest.raises(ValueError, match="call tests \\(fn_name\\) are not accepted here"):
        parse_tests({"inputs": [[1]], "outputs": [1], "fn_name": "f"})


@pytest.mark.parametrize(("value", "message"), [
    ([float("nan")], "Out of range float values"),
    ({1, 2}, "Object of type set"),
    ([{1: 2}], "a dict key is not a string"),
])
def test_call_json_refuses_what_json_would_change(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match="is not JSON data") as err:
        call_json(value, "the input")
    assert message in str(err.value)
    assert call_json([(1, 2), {"a": None}], "x") == '[[1, 2], {"a": null}]'


def test_split_tests_for_the_clients() -> None:
    assert split_tests([CallTest([1, 2], 3), {"input": (4,), "output": [5]}], "f") == (
        [], [], [("[1, 2]", "3"), ("[4]", "[5]")], "f")
    assert split_tests(CallTests("g", (CallTest([], 1),))) == ([], [], [("[]", "1")], "g")
    assert split_tests([{"input": "1", "output": "2"}]) == ([], [("1", "2")], [], "")
    for tests, fn_name, message in [
        (CallTests("g", ()), "f", "the tests call 'g' but fn_name is 'f'"),
        ([{"input": [1]}], "f", "a call test needs 'input' and 'output'"),
        ([{"input": 1, "output": 1}], "f", "'input' must be the list of the call's arguments"),
        ([CallTest([1], 1), "assert f(1) == 1"], "f", "all statements or all stdio tests \\(or"),
        ([CallTest([1], 1)], "", "call tests need fn_name"),
        (["assert f(1) == 1"], "f", "fn_name 'f' is set, but the tests are not call tests"),
        ([CallTest([{1}], 1)], "f", "call test 0's input is not JSON data"),
    ]:
        with pytest.raises(ValueError, match=message):
            split_tests(tests, fn_name)  # type: ignore[arg-type]


@pytest.mark.parametrize(("label", "expected"), [
    (["assert f(1) == 2"], (("assert f(1) == 2",), "", "")),
    ({"inputs": [[1]], "outputs": [2], "fn_name": "f"}, ((CallTest([1], 2),), "", "f")),
    (json.dumps({"inputs": [[1]], "outputs": [2], "fn_name": "f"}),
     ((CallTest([1], 2),), "", "f")),
    ({"tests": [{"input": [1], "output": 2}], "fn_name": "f", "setup": "import math"},
     ((CallTest([1], 2),), "import math", "f")),
    ({"test_cases": json.dumps({"inputs": [[1]], "outputs": [2]}), "fn_name": "f"},
     ((CallTest([1], 2),), "", "f")),
    ({"inputs": ["1"], "outputs": ["2"]}, ((StdioTest("1", "2"),), "", "")),
])
def test_reward_labels_carry_call_tests(label: Any, expected: Any) -> None:
    assert parse_label(label) == expected


def test_reward_labels_refused() -> None:
    with pytest.raises(ValueError, match="tests with \"fn_name\" must be call tests"):
        parse_label({"tests": ["assert f(1) == 2"], "fn_name": "f"})
    with pytest.raises(ValueError, match="tests must be a list of strings"):
        parse_label(None)
