"""Between proto messages and the executor's own records (used by the servicer and clients)."""

from __future__ import annotations

from typing import Any

from acecoder.v1 import executor_pb2 as pb

from .types import ExecutionResult, ProgramStatus, TestResult, Verdict


def result_to_proto(r: ExecutionResult) -> pb.ExecuteResponse:
    return pb.ExecuteResponse(
        request_id=r.request_id, index=r.index, status=pb.ProgramStatus.Value(r.status.value),
        status_detail=r.status_detail,
        results=[
            pb.TestResult(verdict=pb.Verdict.Value(t.verdict.value), duration_seconds=t.duration,
                          error_type=t.error_type, error_message=t.error_message)
            for t in r.tests
        ],
        pass_rate=r.pass_rate, all_passed=r.all_passed, stdout=r.stdout, stderr=r.stderr,
        stdout_truncated=r.stdout_truncated, stderr_truncated=r.stderr_truncated,
        duration_seconds=r.duration, jail=r.jail, flags=list(r.flags),
    )


def result_from_proto(m: pb.ExecuteResponse) -> ExecutionResult:
    return ExecutionResult(
        request_id=m.request_id, index=m.index,
        status=ProgramStatus(pb.ProgramStatus.Name(m.status)),
        status_detail=m.status_detail,
        tests=tuple(
            TestResult(verdict=Verdict(pb.Verdict.Name(t.verdict)), duration=t.duration_seconds,
                       error_type=t.error_type, error_message=t.error_message)
            for t in m.results
        ),
        stdout=m.stdout, stderr=m.stderr, stdout_truncated=m.stdout_truncated,
        stderr_truncated=m.stderr_truncated, duration=m.duration_seconds, jail=m.jail,
        flags=tuple(m.flags),
    )


def request_fields(m: pb.ExecuteRequest) -> dict[str, Any]:
    """Keyword arguments of `service.validate` from a request message."""
    return {
        "program": m.program, "tests": list(m.tests), "setup": m.setup,
        "timeout": m.timeout_seconds if m.HasField("timeout_seconds") else None,
        "memory_mb": m.memory_limit_mb if m.HasField("memory_limit_mb") else None,
        "stop_on_first_failure": m.stop_on_first_failure, "request_id": m.request_id,
    }


def request_to_proto(
    program: str | bytes, tests: list[str] | list[bytes], *, setup: str | bytes = b"",
    timeout: float | None = None, memory_mb: int | None = None,
    stop_on_first_failure: bool = False, request_id: str = "",
) -> pb.ExecuteRequest:
    enc = lambda s: s.encode() if isinstance(s, str) else s  # noqa: E731
    m = pb.ExecuteRequest(
        request_id=request_id, program=enc(program), tests=[enc(t) for t in tests],
        setup=enc(setup), stop_on_first_failure=stop_on_first_failure,
    )
    if timeout is not None:
        m.timeout_seconds = timeout
    if memory_mb is not None:
        m.memory_limit_mb = memory_mb
    return m
