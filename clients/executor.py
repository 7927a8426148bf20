"""Typed clients of the executor service, blocking and asyncio.

Every call carries a deadline; only transient failures (UNAVAILABLE, RESOURCE_EXHAUSTED) are
retried, with jittered exponential backoff, and never past the call's deadline.

    with ExecutorClient("localhost:50051") as ex:
        result = ex.execute("def f(x): return 2*x", ["assert f(2) == 4"])
        result.pass_rate, result.verdicts
        ex.execute("def f(x): return 2*x", [CallTest([2], 4)], fn_name="f")  # call tests
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from acecoder.executor import convert
from acecoder.executor.types import CallTest, CallTests, ExecutionResult, StdioTest
from acecoder.remote_errors import RemoteError
from acecoder.security import ClientSecurity
from acecoder.v1 import executor_pb2 as pb
from acecoder.v1 import executor_pb2_grpc as pb_grpc

from .base import RETRYABLE, AsyncClient, BlockingClient, RetryPolicy, _left, astream, stream

__all__ = ["RETRYABLE", "AsyncExecutorClient", "CallTest", "CallTests", "ExecutorClient",
           "Program", "RetryPolicy", "StdioTest"]


@dataclass(frozen=True)
class Program:
    """One program and its tests, for `execute_batch`."""

    program: str
    tests: Sequence[Any] | CallTests
    """Test statements ("assert f(2) == 4"), or stdio tests (StdioTest records or
    {"input": ..., "output": ...} mappings): the program runs whole on each input; or, with
    `fn_name`, call tests (CallTest records or {"input": [args...], "output": value} mappings,
    JSON data), or a CallTests record (`parse_ground_truth` makes one)."""
    setup: str = ""
    timeout: float | None = None
    memory_mb: int | None = None
    stop_on_first_failure: bool = False
    request_id: str = ""
    checker: str = ""
    """Stdio tests: how outputs are compared (tokens, exact, lines, float:TOL, ...)."""
    output_limit: int | None = None
    checker_source: str = ""
    """With checker "custom": the checker program (Python; see the README's "Checkers")."""
    language: str = ""
    """"python" (default), "c", "cpp", "java", "nodejs", "rust", "go": stdio tests only."""
    compile_timeout: float | None = None
    fn_name: str = ""
    """Call tests: the function they call, or the method of the program's class `Solution`
    (`Solution().fn_name(*input)`). The result is compared as plain data: a tuple as a list,
    and a bare value also matches a one-element expected list (see the README's "Call
    tests")."""

    def to_proto(self) -> pb.ExecuteRequest:
        statements, stdio, calls, fn_name = convert.split_tests(self.tests, self.fn_name)
        return convert.request_to_proto(
            self.program, statements, setup=self.setup, timeout=self.timeout,
            memory_mb=self.memory_mb, stop_on_first_failure=self.stop_on_first_failure,
            request_id=self.request_id, stdio=stdio, checker=self.checker,
            output_limit=self.output_limit, language=self.language,
            compile_timeout=self.compile_timeout, checker_source=self.checker_source,
            fn_name=fn_name, calls=calls)


def _request(program: str, tests: Sequence[Any] | CallTests, **kw: Any) -> pb.ExecuteRequest:
    return Program(program, tests, **kw).to_proto()


def _older_server(exc: RemoteError, received: int) -> bool:
    """Whether a batch asked with ExecuteBatchChunked is to be asked with ExecuteBatch: the
    server does not know the method (an unknown method runs nothing) and nothing came back."""
    return not received and exc.code() == grpc.StatusCode.UNIMPLEMENTED


def _batch_request(programs: Sequence[Program], linger: float | None) -> pb.ExecuteBatchRequest:
    req = pb.ExecuteBatchRequest(requests=[p.to_proto() for p in programs])
    if linger is not None:
        req.linger_seconds = linger
    return req


class ExecutorClient(BlockingClient):
    """Blocking client. Thread-safe; reuse one per process."""

    stub_class = pb_grpc.ExecutorStub
    service = pb.DESCRIPTOR.services_by_name["Executor"].full_name
    extra_options = (("SingleThreadedUnaryStream", 1),)

    def __init__(self, target: str, *, timeout: float = 60.0, retry: RetryPolicy | None = None,
                 channel: grpc.Channel | None = None,
                 security: ClientSecurity | None = None, wait_ready: bool = False) -> None:
        super().__init__(target, timeout=timeout, retry=retry, channel=channel,
                         security=security, wait_ready=wait_ready)
        self._chunked = True
        """Ask for batches with ExecuteBatchChunked (until a server answers UNIMPLEMENTED)."""

    def execute(self, program: str, tests: Sequence[Any] | CallTests, *, setup: str = "",
                timeout: float | None = None, memory_mb: int | None = None,
                stop_on_first_failure: bool = False, request_id: str = "",
                checker: str = "", output_limit: int | None = None, language: str = "",
                compile_timeout: float | None = None, checker_source: str = "",
                fn_name: str = "", deadline: float | None = None) -> ExecutionResult:
        """Run one program. `timeout` is per test; `deadline` (seconds) bounds the whole call.
        `tests`: statements, stdio tests compared by `checker`, or call tests of `fn_name`
        (see Program)."""
        req = _request(program, tests, setup=setup, timeout=timeout, memory_mb=memory_mb,
                       stop_on_first_failure=stop_on_first_failure, request_id=request_id,
                       checker=checker, output_limit=output_limit, language=language,
                       compile_timeout=compile_timeout, checker_source=checker_source,
                       fn_name=fn_name)
        return convert.result_from_proto(self._call(self.stub.Execute, req, deadline))

    def execute_batch(self, programs: Sequence[Program], *, deadline: float | None = None,
                      linger: float | None = None) -> Iterator[ExecutionResult]:
        """Run many; yields results as they finish (`result.index` says which). The server
        sends those that finish within `linger` seconds of each other in one message (None:
        its default, 5 ms; see ExecuteBatchChunked), or, where it has no ExecuteBatchChunked
        (an older server), each alone. Retries only when nothing has been received yet."""
        req = _batch_request(programs, linger)
        end = time.monotonic() + (deadline or self.timeout)
        if self._chunked:
            received = 0
            try:
                for chunk in stream(self.stub.ExecuteBatchChunked, req, seconds=_left(end),
                                    retry=self.retry, wait_ready=self.wait_ready):
                    received += 1
                    for m in chunk.results:
                        yield convert.result_from_proto(m)
                return
            except RemoteError as exc:
                if not _older_server(exc, received):
                    raise
                self._chunked = False
        for m in stream(self.stub.ExecuteBatch, req, seconds=_left(end), retry=self.retry,
                        wait_ready=self.wait_ready):
            yield convert.result_from_proto(m)

    def info(self, *, deadline: float | None = None) -> pb.InfoResponse:
        return self._call(self.stub.Info, pb.InfoRequest(), deadline)


class AsyncExecutorClient(AsyncClient):
    """asyncio client; create and use it inside one event loop."""

    stub_class = pb_grpc.ExecutorStub
    service = pb.DESCRIPTOR.services_by_name["Executor"].full_name

    def __init__(self, target: str, *, timeout: float = 60.0,
                 retry: RetryPolicy | None = None,
                 security: ClientSecurity | None = None, wait_ready: bool = False) -> None:
        super().__init__(target, timeout=timeout, retry=retry, security=security,
                         wait_ready=wait_ready)
        self._chunked = True

    async def execute(self, program: str, tests: Sequence[Any] | CallTests, *,
                      setup: str = "", timeout: float | None = None,
                      memory_mb: int | None = None, stop_on_first_failure: bool = False,
                      request_id: str = "", checker: str = "", output_limit: int | None = None,
                      language: str = "", compile_timeout: float | None = None,
                      checker_source: str = "", fn_name: str = "",
                      deadline: float | None = None) -> ExecutionResult:
        req = _request(program, tests, setup=setup, timeout=timeout, memory_mb=memory_mb,
                       stop_on_first_failure=stop_on_first_failure, request_id=request_id,
                       checker=checker, output_limit=output_limit, language=language,
                       compile_timeout=compile_timeout, checker_source=checker_source,
                       fn_name=fn_name)
        return convert.result_from_proto(await self._call(self.stub.Execute, req, deadline))

    async def execute_batch(self, programs: Sequence[Program], *,
                            deadline: float | None = None,
                            linger: float | None = None) -> AsyncIterator[ExecutionResult]:
        """As ExecutorClient.execute_batch."""
        req = _batch_request(programs, linger)
        end = time.monotonic() + (deadline or self.timeout)
        if self._chunked:
            received = 0
            try:
                async for chunk in astream(self.stub.ExecuteBatchChunked, req,
                                           seconds=_left(end), retry=self.retry,
                                           wait_ready=self.wait_ready):
                    received += 1
                    for m in chunk.results:
                        yield convert.result_from_proto(m)
                return
            except RemoteError as exc:
                if not _older_server(exc, received):
                    raise
                self._chunked = False
        async for m in astream(self.stub.ExecuteBatch, req, seconds=_left(end),
                               retry=self.retry, wait_ready=self.wait_ready):
            yield convert.result_from_proto(m)

    async def info(self, *, deadline: float | None = None) -> pb.InfoResponse:
        return await self._call(self.stub.Info, pb.InfoRequest(), deadline)
