"""Stage 1's parsing: the LLM's answer -> (question, tests), with a reason for every test
turned away.

The LLM is asked for ``{"question": ..., "tests": [...]}``. Answers come fenced, with prose
around them, or cut off by a token limit; a cut-off answer is repaired by dropping the
unfinished tail and closing what is open. Each test must be ONE ``assert`` statement that
neither imports nor does I/O, and must not repeat an earlier test (same syntax tree).
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field

# Reasons a test is rejected: stable strings, counted in reports and metrics.
NOT_A_STRING = "not_a_string"
EMPTY = "empty"
SYNTAX_ERROR = "syntax_error"
MULTIPLE_STATEMENTS = "multiple_statements"
NOT_AN_ASSERT = "not_an_assert"
IMPORTS = "imports"
DOES_IO = "does_io"
DUPLICATE = "duplicate"
TRUNCATED = "truncated"  # the answer was cut off inside this test

_IO_NAMES = frozenset({
    "open", "print", "input", "exec", "eval", "compile", "__import__", "breakpoint", "exit",
    "quit", "globals", "locals", "vars", "getattr", "setattr", "delattr", "help",
})
_IO_MODULES = frozenset({"os", "sys", "subprocess", "socket", "shutil", "pathlib", "io",
                         "requests", "urllib", "http", "builtins", "importlib", "ctypes"})
_FENCE = re.compile(r"```(?:json|JSON)?\s*\n(.*?)(?:```|\Z)", re.S)


@dataclass(frozen=True)
class Rejected:
    test: str
    reason: str


@dataclass
class Parsed:
    question: str | None
    tests: list[str] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    repaired: bool = False
    """The JSON was cut off and closed by `repair_json`."""
    error: str | None = None
    """Why nothing could be read (no JSON object at all)."""


def _json_text(answer: str) -> str | None:
    fenced = _FENCE.findall(answer)
    for block in fenced:
        if "{" in block:
            return block[block.index("{"):]
    if "{" not in answer:
        return None
    return answer[answer.index("{"):]


def repair_json(text: str) -> str:
    """Close a JSON text cut off mid-way. Tried in order, the first that parses wins: close
    the open string and containers; close the containers; cut back to the end of the last
    complete element (before a comma, after a bracket) and close. Whole text comes back
    unchanged, without anything after the top-level value."""
    stack: list[str] = []
    in_string = escaped = False
    cuts: list[tuple[int, str]] = []  # (cut position, closers needed there)
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]":
            if stack:
                stack.pop()
            if not stack:
                return text[:i + 1]
            cuts.append((i + 1, "".join(reversed(stack))))
        elif ch == ",":
            cuts.append((i, "".join(reversed(stack))))
    closers = "".join(reversed(stack))
    candidates = []
    if in_string:
        candidates.append(text + '"' + closers)
    candidates.append(text.rstrip() + closers)
    candidates += [text[:pos] + close for pos, close in reversed(cuts[-64:])]
    for candidate in candidates:
        try:
            json.loads(candidate, strict=False)
        except json.JSONDecodeError:
            continue
        return candidate
    return text


def check_test(test: object, seen: set[str]) -> str | None:
    """None if `test` is a usable test, else the reason it is not. `seen` collects the
    syntax trees of accepted tests (for duplicates)."""
    if not isinstance(test, str):
        return NOT_A_STRING
    if not test.strip():
        return EMPTY
    try:
        tree = ast.parse(test.strip())
    except SyntaxError:
        return SYNTAX_ERROR
    if len(tree.body) != 1:
        return MULTIPLE_STATEMENTS
    stmt = tree.body[0]
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return IMPORTS
    if not isinstance(stmt, ast.Assert):
        return NOT_AN_ASSERT
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and (node.id in _IO_NAMES or node.id in _IO_MODULES):
            return DOES_IO if node.id not in ("__import__",) else IMPORTS
        if isinstance(node, ast.Attribute) and node.attr.startswith("__"):
            return DOES_IO
    key = ast.dump(stmt, annotate_fields=False)
    if key in seen:
        return DUPLICATE
    seen.add(key)
    return None


def parse_answer(answer: str) -> Parsed:
    """Read the question and the usable tests out of an LLM answer."""
    text = _json_text(answer)
    if text is None:
        return Parsed(None, error="no JSON object in the answer")
    repaired = cut_in_list = False
    try:
        # prose after the object is fine; so are raw newlines inside strings (strict=False)
        data, _ = json.JSONDecoder(strict=False).raw_decode(text)
    except json.JSONDecodeError:
        fixed = repair_json(text)
        try:
            data = json.loads(fixed, strict=False)
        except json.JSONDecodeError as exc:
            return Parsed(None, error=f"unreadable JSON even after repair ({exc.msg})")
        repaired = fixed != text
        # Closed inside a string that sits in a list: the answer stopped inside a test.
        cut_in_list = fixed.startswith(text) and fixed[len(text):].startswith('"]')
    if not isinstance(data, dict):
        return Parsed(None, error="the JSON is not an object")
    question = data.get("question")
    if not isinstance(question, str) or not question.strip():
        question = None
    raw_tests = data.get("tests", [])
    if not isinstance(raw_tests, list):
        raw_tests = [raw_tests]
    out = Parsed(question, repaired=repaired,
                 error=None if question else "no question in the answer")
    seen: set[str] = set()
    if cut_in_list and raw_tests and isinstance(raw_tests[-1], str):
        # The answer stopped inside the last test: whatever it says, it is not what was meant.
        out.rejected.append(Rejected(raw_tests.pop(), TRUNCATED))
    for t in raw_tests:
        reason = check_test(t, seen)
        if reason is None:
            out.tests.append(t.strip())  # type: ignore[union-attr]
        else:
            out.rejected.append(Rejected(t if isinstance(t, str) else json.dumps(t), reason))
    return out
