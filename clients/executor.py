"""Typed clients of the executor service, blocking and asyncio.

Every call carries a deadline; only transient failures (UNAVAILABLE, RESOURCE_EXHAUSTED) are
retried, with jittered exponential backoff, and never past the call's deadline.

    with ExecutorClient("localhost:50051") as ex:
        result = ex.execute("def f(x): return 2*x", ["assert f(2) == 4"])
        result.pass_rate, result.verdicts
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from acecoder.executor import convert
from acecoder.executor.types import ExecutionResult
from acecoder.v1 import executor_pb2 as pb
from acecoder.v1 import executor_pb2_grpc as pb_grpc
from acecoder.security import ClientSecurity

from .base import RETRYABLE, AsyncClient, BlockingClient, RetryPolicy, stream

__all__ = ["RETRYABLE", "AsyncExecutorClient", "ExecutorClient", "Program", "RetryPolicy"]


@dataclass(frozen=True)
class Program:
    """One program and its tests, for `execute_batch`."""

    program: str
    tests: Sequence[str]
    setup: str = ""
    timeout: float | None = None
    memory_mb: int | None = None
    stop_on_first_failure: bool = False
    request_id: str = ""

    def to_proto(self) -> pb.ExecuteRequest:
        return convert.request_to_proto(
            self.program, list(self.tests), setup=self.setup, timeout=self.timeout,
            memory_mb=self.memory_mb, stop_on_first_failure=self.stop_on_first_failure,
            request_id=self.request_id)


def _request(program: str, tests: Sequence[str], **kw: Any) -> pb.ExecuteRequest:
    return Program(program, tests, **kw).to_proto()


class ExecutorClient(BlockingClient):
    """Blocking client. Thread-safe; reuse one per process."""

    stub_class = pb_grpc.ExecutorStub

    def __init__(self, target: str, *, timeout: float = 60.0, retry: RetryPolicy | None = None,
                 channel: grpc.Channel | None = None,
                 security: ClientSecurity | None = None) -> None:
        super().__init__(target, timeout=timeout, retry=retry, channel=channel,
                         security=security)

    def execute(self, program: str, tests: Sequence[str], *, setup: str = "",
                timeout: float | None = None, memory_mb: int | None = None,
                stop_on_first_failure: bool = False, request_id: str = "",
                deadline: float | None = None) -> ExecutionResult:
        """Run one program. `timeout` is per test; `deadline` (seconds) bounds the whole call."""
        req = _request(program, tests, setup=setup, timeout=timeout, memory_mb=memory_mb,
                       stop_on_first_failure=stop_on_first_failure, request_id=request_id)
        return convert.result_from_proto(self._call(self.stub.Execute, req, deadline))

    def execute_batch(self, programs: Sequence[Program], *,
                      deadline: float | None = None) -> Iterator[ExecutionResult]:
        """Run many; yields results as they finish (`result.index` says which). Retries only
        when nothing has been received yet."""
        req = pb.ExecuteBatchRequest(requests=[p.to_proto() for p in programs])
        for m in stream(self.stub.ExecuteBatch, req, seconds=deadline or self.timeout,
                        retry=self.retry):
            yield convert.result_from_proto(m)

    def info(self, *, deadline: float | None = None) -> pb.InfoResponse:
        return self._call(self.stub.Info, pb.InfoRequest(), deadline)


class AsyncExecutorClient(AsyncClient):
    """asyncio client; create and use it inside one event loop."""

    stub_class = pb_grpc.ExecutorStub

    def __init__(self, target: str, *, timeout: float = 60.0,
                 retry: RetryPolicy | None = None,
                 security: ClientSecurity | None = None) -> None:
        super().__init__(target, timeout=timeout, retry=retry, security=security)

    async def execute(self, program: str, tests: Sequence[str], *, setup: str = "",
                      timeout: float | None = None, memory_mb: int | None = None,
                      stop_on_first_failure: bool = False, request_id: str = "",
                      deadline: float | None = None) -> ExecutionResult:
        req = _request(program, tests, setup=setup, timeout=timeout, memory_mb=memory_mb,
                       stop_on_first_failure=stop_on_first_failure, request_id=request_id)
        return convert.result_from_proto(await self._call(self.stub.Execute, req, deadline))

    async def execute_batch(self, programs: Sequence[Program], *,
                            deadline: float | None = None) -> AsyncIterator[ExecutionResult]:
        req = pb.ExecuteBatchRequest(requests=[p.to_proto() for p in programs])
        end = time.monotonic() + (deadline or self.timeout)
        for attempt in range(self.retry.attempts):
            received = 0
            try:
                async for m in self.stub.ExecuteBatch(req, timeout=max(end - time.monotonic(), 0.001)):
                    received += 1
                    yield convert.result_from_proto(m)
                return
            except grpc.aio.AioRpcError as exc:
                pause = self.retry.delay(attempt)
                if (received or exc.code() not in RETRYABLE
                        or attempt == self.retry.attempts - 1 or time.monotonic() + pause >= end):
                    raise
                await asyncio.sleep(pause)

    async def info(self, *, deadline: float | None = None) -> pb.InfoResponse:
        return await self._call(self.stub.Info, pb.InfoRequest(), deadline)
