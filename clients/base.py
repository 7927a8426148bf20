"""What every acecoder client shares: channel options, TLS and a bearer token (given, or from
the environment: see `acecoder.security.ClientSecurity`), and unary calls with a deadline that
retry only transient codes (UNAVAILABLE, RESOURCE_EXHAUSTED) with jittered backoff, never
past the deadline. Every failed call raises an `acecoder.remote_errors.RemoteError` (one class
per status, each also a `grpc.RpcError`).

A target may name many replicas (`dns:///executor-headless:50051`, every address DNS gives;
`ipv4:10.0.0.1:50051,10.0.0.2:50051`): the channel keeps a connection to each and sends calls
round-robin to those whose `grpc.health.v1` status for the service is SERVING, so a replica
that is loading or draining gets none, and a retry goes to the next replica.

A server that is still starting or loading its model serves no replica yet: a call fails at
once with UNAVAILABLE (RemoteUnavailable), unless the client was made with `wait_ready=True`,
whose calls wait, each within its deadline, until a replica serves (gRPC's wait-for-ready),
and retry UNAVAILABLE answers ("still loading") past `RetryPolicy.attempts`, until the
deadline; `wait_until_ready(timeout)` waits once, up front, and says which service did not
come up."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from acecoder.remote_errors import RemoteNotReady, from_grpc_error
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
        base = min(self.max_backoff,
                   self.initial_backoff * self.multiplier ** min(attempt, 64))
        return random.uniform(base / 2, base)


def _left(end: float) -> float:
    return max(end - time.monotonic(), 0.001)


def _pause(exc: grpc.RpcError, attempt: int, retry: RetryPolicy, end: float,
           received: int = 0, wait_ready: bool = False) -> float:
    """Seconds to wait before trying again after `exc`; raises its RemoteError instead when
    the call is over: a code that is not transient, the last attempt (but for UNAVAILABLE
    with `wait_ready`: a server still loading is waited for until the deadline), no time
    left before the deadline, or a stream that has delivered messages already."""
    pause = retry.delay(attempt)
    error = from_grpc_error(exc)
    waiting = wait_ready and error.code() == grpc.StatusCode.UNAVAILABLE
    if (received or error.code() not in RETRYABLE
            or (attempt >= retry.attempts - 1 and not waiting)
            or time.monotonic() + pause >= end):
        raise error from (None if error is exc else exc)
    return pause


def _options(wait_ready: bool) -> dict[str, Any]:
    # Passed only when asked for: a call waits for a serving replica instead of failing.
    return {"wait_for_ready": True} if wait_ready else {}


def call(fn: Any, request: Any, *, seconds: float, retry: RetryPolicy,
         wait_ready: bool = False) -> Any:
    """`fn(request)` within `seconds`, retried on transient codes; a failure is raised as its
    `acecoder.remote_errors.RemoteError`. `wait_ready`: wait (within `seconds`) for a replica
    that serves, instead of failing at once while none does."""
    end = time.monotonic() + seconds
    for attempt in itertools.count():
        try:
            return fn(request, timeout=_left(end), **_options(wait_ready))
        except grpc.RpcError as exc:
            time.sleep(_pause(exc, attempt, retry, end, wait_ready=wait_ready))
    raise AssertionError("unreachable")


async def acall(fn: Any, request: Any, *, seconds: float, retry: RetryPolicy,
                wait_ready: bool = False) -> Any:
    """`await fn(request)` within `seconds`, retried on transient codes; a failure is raised
    as its RemoteError."""
    end = time.monotonic() + seconds
    for attempt in itertools.count():
        try:
            return await fn(request, timeout=_left(end), **_options(wait_ready))
        except grpc.RpcError as exc:
            await asyncio.sleep(_pause(exc, attempt, retry, end, wait_ready=wait_ready))
    raise AssertionError("unreachable")


def stream(fn: Any, request: Any, *, seconds: float, retry: RetryPolicy,
           wait_ready: bool = False) -> Iterator[Any]:
    """The messages of a server-streaming `fn(request)` within `seconds`; retried on transient
    codes only while nothing has arrived (a retry after that would repeat messages); a
    failure is raised as its RemoteError."""
    end = time.monotonic() + seconds
    for attempt in itertools.count():
        received = 0
        try:
            for message in fn(request, timeout=_left(end), **_options(wait_ready)):
                received += 1
                yield message
            return
        except grpc.RpcError as exc:
            time.sleep(_pause(exc, attempt, retry, end, received, wait_ready))


async def astream(fn: Any, request: Any, *, seconds: float, retry: RetryPolicy,
                  wait_ready: bool = False) -> AsyncIterator[Any]:
    """`stream` for an asyncio channel."""
    end = time.monotonic() + seconds
    for attempt in itertools.count():
        received = 0
        try:
            async for message in fn(request, timeout=_left(end), **_options(wait_ready)):
                received += 1
                yield message
            return
        except grpc.RpcError as exc:
            await asyncio.sleep(_pause(exc, attempt, retry, end, received, wait_ready))


class BlockingClient:
    """A blocking client's channel, stub, `with` support and retried unary calls.
    Thread-safe; reuse one per process."""

    stub_class: Any
    service: str
    """Full gRPC name of the service, whose health decides which replicas get calls."""
    extra_options: tuple[tuple[str, Any], ...] = ()

    def __init__(self, target: str, *, timeout: float, retry: RetryPolicy | None = None,
                 channel: grpc.Channel | None = None,
                 security: ClientSecurity | None = None, wait_ready: bool = False) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        self.target = target
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.wait_ready = wait_ready
        """Calls wait, within their deadline, for a replica that serves."""
        self.channel = channel or (security or ClientSecurity.from_env()).channel(
            target, [*channel_options(self.service), *self.extra_options])
        self.stub = self.stub_class(self.channel)

    def wait_until_ready(self, timeout: float | None = None) -> None:
        """Block until a replica serves (its model loaded), at most `timeout` seconds (the
        client's timeout when None); RemoteNotReady, saying so, when none does in time."""
        seconds = timeout or self.timeout
        end = time.monotonic() + seconds
        stub = _health_stub(self.channel)
        while True:
            try:
                if _serving(stub.Check(_health_request(self.service), timeout=_left(end),
                                       wait_for_ready=True)):
                    return
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:  # no health service: it serves
                    return
                raise _not_ready(self, seconds, exc) from None
            time.sleep(min(0.1, _left(end)))

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _call(self, fn: Any, request: Any, deadline: float | None) -> Any:
        return call(fn, request, seconds=deadline or self.timeout, retry=self.retry,
                    wait_ready=self.wait_ready)


class AsyncClient:
    """An asyncio client's channel, stub, `async with` support and retried unary calls.
    Create and use it inside one event loop."""

    stub_class: Any
    service: str
    """Full gRPC name of the service, whose health decides which replicas get calls."""

    def __init__(self, target: str, *, timeout: float, retry: RetryPolicy | None = None,
                 security: ClientSecurity | None = None, wait_ready: bool = False) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        self.target = target
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.wait_ready = wait_ready
        """Calls wait, within their deadline, for a replica that serves."""
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

    async def wait_until_ready(self, timeout: float | None = None) -> None:
        """`BlockingClient.wait_until_ready`, awaited."""
        seconds = timeout or self.timeout
        end = time.monotonic() + seconds
        stub = _health_stub(self.channel)
        while True:
            try:
                if _serving(await stub.Check(_health_request(self.service),
                                             timeout=_left(end), wait_for_ready=True)):
                    return
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    return
                raise _not_ready(self, seconds, exc) from None
            await asyncio.sleep(min(0.1, _left(end)))

    async def _call(self, fn: Any, request: Any, deadline: float | None) -> Any:
        return await acall(fn, request, seconds=deadline or self.timeout, retry=self.retry,
                           wait_ready=self.wait_ready)


def _health_stub(channel: Any) -> Any:
    from grpc_health.v1 import health_pb2_grpc

    return health_pb2_grpc.HealthStub(channel)


def _health_request(service: str) -> Any:
    from grpc_health.v1 import health_pb2

    return health_pb2.HealthCheckRequest(service=service)


def _serving(reply: Any) -> bool:
    from grpc_health.v1 import health_pb2

    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _not_ready(client: BlockingClient | AsyncClient, seconds: float,
               exc: grpc.RpcError) -> RemoteNotReady:
    why = from_grpc_error(exc)
    return RemoteNotReady(exc, f"{client.service} at {client.target} is not serving after "
                               f"{seconds:g} s (still starting or loading its model, or not "
                               f"running there): {why.code().name}: {why.details()}")
