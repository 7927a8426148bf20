"""Clients and a server that is still loading: against a tiny real gRPC server whose health
says NOT_SERVING until its "model" is in, a plain call fails at once with acecoder's own
RemoteUnavailable, a `wait_ready` call waits for it, and `wait_until_ready` says what did not
come up when it runs out of time."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from acecoder import errors
from acecoder.clients import AsyncExecutorClient, ExecutorClient, RetryPolicy
from acecoder.remote_errors import RemoteNotReady, RemoteUnavailable
from acecoder.v1 import executor_pb2 as pb
from acecoder.v1 import executor_pb2_grpc as pb_grpc
from tests.conftest import blocking_health

SERVICE = pb.DESCRIPTOR.services_by_name["Executor"].full_name
FAST = RetryPolicy(attempts=3, initial_backoff=0.001, max_backoff=0.01)


class Passing(pb_grpc.ExecutorServicer):
    def Execute(self, request, context):  # type: ignore[no-untyped-def]
        return pb.ExecuteResponse(request_id=request.request_id, all_passed=True,
                                  pass_rate=1.0, results=[pb.TestResult(verdict=pb.PASSED)],
                                  status=pb.OK)


class Loading:
    """A server up and NOT_SERVING, as acecoder's servers are while their model loads."""

    def __init__(self) -> None:
        self.health = blocking_health()
        self.health.set(SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.server = grpc.server(futures.ThreadPoolExecutor(16))
        pb_grpc.add_ExecutorServicer_to_server(Passing(), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.target = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def serve_after(self, seconds: float) -> None:
        timer = threading.Timer(seconds, self.health.set,
                                (SERVICE, health_pb2.HealthCheckResponse.SERVING))
        timer.daemon = True
        timer.start()


@pytest.fixture
def loading() -> Iterator[Loading]:
    server = Loading()
    yield server
    server.server.stop(0)


def test_a_plain_call_fails_at_once_with_acecoders_own_error(loading: Loading) -> None:
    with ExecutorClient(loading.target, retry=FAST, timeout=10) as c:
        started = time.monotonic()
        with pytest.raises(RemoteUnavailable) as err:
            c.execute("x = 1", ["assert x"])
        assert time.monotonic() - started < 5
    assert isinstance(err.value, errors.Unavailable) and isinstance(err.value, grpc.RpcError)
    assert type(err.value).__module__ == "acecoder.remote_errors"  # never grpc's private one
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_wait_ready_call_waits_for_the_server_to_serve(loading: Loading) -> None:
    loading.serve_after(0.8)
    with ExecutorClient(loading.target, retry=FAST, timeout=20, wait_ready=True) as c:
        started = time.monotonic()
        r = c.execute("x = 1", ["assert x"], request_id="waited")
        took = time.monotonic() - started
    assert r.all_passed and r.request_id == "waited"
    assert 0.7 <= took < 15, took


def test_wait_until_ready_returns_once_it_serves_and_says_what_did_not(
        loading: Loading) -> None:
    with ExecutorClient(loading.target, retry=FAST, timeout=20) as c:
        started = time.monotonic()
        with pytest.raises(RemoteNotReady) as err:
            c.wait_until_ready(timeout=0.5)
        assert 0.4 <= time.monotonic() - started < 5
        message = str(err.value)
        assert SERVICE in message and loading.target in message and "0.5 s" in message
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert err.value.details() == message
        assert isinstance(err.value, errors.Unavailable)
        loading.serve_after(0.3)
        c.wait_until_ready(timeout=15)
        assert c.execute("x = 1", ["assert x"]).all_passed  # no wait_ready: it serves now


def test_the_async_client_waits_too(loading: Loading) -> None:
    async def main() -> tuple[bool, float]:
        async with AsyncExecutorClient(loading.target, retry=FAST, timeout=20,
                                       wait_ready=True) as c:
            with pytest.raises(RemoteNotReady):
                await c.wait_until_ready(timeout=0.3)
            loading.serve_after(0.5)
            started = time.monotonic()
            r = await c.execute("x = 1", ["assert x"])
            return r.all_passed, time.monotonic() - started

    passed, took = asyncio.run(main())
    assert passed and took >= 0.2, took


def test_a_server_that_is_not_there_is_not_ready() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        target = f"127.0.0.1:{s.getsockname()[1]}"
    with ExecutorClient(target, retry=FAST, timeout=20) as c:
        with pytest.raises(RemoteNotReady, match="not serving after 0.3 s"):
            c.wait_until_ready(timeout=0.3)


def test_a_server_without_the_health_service_counts_as_ready() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(2))
    pb_grpc.add_ExecutorServicer_to_server(Passing(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with ExecutorClient(f"127.0.0.1:{port}", retry=FAST, timeout=10) as c:
            c.wait_until_ready(timeout=5)  # UNIMPLEMENTED: nothing to wait for
            assert c.execute("x = 1", ["assert x"]).all_passed
    finally:
        server.stop(0)


class StillLoading(Passing):
    """Answers UNAVAILABLE "still loading" to its first `times` calls, then serves."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.calls = 0

    def Execute(self, request, context):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls <= self.times:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the model is still loading; retry")
        return super().Execute(request, context)


def test_wait_ready_retries_still_loading_past_the_attempts_until_the_deadline() -> None:
    servicer = StillLoading(times=8)  # more than FAST's 3 attempts
    server = grpc.server(futures.ThreadPoolExecutor(2))
    pb_grpc.add_ExecutorServicer_to_server(servicer, server)
    target = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    server.start()
    try:
        with ExecutorClient(target, retry=FAST, timeout=10) as plain:
            with pytest.raises(RemoteUnavailable, match="still loading"):
                plain.execute("x = 1", ["assert x"])
        assert servicer.calls == 3  # the attempts, no more
        with ExecutorClient(target, retry=FAST, timeout=10, wait_ready=True) as c:
            assert c.execute("x = 1", ["assert x"]).all_passed
        assert servicer.calls == 9
        servicer.calls = 0
        with ExecutorClient(target, retry=FAST, timeout=0.3, wait_ready=True) as c:
            servicer.times = 10**6  # never loads: the deadline ends it, as UNAVAILABLE
            with pytest.raises(RemoteUnavailable, match="still loading"):
                c.execute("x = 1", ["assert x"])
        assert servicer.calls > 3
    finally:
        server.stop(0)
