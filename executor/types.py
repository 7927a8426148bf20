"""The executor's own records: requests, verdicts and results (no grpc, no proto)."""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


class Verdict(str, enum.Enum):
    PASSED = "PASSED"
    FAILED = "FAILED"
    ERROR = "ERROR"
    TIMEOUT = "TIMEOUT"
    MEMORY = "MEMORY"
    CRASHED = "CRASHED"
    SKIPPED = "SKIPPED"


class ProgramStatus(str, enum.Enum):
    OK = "OK"
    SYNTAX_ERROR = "SYNTAX_ERROR"
    LOAD_ERROR = "LOAD_ERROR"
    EXITED_EARLY = "EXITED_EARLY"
    LOAD_TIMEOUT = "LOAD_TIMEOUT"
    LOAD_MEMORY = "LOAD_MEMORY"
    LOAD_CRASHED = "LOAD_CRASHED"
    SETUP_ERROR = "SETUP_ERROR"
    COMPILE_ERROR = "COMPILE_ERROR"


class Flag(str, enum.Enum):
    """Attempts to game the tests, seen and defeated (a flag never changes a verdict)."""
    EXITED_EARLY = "EXITED_EARLY"
    FORGED_OUTPUT = "FORGED_OUTPUT"
    OVERRIDDEN_EQUALITY = "OVERRIDDEN_EQUALITY"


@dataclass(frozen=True)
class StdioTest:
    """A stdin/stdout test: the program runs whole on `input`; its stdout must match `output`
    (as the request's checker compares them)."""

    input: str
    output: str


@dataclass(frozen=True)
class CallTest:
    """A call test: the program's function called with `input` (its positional arguments, JSON
    data) must return `output` (JSON data), compared as plain data (the rule:
    executor.sandbox.harness.call_matches)."""

    input: Sequence[Any]
    output: Any


@dataclass(frozen=True)
class CallTests:
    """Call tests of one function: `fn_name`, a function of the program or a method of its
    class `Solution` (LeetCode-style data)."""

    fn_name: str
    tests: tuple[CallTest, ...]


def call_json(value: Any, what: str) -> str:
    """A call test's arguments or output as JSON text (a tuple becomes an array); ValueError if
    it is not JSON data: NaN, a set, a cycle, or a dict key that is not a string (json.dumps
    would turn that key into a string silently)."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{what} is not JSON data ({exc})") from None
    todo = [value]  # no cycle: json.dumps refuses them
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            if not all(isinstance(k, str) for k in item):
                raise ValueError(f"{what} is not JSON data (a dict key is not a string)")
            todo.extend(item.values())
        elif isinstance(item, (list, tuple)):
            todo.extend(item)
    return text


Tests = list[str] | list[StdioTest] | CallTests
"""Tests of one kind: test statements, stdio tests, or call tests."""


def parse_ground_truth(value: Any, fn_name: str = "") -> Tests:
    """Tests in the formats people have: a list of test statements; a list of
    {"input": str, "output": str} stdio tests; ground truth as verl, SandboxFusion and DeepCoder
    data carry it, {"inputs": [...], "outputs": [...]}, as an object or a JSON string; and call
    tests, when a function is named (`fn_name`, or the ground truth's own "fn_name", as APPS
    and TACO have it): each input is then the list of the call's arguments, as
    {"inputs": [[...], ...], "outputs": [...], "fn_name": "f"} or [{"input": [...],
    "output": value}, ...]. ValueError says what is wrong."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError("tests given as a string must be JSON ({\"inputs\": [...], "
                             "\"outputs\": [...]})") from None
    if not isinstance(fn_name, str):
        raise ValueError(f"fn_name must be a string, got {type(fn_name).__name__}")
    if isinstance(value, dict):
        own = value.get("fn_name") or ""
        if not isinstance(own, str):
            raise ValueError(f"fn_name must be a string, got {type(own).__name__}")
        if own and fn_name and own != fn_name:
            raise ValueError(f"the ground truth names {own!r} but fn_name is {fn_name!r}")
        fn_name = fn_name or own
        inputs, outputs = value.get("inputs"), value.get("outputs")
        if not (isinstance(inputs, list) and isinstance(outputs, list)):
            raise ValueError("ground truth needs \"inputs\" and \"outputs\" lists")
        if len(inputs) != len(outputs):
            raise ValueError(f"{len(inputs)} inputs but {len(outputs)} outputs")
        value = [{"input": i, "output": o} for i, o in zip(inputs, outputs)]
    if not isinstance(value, list):
        raise ValueError("tests must be a list")
    if fn_name:
        calls = []
        for i, t in enumerate(value):
            if isinstance(t, CallTest):
                calls.append(t)
            elif isinstance(t, dict) and isinstance(t.get("input"), list) and "output" in t:
                calls.append(CallTest(t["input"], t["output"]))
            else:
                raise ValueError(f"tests[{i}] must be a call test {{\"input\": [arguments...], "
                                 "\"output\": value} (the input is the list of the call's "
                                 "arguments)")
        return CallTests(fn_name, tuple(calls))
    if all(isinstance(t, str) for t in value):
        return list(value)
    stdio = []
    for i, t in enumerate(value):
        if not (isinstance(t, dict) and isinstance(t.get("input"), str)
                and isinstance(t.get("output"), str)):
            raise ValueError(f"tests[{i}] must be a statement (a string) or a stdio test "
                             "{\"input\": str, \"output\": str}, and all tests of one kind "
                             "(call tests need \"fn_name\")")
        stdio.append(StdioTest(t["input"], t["output"]))
    return stdio


def parse_tests(value: Any) -> list[str] | list[StdioTest]:
    """`parse_ground_truth` for callers that take test statements and stdio tests only: call
    tests are refused (ValueError)."""
    tests = parse_ground_truth(value)
    if isinstance(tests, CallTests):  # the ground truth names a function
        raise ValueError("call tests (fn_name) are not accepted here: send stdio tests or "
                         "test statements")
    return tests


@dataclass(frozen=True, kw_only=True)
class ExecutionRequest:
    """One program and its tests, validated (see `service.validate`)."""

    program: str
    tests: tuple[str, ...]
    """Assert tests: statements (call tests are statements too: see
    `service.call_statements`). Stdio tests (`kind` "stdio"): each test's input."""
    setup: str = ""
    timeout: float
    memory_mb: int
    stop_on_first_failure: bool = False
    request_id: str = ""
    kind: str = "assert"
    """"assert" (test statements run against the program's names) or "stdio" (the program
    runs whole on each test's input; its output is compared with `expected`)."""
    expected: tuple[str, ...] = ()
    """Stdio tests: each test's expected output (it never reaches the program)."""
    checker: str = "tokens"
    """Stdio tests: how outputs are compared (see executor.sandbox.checkers)."""
    checker_source: str = ""
    """With checker "custom": the checker program (Python)."""
    output_limit: int = 16 << 20
    """Stdio tests: the most a test's run may write to stdout (more is an ERROR)."""
    language: str = "python"
    """The program's language (SandboxFusion's names; see executor.sandbox.languages)."""
    compile_timeout: float = 10.0
    """Compiled languages: the compiler's time limit, in seconds."""
    capture_bytes: int = 0
    """The stdout (and, apart, stderr) kept in the result, bytes; 0: the server's
    `output_bytes`. SandboxFusion's /run_code sets its output limit here, to return it all."""


@dataclass(frozen=True, kw_only=True)
class TestResult:
    verdict: Verdict
    duration: float = 0.0
    error_type: str = ""
    error_message: str = ""
    cpu_seconds: float = 0.0
    """Stdio tests: CPU time of the test's run."""
    peak_memory_kb: int = 0
    """Stdio tests: peak resident memory of the test's run, in KiB."""
    exit_code: int = 0
    """Stdio tests: the run's exit status; negative: the signal that ended it."""


@dataclass(frozen=True, kw_only=True)
class ExecutionResult:
    request_id: str
    status: ProgramStatus
    tests: tuple[TestResult, ...]
    status_detail: str = ""
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration: float = 0.0
    jail: str = ""
    index: int = 0
    extra: dict[str, str] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    """`Flag` values: what the program tried (see `Flag`)."""
    compile_duration: float = 0.0
    """Compiled languages: how long compiling the program took, seconds (once per request)."""

    @property
    def verdicts(self) -> list[Verdict]:
        return [t.verdict for t in self.tests]

    @property
    def passed(self) -> int:
        return sum(t.verdict is Verdict.PASSED for t in self.tests)

    @property
    def pass_rate(self) -> float:
        """AceCoder's reward: tests passed / tests given."""
        return self.passed / len(self.tests) if self.tests else 0.0

    @property
    def all_passed(self) -> bool:
        """The binary reward: 1.0 only when every test passes."""
        return bool(self.tests) and self.passed == len(self.tests)
