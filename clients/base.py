"""What every acecoder client shares: channel options, TLS and a bearer token (given, or from
the environment: see `acecoder.security.ClientSecurity`), and unary calls with a deadline that
retry only transient codes (UNAVAILABLE, RESOURCE_EXHAUSTED) with jittered backoff, never
past the deadline. Every failed call raises an `acecoder.remote_errors.RemoteError` (one class
per status, each also a `grpc.RpcError`).

A target may name many replicas (`dns:///executor-headless:50051`, every address DNS gives;
`ipv4:10.0.0.1:50051,10.0.0.2:50051`): the channel keeps a connection to each and sends calls
round-robin to those whose `grpc.health.v1` status for the service is SERVING, so a replica
that is loading or draining gets none, and a retry goes to the next replica."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from acecoder.remote_errors import from_grpc_error
from acecoder.security import ClientSecurity
from acecoder.serving import MESSAGE_OPTIONS

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
DNS_MIN_RESOLUTION_MS = 5000
"""Least time between two DNS look-ups of a `dns:///` target. gRPC looks again whenever a
connection drops (a replica gone, or a GOAWAY when the server's connection reaches its
maximum age), so new pods are found then, but not sooner than this after the last look-up
(gRPC's default, 30 s, would keep a client on the replicas it has left that long)."""


def channel_options(service: str) -> list[tuple[str, Any]]:
    """Options of a channel to `service` (its full gRPC name, e.g. acecoder.v1.Executor):
    message sizes, and a service config that spreads calls over every replica the target names
    (`round_robin`) and skips those whose health for `service` is not SERVING (client-side
    health checking: the channel watches each replica's `grpc.health.v1.Health/Watch`; a
    server without the health service counts as healthy). There is no `retryPolicy` in it:
    the clients' own retries (`call`, `stream`) are the only ones, so `RetryPolicy.attempts`
    means what it says, and each one picks a replica again."""
    config = {"loadBalancingConfig": [{"round_robin": {}}],
              "healthCheckConfig": {"serviceName": service}}
    return [*MESSAGE_OPTIONS, ("grpc.service_config", json.dumps(config)),
            ("grpc.service_config_disable_resolution", 1),  # ours, never one from DNS TXT
            ("grpc.dns_min_time_between_resolutions_ms", DNS_MIN_RESOLUTION_MS)]


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


def _left(end: float) -> float:
    return max(end - time.monotonic(), 0.001)


def _pause(exc: grpc.RpcError, attempt: int, retry: RetryPolicy, end: float,
           received: int = 0) -> float:
    """Seconds to wait before trying again after `exc`; raises its RemoteError instead when
    the call is over: a code that is not transient, the last attempt, no time left before the
    deadline, or a stream that has delivered messages already."""
    pause = retry.delay(attempt)
    error = from_grpc_error(exc)
    if (received or error.code() not in RETRYABLE or attempt == retry.attempts - 1
            or time.monotonic() + pause >= end):
        raise error from (None if error is exc else exc)
    return pause


def call(fn: Any, request: Any, *, seconds: float, retry: RetryPolicy) -> Any:
    """`fn(request)` within `seconds`, retried on transient codes; a failure is raised as its
    `acecoder.remote_errors.RemoteError`."""
    end = time.monotonic() + seconds
    for attempt in range(retry.attempts):
        try:
            return fn(request, timeout=_left(end))
        except grpc.RpcError as exc:
            time.sleep(_pause(exc, attempt, retry, end))
    raise AssertionError("unreachable")


async def acall(fn: Any, request: Any, *, seconds: float, retry: RetryPolicy) -> Any:
    """`await fn(request)` within `seconds`, retried on transient codes; a failure is raised
    as its RemoteError."""
    end = time.monotonic() + seconds
    for attempt in range(retry.attempts):
        try:
            return await fn(request, timeout=_left(end))
        except grpc.RpcError as exc:
            await asyncio.sleep(_pause(exc, attempt, retry, end))
    raise AssertionError("unreachable")


def stream(fn: Any, request: Any, *, seconds: float, retry: RetryPolicy) -> Iterator[Any]:
    """The messages of a server-streaming `fn(request)` within `seconds`; retried on transient
    codes only while nothing has arrived (a retry after that would repeat messages); a
    failure is raised as its RemoteError."""
    end = time.monotonic() + seconds
    for attempt in range(retry.attempts):
        received = 0
        try:
            for message in fn(request, timeout=_left(end)):
                received += 1
                yield message
            return
        except grpc.RpcError as exc:
            time.sleep(_pause(exc, attempt, retry, end, received))


async def astream(fn: Any, request: Any, *, seconds: float,
                  retry: RetryPolicy) -> AsyncIterator[Any]:
    """`stream` for an asyncio channel."""
    end = time.monotonic() + seconds
    for attempt in range(retry.attempts):
        received = 0
        try:
            async for message in fn(request, timeout=_left(end)):
                received += 1
                yield message
            return
        except grpc.RpcError as exc:
            await asyncio.sleep(_pause(exc, attempt, retry, end, received))


class BlockingClient:
    """A blocking client's channel, stub, `with` support and retried unary calls.
    Thread-safe; reuse one per process."""

    stub_class: Any
    service: str
    """Full gRPC name of the service, whose health decides which replicas get calls."""

    def __init__(self, target: str, *, timeout: float, retry: RetryPolicy | None = None,
                 channel: grpc.Channel | None = None,
                 security: ClientSecurity | None = None) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        self.target = target
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.channel = channel or (security or ClientSecurity.from_env()).channel(
            target, channel_options(self.service))
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
    service: str
    """Full gRPC name of the service, whose health decides which replicas get calls."""

    def __init__(self, target: str, *, timeout: float, retry: RetryPolicy | None = None,
                 security: ClientSecurity | None = None) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        self.target = target
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.channel = (security or ClientSecurity.from_env()).aio_channel(
            target, channel_options(self.service))
        # Connect to every replica now, not on the first call: the first calls go to the
        # replicas ready by then (round_robin picks among those), so a burst of them sent
        # on a fresh channel would all land on the first one to answer.
        self.channel.get_state(try_to_connect=True)
        self.stub = self.stub_class(self.channel)

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    async def _call(self, fn: Any, request: Any, deadline: float | None) -> Any:
        return await acall(fn, request, seconds=deadline or self.timeout, retry=self.retry)
