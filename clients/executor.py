"""Typed clients of the executor service, blocking and asyncio.

Every call carries a deadline; only transient failures (UNAVAILABLE, RESOURCE_EXHAUSTED) are
retried, with jittered exponential backoff, and never past the call's deadline.

    with ExecutorClient("localhost:50051") as ex:
        result = ex.execute("def f(x): return 2*x", ["assert f(2) == 4"])
        result.pass_rate, result.verdicts
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from acecoder.executor import convert
from acecoder.executor.types import ExecutionResult
from acecoder.v1 import executor_pb2 as pb
from acecoder.v1 import executor_pb2_grpc as pb_grpc

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
_MAX_MESSAGE = 256 * 1024 * 1024
_OPTIONS = [("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE)]


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


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    """Tries in all, the first included."""
    initial_backoff: float = 0.05
    max_backoff: float = 2.0
    multiplier: float = 2.0

    def delay(self, attempt: int) -> float:
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** attempt)
        return random.uniform(base / 2, base)


class _Base:
    def __init__(self, target: str, *, timeout: float = 60.0, retry: RetryPolicy | None = None) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        self.target = target
        self.timeout = timeout
        self.retry = retry or RetryPolicy()

    def _request(self, program: str, tests: Sequence[str], **kw: Any) -> pb.ExecuteRequest:
        return Program(program, tests, **kw).to_proto()


class ExecutorClient(_Base):
    """Blocking client. Thread-safe; reuse one per process."""

    def __init__(self, target: str, *, timeout: float = 60.0, retry: RetryPolicy | None = None,
                 channel: grpc.Channel | None = None) -> None:
        super().__init__(target, timeout=timeout, retry=retry)
        self.channel = channel or grpc.insecure_channel(target, options=_OPTIONS)
        self.stub = pb_grpc.ExecutorStub(self.channel)

    def __enter__(self) -> ExecutorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _call(self, fn: Any, request: Any, timeout: float | None) -> Any:
        deadline = time.monotonic() + (timeout or self.timeout)
        for attempt in range(self.retry.attempts):
            remaining = deadline - time.monotonic()
            try:
                return fn(request, timeout=max(remaining, 0.001))
            except grpc.RpcError as exc:
                code = exc.code()  # type: ignore[attr-defined]
                pause = self.retry.delay(attempt)
                last = attempt == self.retry.attempts - 1
                if code not in RETRYABLE or last or time.monotonic() + pause >= deadline:
                    raise
                time.sleep(pause)
        raise AssertionError("unreachable")

    def execute(self, program: str, tests: Sequence[str], *, setup: str = "",
                timeout: float | None = None, memory_mb: int | None = None,
                stop_on_first_failure: bool = False, request_id: str = "",
                deadline: float | None = None) -> ExecutionResult:
        """Run one program. `timeout` is per test; `deadline` (seconds) bounds the whole call."""
        req = self._request(program, tests, setup=setup, timeout=timeout, memory_mb=memory_mb,
                            stop_on_first_failure=stop_on_first_failure, request_id=request_id)
        return convert.result_from_proto(self._call(self.stub.Execute, req, deadline))

    def execute_batch(self, programs: Sequence[Program], *,
                      deadline: float | None = None) -> Iterator[ExecutionResult]:
        """Run many; yields results as they finish (`result.index` says which). Retries only
        when nothing has been received yet."""
        req = pb.ExecuteBatchRequest(requests=[p.to_proto() for p in programs])
        end = time.monotonic() + (deadline or self.timeout)
        for attempt in range(self.retry.attempts):
            received = 0
            try:
                for m in self.stub.ExecuteBatch(req, timeout=max(end - time.monotonic(), 0.001)):
                    received += 1
                    yield convert.result_from_proto(m)
                return
            except grpc.RpcError as exc:
                pause = self.retry.delay(attempt)
                if (received or exc.code() not in RETRYABLE  # type: ignore[attr-defined]
                        or attempt == self.retry.attempts - 1 or time.monotonic() + pause >= end):
                    raise
                time.sleep(pause)

    def info(self, *, deadline: float | None = None) -> pb.InfoResponse:
        return self._call(self.stub.Info, pb.InfoRequest(), deadline)


class AsyncExecutorClient(_Base):
    """asyncio client; create and use it inside one event loop."""

    def __init__(self, target: str, *, timeout: float = 60.0, retry: RetryPolicy | None = None) -> None:
        super().__init__(target, timeout=timeout, retry=retry)
        self.channel = grpc.aio.insecure_channel(target, options=_OPTIONS)
        self.stub = pb_grpc.ExecutorStub(self.channel)

    async def __aenter__(self) -> AsyncExecutorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    async def _call(self, fn: Any, request: Any, timeout: float | None) -> Any:
        deadline = time.monotonic() + (timeout or self.timeout)
        for attempt in range(self.retry.attempts):
            remaining = deadline - time.monotonic()
            try:
                return await fn(request, timeout=max(remaining, 0.001))
            except grpc.aio.AioRpcError as exc:
                pause = self.retry.delay(attempt)
                last = attempt == self.retry.attempts - 1
                if exc.code() not in RETRYABLE or last or time.monotonic() + pause >= deadline:
                    raise
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")

    async def execute(self, program: str, tests: Sequence[str], *, setup: str = "",
                      timeout: float | None = None, memory_mb: int | None = None,
                      stop_on_first_failure: bool = False, request_id: str = "",
                      deadline: float | None = None) -> ExecutionResult:
        req = self._request(program, tests, setup=setup, timeout=timeout, memory_mb=memory_mb,
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
