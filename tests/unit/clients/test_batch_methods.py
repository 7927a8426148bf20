"""How the clients ask for a batch: ExecuteBatchChunked, and ExecuteBatch from a server that
lacks it (an older acecoder), never both for one batch once anything has arrived. Against
tiny real gRPC servers speaking the Executor protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from acecoder.clients import AsyncExecutorClient, ExecutorClient, Program, RetryPolicy
from acecoder.v1 import executor_pb2 as pb
from acecoder.v1 import executor_pb2_grpc as pb_grpc

ONCE = RetryPolicy(attempts=1)


def answer(request: pb.ExecuteBatchRequest, i: int) -> pb.ExecuteResponse:
    return pb.ExecuteResponse(index=i, request_id=request.requests[i].request_id,
                              status=pb.OK, pass_rate=1.0, all_passed=True,
                              results=[pb.TestResult(verdict=pb.PASSED)])


class Old(pb_grpc.ExecutorServicer):
    """A server from before ExecuteBatchChunked: each result alone (its base class answers
    UNIMPLEMENTED to the rest)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.lingers: list[float | None] = []

    def ExecuteBatch(self, request, context):  # type: ignore[no-untyped-def]
        self.calls.append("ExecuteBatch")
        self.lingers.append(request.linger_seconds if request.HasField("linger_seconds") else None)
        for i in reversed(range(len(request.requests))):
            yield answer(request, i)


class New(Old):
    """Sends the results two to a message; `then` ends the stream with that status after the
    first message."""

    def __init__(self, then: grpc.StatusCode | None = None) -> None:
        super().__init__()
        self.then = then

    def ExecuteBatchChunked(self, request, context):  # type: ignore[no-untyped-def]
        self.calls.append("ExecuteBatchChunked")
        self.lingers.append(request.linger_seconds if request.HasField("linger_seconds") else None)
        n = len(request.requests)
        for start in range(0, n, 2):
            yield pb.ExecuteBatchChunk(results=[answer(request, i)
                                                for i in range(start, min(start + 2, n))])
            if self.then is not None:
                context.abort(self.then, "said so")


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[grpc.Server] = []

    def start(servicer: Old) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(2))
        pb_grpc.add_ExecutorServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for s in servers:
        s.stop(0)


BATCH = [Program("x = 1", ["assert x"], request_id=f"r{i}") for i in range(5)]


def test_a_batch_is_one_chunked_call_and_its_results_come_one_by_one(serve) -> None:  # type: ignore[no-untyped-def]
    servicer = New()
    with ExecutorClient(serve(servicer), timeout=10, retry=ONCE) as c:
        got = list(c.execute_batch(BATCH))
        list(c.execute_batch(BATCH, linger=0.25))
    assert [(r.index, r.request_id) for r in got] == [(i, f"r{i}") for i in range(5)]
    assert servicer.calls == ["ExecuteBatchChunked"] * 2
    assert servicer.lingers == [None, 0.25]  # unset: the server's default


def test_an_older_server_is_asked_with_execute_batch_from_then_on(serve) -> None:  # type: ignore[no-untyped-def]
    servicer = Old()
    with ExecutorClient(serve(servicer), timeout=10, retry=ONCE) as c:
        first = list(c.execute_batch(BATCH))
        second = list(c.execute_batch(BATCH))
    assert sorted(r.index for r in first) == sorted(r.index for r in second) == list(range(5))
    # UNIMPLEMENTED ran nothing: asked again at once, and the client remembers
    assert servicer.calls == ["ExecuteBatch", "ExecuteBatch"]


@pytest.mark.parametrize("code", [grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL])
def test_a_chunked_stream_that_fails_after_a_message_is_not_asked_again(serve, code) -> None:  # type: ignore[no-untyped-def]
    """Its programs ran: asking again (with ExecuteBatch or anything) would run them twice."""
    servicer = New(then=code)
    with ExecutorClient(serve(servicer), timeout=10, retry=ONCE) as c:
        got = []
        with pytest.raises(grpc.RpcError) as err:
            for r in c.execute_batch(BATCH):
                got.append(r.index)
    assert err.value.code() == code
    assert got == [0, 1]  # the first message's results reached the caller
    assert servicer.calls == ["ExecuteBatchChunked"]


def test_the_async_client_asks_the_same_way(serve) -> None:  # type: ignore[no-untyped-def]
    old, new = Old(), New()
    old_target, new_target = serve(old), serve(new)

    async def main() -> list[list[int]]:
        out = []
        for target in (old_target, old_target, new_target):
            async with AsyncExecutorClient(target, timeout=10, retry=ONCE) as c:
                out.append(sorted([r.index async for r in c.execute_batch(BATCH, linger=0.0)]))
        return out

    assert asyncio.run(main()) == [list(range(5))] * 3
    assert old.calls == ["ExecuteBatch"] * 2  # (a new client each time: each asks once)
    assert new.calls == ["ExecuteBatchChunked"] and new.lingers == [0.0]
