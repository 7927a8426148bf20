"""Between proto messages and the executor's own records (used by the servicer and clients)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from acecoder.v1 import executor_pb2 as pb

from .types import (
    CallTest,
    CallTests,
    ExecutionResult,
    ProgramStatus,
    StdioTest,
    TestResult,
    Verdict,
    call_json,
)


def _numbers(enum: Any, wire_enum: Any) -> dict[Any, Any]:
    """Each member's number in the proto enum of the same names (members it lacks are left
    out: converting one raises, as the proto's own lookup does)."""
    out = {}
    for member in enum:
        try:
            out[member] = wire_enum.Value(member.value)
        except ValueError:
            pass
    return out


# Looked up per result on both sides of every ExecuteBatch stream: dicts, where the proto
# enums' Name/Value are Python-level searches.
_STATUS_NUMBER = _numbers(ProgramStatus, pb.ProgramStatus)
_VERDICT_NUMBER = _numbers(Verdict, pb.Verdict)
_STATUS_OF = {n: s for s, n in _STATUS_NUMBER.items()}
_VERDICT_OF = {n: v for v, n in _VERDICT_NUMBER.items()}


def _status_number(s: ProgramStatus) -> pb.ProgramStatus:
    n = _STATUS_NUMBER.get(s)
    return pb.ProgramStatus.Value(s.value) if n is None else n


def _verdict_number(v: Verdict) -> pb.Verdict:
    n = _VERDICT_NUMBER.get(v)
    return pb.Verdict.Value(v.value) if n is None else n


def _status_of(n: int) -> ProgramStatus:
    s = _STATUS_OF.get(n)
    return ProgramStatus(pb.ProgramStatus.Name(n)) if s is None else s


def _verdict_of(n: int) -> Verdict:
    v = _VERDICT_OF.get(n)
    return Verdict(pb.Verdict.Name(n)) if v is None else v


def result_to_proto(r: ExecutionResult) -> pb.ExecuteResponse:
    return pb.ExecuteResponse(
        request_id=r.request_id, index=r.index, status=_status_number(r.status),
        status_detail=r.status_detail,
        results=[
            pb.TestResult(verdict=_verdict_number(t.verdict), duration_seconds=t.duration,
                          error_type=t.error_type, error_message=t.error_message,
                          cpu_seconds=t.cpu_seconds, peak_memory_kb=t.peak_memory_kb,
                          exit_code=t.exit_code)
            for t in r.tests
        ],
        pass_rate=r.pass_rate, all_passed=r.all_passed, stdout=r.stdout, stderr=r.stderr,
        stdout_truncated=r.stdout_truncated, stderr_truncated=r.stderr_truncated,
        duration_seconds=r.duration, jail=r.jail, flags=list(r.flags),
        compile_seconds=r.compile_duration,
    )


def result_from_proto(m: pb.ExecuteResponse) -> ExecutionResult:
    return ExecutionResult(
        request_id=m.request_id, index=m.index,
        status=_status_of(m.status),
        status_detail=m.status_detail,
        tests=tuple(
            TestResult(verdict=_verdict_of(t.verdict), duration=t.duration_seconds,
                       error_type=t.error_type, error_message=t.error_message,
                       cpu_seconds=t.cpu_seconds, peak_memory_kb=t.peak_memory_kb,
                       exit_code=t.exit_code)
            for t in m.results
        ),
        stdout=m.stdout, stderr=m.stderr, stdout_truncated=m.stdout_truncated,
        stderr_truncated=m.stderr_truncated, duration=m.duration_seconds, jail=m.jail,
        flags=tuple(m.flags), compile_duration=m.compile_seconds,
    )


def request_fields(m: pb.ExecuteRequest) -> dict[str, Any]:
    """Keyword arguments of `service.validate` from a request message."""
    return {
        "program": m.program, "tests": list(m.tests), "setup": m.setup,
        "timeout": m.timeout_seconds if m.HasField("timeout_seconds") else None,
        "memory_mb": m.memory_limit_mb if m.HasField("memory_limit_mb") else None,
        "stop_on_first_failure": m.stop_on_first_failure, "request_id": m.request_id,
        "stdio": [(t.input, t.output) for t in m.stdio_tests], "checker": m.checker,
        "output_limit": m.output_limit_bytes if m.HasField("output_limit_bytes") else None,
        "language": m.language,
        "compile_timeout": (m.compile_timeout_seconds if m.HasField("compile_timeout_seconds")
                            else None),
        "fn_name": m.fn_name, "calls": [(t.input, t.output) for t in m.call_tests],
        "checker_source": m.checker_source,
    }


def split_tests(tests: Sequence[Any] | CallTests, fn_name: str = "") -> tuple[
        list[Any], list[tuple[str, str]], list[tuple[str, str]], str]:
    """(test statements, stdio (input, output) pairs, call (JSON arguments, JSON output) pairs,
    fn_name) of tests of one kind: statements (str/bytes); StdioTest records or
    {"input", "output"} mappings; or, with `fn_name` (or a CallTests record), CallTest records
    or {"input": [args...], "output": value} mappings."""
    if isinstance(tests, CallTests):
        if fn_name and fn_name != tests.fn_name:
            raise ValueError(f"the tests call {tests.fn_name!r} but fn_name is {fn_name!r}")
        fn_name, tests = tests.fn_name, tests.tests
    statements: list[Any] = []
    stdio: list[tuple[str, str]] = []
    calls: list[tuple[str, str]] = []
    for i, t in enumerate(tests):
        if isinstance(t, CallTest) or (fn_name and isinstance(t, Mapping)):
            try:
                args, output = (t.input, t.output) if isinstance(t, CallTest) \
                    else (t["input"], t["output"])
            except KeyError as exc:
                raise ValueError(f"a call test needs 'input' and 'output' (missing {exc})") \
                    from None
            if not isinstance(args, (list, tuple)):
                raise ValueError(f"call test {i}: 'input' must be the list of the call's "
                                 f"arguments, got {type(args).__name__}")
            calls.append((call_json(args, f"call test {i}'s input"),
                          call_json(output, f"call test {i}'s output")))
        elif isinstance(t, StdioTest):
            stdio.append((t.input, t.output))
        elif isinstance(t, Mapping):
            try:
                stdio.append((t["input"], t["output"]))
            except KeyError as exc:
                raise ValueError(f"a stdio test needs 'input' and 'output' (missing {exc})") \
                    from None
        else:
            statements.append(t)
    if sum(map(bool, (statements, stdio, calls))) > 1:
        raise ValueError("a request's tests are all statements or all stdio tests (or, with "
                         "fn_name, all call tests)")
    if calls and not fn_name:
        raise ValueError("call tests need fn_name: the function (or method of class Solution) "
                         "they call")
    if fn_name and (statements or stdio):
        raise ValueError(f"fn_name {fn_name!r} is set, but the tests are not call tests")
    return statements, stdio, calls, fn_name


def request_to_proto(
    program: str | bytes, tests: list[str] | list[bytes], *, setup: str | bytes = b"",
    timeout: float | None = None, memory_mb: int | None = None,
    stop_on_first_failure: bool = False, request_id: str = "",
    stdio: list[tuple[str, str]] | None = None, checker: str = "",
    output_limit: int | None = None, language: str = "", compile_timeout: float | None = None,
    fn_name: str = "", calls: list[tuple[str, str]] | None = None,
    checker_source: str | bytes = b"",
) -> pb.ExecuteRequest:
    """`stdio`: (input, expected output) pairs instead of test statements (`tests` empty);
    `fn_name` and `calls`: (JSON arguments, JSON output) pairs, call tests."""
    enc = lambda s: s.encode() if isinstance(s, str) else s  # noqa: E731
    m = pb.ExecuteRequest(
        request_id=request_id, program=enc(program), tests=[enc(t) for t in tests],
        setup=enc(setup), stop_on_first_failure=stop_on_first_failure,
        stdio_tests=[pb.StdioTest(input=enc(i), output=enc(o)) for i, o in stdio or ()],
        checker=checker, language=language, fn_name=fn_name, checker_source=enc(checker_source),
        call_tests=[pb.CallTest(input=enc(i), output=enc(o)) for i, o in calls or ()],
    )
    if compile_timeout is not None:
        m.compile_timeout_seconds = compile_timeout
    if output_limit is not None:
        m.output_limit_bytes = output_limit
    if timeout is not None:
        m.timeout_seconds = timeout
    if memory_mb is not None:
        m.memory_limit_mb = memory_mb
    return m
