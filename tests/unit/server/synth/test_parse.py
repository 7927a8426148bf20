"""Stage 1 parsing: fenced, truncated and malformed answers, and every rejection reason."""

from __future__ import annotations

import json

import pytest

from acecoder.server.synth import parse
from acecoder.server.synth.parse import parse_answer, repair_json

GOOD = {"question": "Write f(x) returning x + 1.",
        "tests": ["assert f(1) == 2", "assert f(-1) == 0"]}


@pytest.mark.parametrize("answer", [
    pytest.param(json.dumps(GOOD), id="bare"),
    pytest.param("```json\n" + json.dumps(GOOD) + "\n```", id="fenced"),
    pytest.param("Here you go:\n```\n" + json.dumps(GOOD, indent=2) + "\n```\nEnjoy!", id="prose"),
    pytest.param("Sure. " + json.dumps(GOOD) + " Anything else?", id="inline"),
])
def test_whole_answers(answer: str) -> None:
    p = parse_answer(answer)
    assert (p.question, p.tests, p.rejected, p.repaired, p.error) == (
        GOOD["question"], GOOD["tests"], [], False, None)


def test_raw_newlines_inside_strings_are_read() -> None:
    # small models write line breaks into JSON strings as they are
    p = parse_answer('{"question": "Write f(x).\nReturn x + 1.", "tests": ["assert f(1) == 2"]}')
    assert p.question == "Write f(x).\nReturn x + 1." and p.tests == ["assert f(1) == 2"]
    assert p.error is None


@pytest.mark.parametrize(("cut", "tests", "rejected"), [
    pytest.param('"tests": ["assert f(1) == 2", "assert f(-1', ["assert f(1) == 2"],
                 [parse.TRUNCATED], id="inside-a-test"),
    pytest.param('"tests": ["assert f(1) == 2", "assert g', ["assert f(1) == 2"],
                 [parse.TRUNCATED], id="inside-a-test-still-valid-python"),
    pytest.param('"tests": ["assert f(1) == 2", ', ["assert f(1) == 2"], [], id="after-comma"),
    pytest.param('"tests": ["assert f(1) == 2"], "notes": "x', ["assert f(1) == 2"], [],
                 id="inside-a-later-field"),
    pytest.param('"tests": ["assert f(1) == 2"], "no', ["assert f(1) == 2"], [],
                 id="inside-a-key"),
    pytest.param('"tests": [', [], [], id="empty-list"),
])
def test_truncated_answers_are_repaired(cut: str, tests: list[str], rejected: list[str]) -> None:
    answer = '{"question": "Q?", ' + cut
    p = parse_answer(answer)
    assert p.repaired and p.question == "Q?" and p.tests == tests
    assert [r.reason for r in p.rejected] == rejected


def test_a_question_cut_off_is_kept_as_far_as_it_goes() -> None:
    p = parse_answer('{"question": "Write f(x) that ret')
    assert p.question == "Write f(x) that ret" and p.repaired and p.tests == []


@pytest.mark.parametrize(("test", "reason"), [
    pytest.param(5, parse.NOT_A_STRING, id="number"),
    pytest.param("   ", parse.EMPTY, id="blank"),
    pytest.param("assert f(1 == 2", parse.SYNTAX_ERROR, id="syntax"),
    pytest.param("assert f(1) == 2; assert f(2) == 3", parse.MULTIPLE_STATEMENTS, id="two"),
    pytest.param("f(1) == 2", parse.NOT_AN_ASSERT, id="expression"),
    pytest.param("import os", parse.IMPORTS, id="import"),
    pytest.param("assert __import__('os').getcwd()", parse.IMPORTS, id="dunder-import"),
    pytest.param("assert open('/etc/passwd').read()", parse.DOES_IO, id="open"),
    pytest.param("assert print(1) is None", parse.DOES_IO, id="print"),
    pytest.param("assert os.path.exists('x')", parse.DOES_IO, id="os"),
    pytest.param("assert f.__globals__", parse.DOES_IO, id="dunder-attr"),
])
def test_each_rejection_reason(test: object, reason: str) -> None:
    p = parse_answer(json.dumps({"question": "Q", "tests": ["assert f(0) == 1", test]}))
    assert p.tests == ["assert f(0) == 1"]
    assert [r.reason for r in p.rejected] == [reason]


def test_duplicates_are_the_same_syntax_tree() -> None:
    p = parse_answer(json.dumps({"question": "Q", "tests": [
        "assert f(1) == 2", "assert f(1)==2", "assert (f(1) == 2)", "assert f(1) == 3"]}))
    assert p.tests == ["assert f(1) == 2", "assert f(1) == 3"]
    assert [r.reason for r in p.rejected] == [parse.DUPLICATE, parse.DUPLICATE]


@pytest.mark.parametrize(("answer", "error"), [
    pytest.param("I cannot help with that.", "no JSON object", id="no-json"),
    pytest.param('{"tests": ["assert True"]}', "no question", id="no-question"),
    pytest.param('{"question": }}}', "unreadable JSON", id="garbage"),
    pytest.param("[1, 2]", "no JSON object", id="array"),
])
def test_unusable_answers_say_why(answer: str, error: str) -> None:
    p = parse_answer(answer)
    assert p.error is not None and error in p.error


def test_repair_leaves_whole_json_alone() -> None:
    text = json.dumps(GOOD)
    assert repair_json(text) == text
    assert repair_json(text + " trailing words") == text
