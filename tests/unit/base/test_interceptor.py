"""The shared gRPC interceptor on a real grpc.aio server on loopback: unexpected exceptions are
INTERNAL and counted as such, handlers that write with `context.write` (grpc's own health
Watch) keep working, malformed messages are INVALID_ARGUMENT naming the field, and an
unauthenticated call is refused without its message being read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from acecoder.errors import InvalidArgument
from acecoder.interceptor import ServiceInterceptor, bad_field, describe_malformed
from acecoder.security import Guard, RateLimiter, parse_tokens
from acecoder.v1 import executor_pb2, reward_pb2, synthesis_pb2

TOKEN = "unit-token-0123456789abcdef"
Info = executor_pb2.InfoRequest
InfoOut = executor_pb2.InfoResponse
Score = reward_pb2.ScoreRequest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("t_requests", "", ["method", "code"], registry=self.registry)
        self.rpc_latency = Histogram("t_latency", "", ["method"], registry=self.registry)

    def count(self, method: str, code: str, at_least: float = 1) -> float:
        """The counter, once the server has finished the calls (it counts after answering):
        waits a little for `at_least`."""
        import time

        deadline = time.monotonic() + 5
        while True:
            value = self.registry.get_sample_value("t_requests_total",
                                                   {"method": method, "code": code}) or 0.0
            if value >= at_least or time.monotonic() > deadline:
                return value
            time.sleep(0.01)


async def boom(request: Any, context: grpc.aio.ServicerContext) -> Any:
    raise RuntimeError("a bug")


async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
    raise InvalidArgument("no, because")


async def aborts(request: Any, context: grpc.aio.ServicerContext) -> Any:
    await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not now")


async def echo(request: Any, context: grpc.aio.ServicerContext) -> Any:
    return InfoOut(version=str(len(request.items)))


async def writes(request: Any, context: grpc.aio.ServicerContext) -> None:
    for i in range(3):
        await context.write(InfoOut(version=str(i)))


async def generates(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
    for i in range(2):
        yield InfoOut(version=f"g{i}")


async def count_stream(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
    async for r in requests:
        yield InfoOut(version=str(len(r.items)))


def _handlers() -> grpc.GenericRpcHandler:
    out = InfoOut.SerializeToString
    unary = {name: grpc.unary_unary_rpc_method_handler(fn, request_deserializer=Info.FromString,
                                                       response_serializer=out)
             for name, fn in (("Boom", boom), ("Refuse", refuse), ("Aborts", aborts))}
    unary["Echo"] = grpc.unary_unary_rpc_method_handler(
        echo, request_deserializer=Score.FromString, response_serializer=out)
    unary["Writes"] = grpc.unary_stream_rpc_method_handler(
        writes, request_deserializer=Info.FromString, response_serializer=out)
    unary["Generates"] = grpc.unary_stream_rpc_method_handler(
        generates, request_deserializer=Info.FromString, response_serializer=out)
    unary["Stream"] = grpc.stream_stream_rpc_method_handler(
        count_stream, request_deserializer=Score.FromString, response_serializer=out)
    return grpc.method_handlers_generic_handler("t.Svc", unary)


class Loop:
    """A real grpc.aio server with the interceptor, on loopback, in a background loop."""

    def __init__(self, guard: Guard | None) -> None:
        self.metrics = Metrics()
        self.loop = asyncio.new_event_loop()
        self.guard = guard

        async def start() -> tuple[grpc.aio.Server, int]:
            server = grpc.aio.server(interceptors=[ServiceInterceptor(
                self.metrics, guard=guard, costs={"Echo": lambda r: len(r.items),
                                                  "Stream": lambda r: len(r.items)})])
            server.add_generic_rpc_handlers((_handlers(),))
            servicer = health.aio.HealthServicer()
            await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
            health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            return server, port

        import threading

        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server, port = asyncio.run_coroutine_threadsafe(start(), self.loop).result(30)
        self.target = f"127.0.0.1:{port}"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(None), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


@pytest.fixture(scope="module")
def plain() -> Iterator[Loop]:
    s = Loop(None)
    yield s
    s.close()


@pytest.fixture(scope="module")
def guarded() -> Iterator[Loop]:
    s = Loop(Guard(parse_tokens(f"unit {TOKEN}"), RateLimiter(1.0, 5),
                   failures=RateLimiter(1 / 60, 1000)))
    yield s
    s.close()


def call(target: str, method: str, payload: bytes, *, token: str | None = None,
         stream: bool = False) -> Any:
    meta = [("authorization", f"Bearer {token}")] if token else None
    with grpc.insecure_channel(target) as ch:
        if stream:
            return list(ch.unary_stream(f"/t.Svc/{method}")(payload, timeout=10, metadata=meta))
        return ch.unary_unary(f"/t.Svc/{method}")(payload, timeout=10, metadata=meta)


def code_of(target: str, method: str, payload: bytes = b"", **kw: Any) -> tuple[str, str]:
    with pytest.raises(grpc.RpcError) as err:
        call(target, method, payload, **kw)
    return err.value.code().name, err.value.details()


def test_an_unexpected_exception_is_internal_and_counted(plain: Loop) -> None:
    assert code_of(plain.target, "Boom") == (
        "INTERNAL", "internal error (RuntimeError); the server's log has the details")
    assert plain.metrics.count("Boom", "INTERNAL") == 1
    assert plain.metrics.count("Boom", "OK", 0) == 0
    assert plain.metrics.count("Boom", "UNKNOWN", 0) == 0
    assert code_of(plain.target, "Refuse") == ("INVALID_ARGUMENT", "no, because")
    assert plain.metrics.count("Refuse", "INVALID_ARGUMENT") == 1
    # a servicer that aborts by itself keeps its code, and is counted with it
    assert code_of(plain.target, "Aborts") == ("FAILED_PRECONDITION", "not now")
    assert plain.metrics.count("Aborts", "FAILED_PRECONDITION") == 1


def test_handlers_that_write_and_handlers_that_yield_both_stream(plain: Loop) -> None:
    got = call(plain.target, "Writes", b"", stream=True)
    assert [InfoOut.FromString(m).version for m in got] == ["0", "1", "2"]
    got = call(plain.target, "Generates", b"", stream=True)
    assert [InfoOut.FromString(m).version for m in got] == ["g0", "g1"]
    assert plain.metrics.count("Writes", "OK") == 1


def test_health_watch_streams(plain: Loop, guarded: Loop) -> None:
    """grpc's health Watch writes with `context.write`: the interceptor once broke it (UNKNOWN
    on every service). It needs no token, and is not counted (clients hold one open per
    replica for their channel's lifetime); Check, the probes' call, is."""
    for server in (plain, guarded):
        with grpc.insecure_channel(server.target) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            stream = stub.Watch(health_pb2.HealthCheckRequest(), timeout=10)
            assert next(stream).status == health_pb2.HealthCheckResponse.SERVING
            stream.cancel()
            stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert server.metrics.count("Check", "OK") == 1
        assert server.metrics.count("Watch", "CANCELLED", 0) == 0
        assert server.metrics.count("Watch", "OK", 0) == 0


def test_malformed_messages_name_the_field(guarded: Loop) -> None:
    bad_id = reward_pb2.ScoreItem(question=b"q", response=b"r").SerializeToString() + \
        b"\x1a\x02\xff\xfe"  # field 3 (id), 2 bytes that are not UTF-8
    request = reward_pb2.ScoreRequest(items=[reward_pb2.ScoreItem(id="ok")]).SerializeToString()
    payload = request + b"\x12" + bytes([len(bad_id)]) + bad_id  # a second item, bad id
    assert code_of(guarded.target, "Echo", payload, token=TOKEN) == (
        "INVALID_ARGUMENT",
        "ScoreRequest.items[1].id is not valid UTF-8: string fields must be UTF-8 text")
    # garbage that is no message at all
    code, detail = code_of(guarded.target, "Echo", b"\xff" * 64, token=TOKEN)
    assert (code, detail) == ("INVALID_ARGUMENT",
                              "the request is not a valid acecoder.v1.ScoreRequest message")
    assert guarded.metrics.count("Echo", "INVALID_ARGUMENT", 2) == 2
    # and in a stream, message by message
    with grpc.insecure_channel(guarded.target) as ch:
        stream = ch.stream_stream("/t.Svc/Stream")(
            iter([Score(items=[reward_pb2.ScoreItem()]).SerializeToString(), payload]),
            timeout=10, metadata=[("authorization", f"Bearer {TOKEN}")])
        with pytest.raises(grpc.RpcError) as err:
            list(stream)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_bad_field_walks_every_service_message() -> None:
    seed = synthesis_pb2.SynthesizeRequest(seed=synthesis_pb2.Seed(question="x"))
    raw = seed.SerializeToString().replace(b"x", b"\xc3")
    assert "seed.question" in describe_malformed(synthesis_pb2.SynthesizeRequest, raw)
    ex = executor_pb2.ExecuteBatchRequest(requests=[executor_pb2.ExecuteRequest(),
                                                    executor_pb2.ExecuteRequest(request_id="é")])
    raw = ex.SerializeToString().replace("é".encode(), b"\xe9\x00")
    assert bad_field(ex.DESCRIPTOR, raw) == "requests[1].request_id"
    assert bad_field(ex.DESCRIPTOR, ex.SerializeToString()) is None
    assert bad_field(ex.DESCRIPTOR, b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff") is None


def test_unauthenticated_calls_are_refused_and_counted(guarded: Loop) -> None:
    before = guarded.metrics.count("Echo", "UNAUTHENTICATED", 0)
    assert code_of(guarded.target, "Echo", b"\xff" * 64)[0] == "UNAUTHENTICATED"
    assert code_of(guarded.target, "Writes", b"", stream=True)[0] == "UNAUTHENTICATED"
    assert code_of(guarded.target, "Echo", b"", token="x" * 24)[0] == "UNAUTHENTICATED"
    assert guarded.metrics.count("Echo", "UNAUTHENTICATED", before + 2) == before + 2


def test_the_rate_is_counted_in_items(guarded: Loop) -> None:
    """Burst 5 at 1 item/s: a call of 20 items is refused outright (split it), one of 5 is
    let in and empties the bucket, and the next call, of any size, is refused with a
    retry-after."""
    guard = guarded.guard
    assert guard is not None and guard.limiter is not None
    guard.limiter._buckets.clear()
    twenty = Score(items=[reward_pb2.ScoreItem()] * 20).SerializeToString()
    code, detail = code_of(guarded.target, "Echo", twenty, token=TOKEN)
    assert code == "RESOURCE_EXHAUSTED" and "carries 20 items, more than the 5" in detail
    five = Score(items=[reward_pb2.ScoreItem()] * 5).SerializeToString()
    assert InfoOut.FromString(call(guarded.target, "Echo", five, token=TOKEN)).version == "5"
    with grpc.insecure_channel(guarded.target) as ch:
        with pytest.raises(grpc.RpcError) as err:
            ch.unary_unary("/t.Svc/Echo")(b"", timeout=10,
                                          metadata=[("authorization", f"Bearer {TOKEN}")])
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "over 1 items/s" in err.value.details()
    retry = dict(err.value.trailing_metadata() or ())["retry-after"]
    assert int(retry) == 1
    # a stream is charged per message: the bucket empties part-way and the stream ends
    guard.limiter._buckets.clear()
    one = Score(items=[reward_pb2.ScoreItem()]).SerializeToString()
    with grpc.insecure_channel(guarded.target) as ch:
        stream = ch.stream_stream("/t.Svc/Stream")(
            iter([one] * 50), timeout=10, metadata=[("authorization", f"Bearer {TOKEN}")])
        got = []
        with pytest.raises(grpc.RpcError) as err:
            for m in stream:
                got.append(m)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert 5 <= len(got) <= 6, len(got)
    # the health service is never limited
    with grpc.insecure_channel(guarded.target) as ch:
        for _ in range(10):
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
