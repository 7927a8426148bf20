"""The clients retry only transient codes, and always send a deadline: against a tiny real
gRPC server speaking the Executor protocol."""

from __future__ import annotations

import asyncio
from concurrent import futures

import grpc
import pytest

from acecoder.clients import AsyncExecutorClient, ExecutorClient, RetryPolicy
from acecoder.v1 import executor_pb2 as pb
from acecoder.v1 import executor_pb2_grpc as pb_grpc


class Flaky(pb_grpc.ExecutorServicer):
    def __init__(self, failures: list[grpc.StatusCode]) -> None:
        self.failures = list(failures)
        self.calls = 0
        self.deadlines: list[float | None] = []

    def Execute(self, request, context):  # type: ignore[no-untyped-def]
        self.calls += 1
        self.deadlines.append(context.time_remaining())
        if self.failures:
            context.abort(self.failures.pop(0), "try again")
        return pb.ExecuteResponse(request_id=request.request_id, all_passed=True, pass_rate=1.0,
                                  results=[pb.TestResult(verdict=pb.PASSED)], status=pb.OK)


@pytest.fixture
def flaky():  # type: ignore[no-untyped-def]
    servicers: list[Flaky] = []

    def make(failures: list[grpc.StatusCode]) -> tuple[Flaky, str]:
        servicer = Flaky(failures)
        server = grpc.server(futures.ThreadPoolExecutor(2))
        pb_grpc.add_ExecutorServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        servicers.append(servicer)
        return servicer, f"127.0.0.1:{port}"

    servers: list[grpc.Server] = []
    yield make
    for s in servers:
        s.stop(0)


FAST = RetryPolicy(attempts=4, initial_backoff=0.001, max_backoff=0.01)


def test_transient_codes_are_retried(flaky) -> None:  # type: ignore[no-untyped-def]
    servicer, target = flaky([grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED])
    with ExecutorClient(target, retry=FAST, timeout=5) as c:
        r = c.execute("x = 1", ["assert x"], request_id="r1")
    assert r.all_passed and r.request_id == "r1"
    assert servicer.calls == 3
    assert all(d is not None and 0 < d <= 5 for d in servicer.deadlines)


def test_other_codes_are_not_retried(flaky) -> None:  # type: ignore[no-untyped-def]
    servicer, target = flaky([grpc.StatusCode.INVALID_ARGUMENT])
    with ExecutorClient(target, retry=FAST) as c, pytest.raises(grpc.RpcError) as err:
        c.execute("x = 1", ["assert x"])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and servicer.calls == 1


def test_retries_stop_after_the_last_attempt(flaky) -> None:  # type: ignore[no-untyped-def]
    servicer, target = flaky([grpc.StatusCode.UNAVAILABLE] * 10)
    with ExecutorClient(target, retry=FAST) as c, pytest.raises(grpc.RpcError):
        c.execute("x = 1", ["assert x"])
    assert servicer.calls == 4


def test_async_client_retries_too(flaky) -> None:  # type: ignore[no-untyped-def]
    servicer, target = flaky([grpc.StatusCode.UNAVAILABLE])

    async def go() -> bool:
        async with AsyncExecutorClient(target, retry=FAST, timeout=5) as c:
            return (await c.execute("x = 1", ["assert x"])).all_passed

    assert asyncio.run(go()) and servicer.calls == 2


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout must be > 0"):
        ExecutorClient("127.0.0.1:1", timeout=0)
