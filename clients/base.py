"""What every acecoder client shares: channel options, TLS and a bearer token (given, or from
the environment: see `acecoder.security.ClientSecurity`), and unary calls with a deadline that
retry only transient codes (UNAVAILABLE, RESOURCE_EXHAUSTED) with jittered backoff, never
past the deadline."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from acecoder.security import ClientSecurity
from acecoder.serving import MESSAGE_OPTIONS

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
OPTIONS = list(MESSAGE_OPTIONS)


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


def call(fn: Any, request: Any, *, seconds: float, retry: RetryPolicy) -> Any:
    """`fn(request)` within `seconds`, retried on transient codes."""
    end = time.monotonic() + seconds
    for attempt in range(retry.attempts):
        try:
            return fn(request, timeout=max(end - time.monotonic(), 0.001))
        except grpc.RpcError as exc:
            pause = retry.delay(attempt)
            if (exc.code() not in RETRYABLE  # type: ignore[attr-defined]
                    or attempt == retry.attempts - 1 or time.monotonic() + pause >= end):
                raise
            time.sleep(pause)
    raise AssertionError("unreachable")


async def acall(fn: Any, request: Any, *, seconds: float, retry: RetryPolicy) -> Any:
    """`await fn(request)` within `seconds`, retried on transient codes."""
    end = time.monotonic() + seconds
    for attempt in range(retry.attempts):
        try:
            return await fn(request, timeout=max(end - time.monotonic(), 0.001))
        except grpc.aio.AioRpcError as exc:
            pause = retry.delay(attempt)
            if (exc.code() not in RETRYABLE or attempt == retry.attempts - 1
                    or time.monotonic() + pause >= end):
                raise
            await asyncio.sleep(pause)
    raise AssertionError("unreachable")


def stream(fn: Any, request: Any, *, seconds: float, retry: RetryPolicy) -> Iterator[Any]:
    """The messages of a server-streaming `fn(request)` within `seconds`; retried on transient
    codes only while nothing has arrived (a retry after that would repeat messages)."""
    end = time.monotonic() + seconds
    for attempt in range(retry.attempts):
        received = 0
        try:
            for message in fn(request, timeout=max(end - time.monotonic(), 0.001)):
                received += 1
                yield message
            return
        except grpc.RpcError as exc:
            pause = retry.delay(attempt)
            if (received or exc.code() not in RETRYABLE  # type: ignore[attr-defined]
                    or attempt == retry.attempts - 1 or time.monotonic() + pause >= end):
                raise
            time.sleep(pause)


class BlockingClient:
    """A blocking client's channel, stub, `with` support and retried unary calls.
    Thread-safe; reuse one per process."""

    stub_class: Any

    def __init__(self, target: str, *, timeout: float, retry: RetryPolicy | None = None,
                 channel: grpc.Channel | None = None,
                 security: ClientSecurity | None = None) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        self.target = target
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.channel = channel or (security or ClientSecurity.from_env()).channel(target, OPTIONS)
        self.stub = self.stub_class(self.channel)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _call(self, fn: Any, request: Any, deadline: float | None) -> Any:
        return call(fn, request, seconds=deadline or self.timeout, retry=self.retry)


class AsyncClient:
    """An asyncio client's channel, stub, `async with` support and retried unary calls.
    Create and use it inside one event loop."""

    stub_class: Any

    def __init__(self, target: str, *, timeout: float, retry: RetryPolicy | None = None,
                 security: ClientSecurity | None = None) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        self.target = target
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.channel = (security or ClientSecurity.from_env()).aio_channel(target, OPTIONS)
        self.stub = self.stub_class(self.channel)

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    async def _call(self, fn: Any, request: Any, deadline: float | None) -> Any:
        return await acall(fn, request, seconds=deadline or self.timeout, retry=self.retry)
