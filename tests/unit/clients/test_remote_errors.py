"""A failed call raises acecoder's own error for its status, still a grpc.RpcError: against a
tiny real gRPC server that answers each status code, and an acecoder server (the shared
interceptor) that rate-limits and calls another service."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from acecoder import errors
from acecoder.clients import AsyncExecutorClient, ExecutorClient, Program, RetryPolicy
from acecoder.interceptor import ServiceInterceptor
from acecoder.remote_errors import (
    RemoteDeadlineExceeded,
    RemoteError,
    RemoteFailedPrecondition,
    RemoteInternal,
    RemoteInvalidArgument,
    RemoteNotFound,
    RemotePermissionDenied,
    RemoteResourceExhausted,
    RemoteUnauthenticated,
    RemoteUnavailable,
    from_grpc_error,
    retry_after,
)
from acecoder.security import Guard, RateLimiter
from acecoder.server.rm.config import RewardConfig
from acecoder.server.rm.service import RewardService
from acecoder.v1 import executor_pb2 as pb
from acecoder.v1 import executor_pb2_grpc as pb_grpc
from tests.unit.server.rm.test_rm_service import LengthBackend

ONCE = RetryPolicy(attempts=1)
CLASSES: dict[str, type[RemoteError]] = {
    "INVALID_ARGUMENT": RemoteInvalidArgument, "NOT_FOUND": RemoteNotFound,
    "FAILED_PRECONDITION": RemoteFailedPrecondition,
    "RESOURCE_EXHAUSTED": RemoteResourceExhausted, "UNAVAILABLE": RemoteUnavailable,
    "UNAUTHENTICATED": RemoteUnauthenticated, "PERMISSION_DENIED": RemotePermissionDenied,
    "DEADLINE_EXCEEDED": RemoteDeadlineExceeded, "INTERNAL": RemoteInternal,
    "UNKNOWN": RemoteError, "ABORTED": RemoteError, "ALREADY_EXISTS": RemoteError,
    "OUT_OF_RANGE": RemoteError, "UNIMPLEMENTED": RemoteError, "DATA_LOSS": RemoteError,
}
LOCAL: dict[str, type[errors.AcecoderError]] = {
    "INVALID_ARGUMENT": errors.InvalidArgument, "NOT_FOUND": errors.NotFound,
    "FAILED_PRECONDITION": errors.FailedPrecondition,
    "RESOURCE_EXHAUSTED": errors.ResourceExhausted, "UNAVAILABLE": errors.Unavailable,
    "UNAUTHENTICATED": errors.Unauthenticated, "DEADLINE_EXCEEDED": errors.DeadlineExceeded,
}


class Answers(pb_grpc.ExecutorServicer):
    """Aborts with the status its request id names (`SLOW` outlives any short deadline); a
    batch sends one result first, then aborts the same way."""

    def Execute(self, request, context):  # type: ignore[no-untyped-def]
        self.answer(request.request_id, context)

    def ExecuteBatch(self, request, context):  # type: ignore[no-untyped-def]
        yield pb.ExecuteResponse(request_id="first", pass_rate=1.0, status=pb.OK,
                                 results=[pb.TestResult(verdict=pb.PASSED)])
        self.answer(request.requests[0].request_id, context)

    @staticmethod
    def answer(name: str, context: Any) -> None:
        if name == "SLOW":
            time.sleep(3)
            return
        if name == "RESOURCE_EXHAUSTED":
            context.set_trailing_metadata((("retry-after", "7"), ("other", "x")))
        context.abort(grpc.StatusCode[name], f"said {name}")


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(4))
    pb_grpc.add_ExecutorServicer_to_server(Answers(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


def check(err: BaseException, name: str) -> None:
    assert type(err) is CLASSES[name]
    assert isinstance(err, grpc.RpcError) and isinstance(err, errors.AcecoderError)
    assert isinstance(err, LOCAL.get(name, RemoteError))
    assert isinstance(err, ValueError) == (name == "INVALID_ARGUMENT")
    assert err.code() == grpc.StatusCode[name] and err.grpc_code == name  # type: ignore[attr-defined]
    assert err.details() == f"said {name}" == str(err)  # type: ignore[attr-defined]
    assert isinstance(err.error, grpc.RpcError) and err.error.code() == err.code()  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_each_status_is_its_own_class_on_every_kind_of_call(target: str, name: str) -> None:
    with ExecutorClient(target, retry=ONCE, timeout=10) as c:
        with pytest.raises(RemoteError) as err:
            c.execute("x = 1", ["assert x"], request_id=name)
        check(err.value, name)
        got = []
        with pytest.raises(RemoteError) as err:
            for r in c.execute_batch([Program("x = 1", ["assert x"], request_id=name)]):
                got.append(r.request_id)
        check(err.value, name)
        assert got == ["first"]  # a stream fails after what it delivered

    async def both() -> tuple[BaseException, BaseException]:
        async with AsyncExecutorClient(target, retry=ONCE, timeout=10) as c:
            with pytest.raises(RemoteError) as unary:
                await c.execute("x = 1", ["assert x"], request_id=name)
            with pytest.raises(RemoteError) as batch:
                async for _ in c.execute_batch([Program("x", ["assert x"], request_id=name)]):
                    pass
            return unary.value, batch.value

    for exc in asyncio.run(both()):
        check(exc, name)


def test_resource_exhausted_carries_the_servers_retry_after(target: str) -> None:
    with ExecutorClient(target, retry=ONCE) as c, \
            pytest.raises(errors.ResourceExhausted) as err:
        c.execute("x = 1", ["assert x"], request_id="RESOURCE_EXHAUSTED")
    assert err.value.retry_after == 7.0
    assert dict(err.value.trailing_metadata())["retry-after"] == "7"  # type: ignore[attr-defined]
    assert retry_after([("retry-after", b"2.5")]) == 2.5
    assert retry_after([("retry-after", "soon")]) is None
    assert retry_after([("retry-after", "-1")]) is None
    assert retry_after(None) is None


def test_a_deadline_that_passes_and_retries_that_run_out(target: str) -> None:
    with ExecutorClient(target, retry=ONCE) as c, pytest.raises(errors.DeadlineExceeded) as err:
        c.execute("x = 1", ["assert x"], request_id="SLOW", deadline=0.2)
    assert type(err.value) is RemoteDeadlineExceeded
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
    fast = RetryPolicy(attempts=3, initial_backoff=0.001, max_backoff=0.01)
    with ExecutorClient(target, retry=fast) as c, pytest.raises(errors.Unavailable) as err:
        c.execute("x = 1", ["assert x"], request_id="UNAVAILABLE")
    assert type(err.value) is RemoteUnavailable and err.value.__cause__ is not None


def test_mapping_an_error_twice_keeps_it() -> None:
    class Bare(grpc.RpcError):
        """An RpcError without a status (grpc raises a few)."""

    bare = from_grpc_error(Bare())
    assert type(bare) is RemoteError and bare.code() == grpc.StatusCode.UNKNOWN
    assert bare.details() is None and bare.trailing_metadata() == ()
    assert bare.debug_error_string() == "" and str(bare) == "UNKNOWN"
    assert from_grpc_error(bare) is bare


# -- an acecoder server: the interceptor's retry-after, and a called service's status ---------

class Upstream:
    """A grpc.aio Executor server with the shared interceptor, whose Execute calls `below`
    (an executor) with the same request id and lets whatever it raises escape."""

    def __init__(self, below: str, guard: Guard | None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        class Calls(pb_grpc.ExecutorServicer):
            async def Execute(self, request, context):  # type: ignore[no-untyped-def]
                async with AsyncExecutorClient(below, retry=ONCE) as c:
                    await c.execute("x = 1", ["assert x"], request_id=request.request_id)
                return pb.ExecuteResponse()

        async def start() -> tuple[grpc.aio.Server, int]:
            server = grpc.aio.server(interceptors=[ServiceInterceptor(Metrics(), guard=guard)])
            pb_grpc.add_ExecutorServicer_to_server(Calls(), server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            return server, port

        self.server, port = self.run(start())
        self.target = f"127.0.0.1:{port}"

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.run(self.server.stop(None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


class Metrics:
    class _Any:
        def labels(self, **kw: str) -> Metrics._Any:
            return self

        def inc(self, *a: float) -> None:
            pass

        def observe(self, *a: float) -> None:
            pass

    requests = _Any()
    rpc_latency = _Any()


@pytest.fixture
def upstream(target: str) -> Iterator[Callable[[Guard | None], Upstream]]:
    made: list[Upstream] = []

    def make(guard: Guard | None) -> Upstream:
        made.append(Upstream(target, guard))
        return made[-1]

    yield make
    for u in made:
        u.close()


def test_an_acecoder_servers_rate_limit_reaches_the_client_with_retry_after(
        upstream: Callable[[Guard | None], Upstream]) -> None:
    server = upstream(Guard([], RateLimiter(0.1, 1)))
    with ExecutorClient(server.target, retry=ONCE) as c:
        with pytest.raises(RemoteError):  # let in: the service below refuses it
            c.execute("x = 1", ["assert x"], request_id="NOT_FOUND")
        with pytest.raises(errors.ResourceExhausted) as err:
            c.execute("x = 1", ["assert x"], request_id="NOT_FOUND")
    assert type(err.value) is RemoteResourceExhausted
    assert err.value.retry_after is not None and 1 <= err.value.retry_after <= 10


@pytest.mark.parametrize("name", ["UNAUTHENTICATED", "INVALID_ARGUMENT", "UNAVAILABLE"])
def test_a_called_services_status_is_not_passed_on(
        upstream: Callable[[Guard | None], Upstream], name: str) -> None:
    """UNAUTHENTICATED from the service below is about our token, not the caller's."""
    server = upstream(None)
    with ExecutorClient(server.target, retry=ONCE) as c, pytest.raises(RemoteInternal) as err:
        c.execute("x = 1", ["assert x"], request_id=name)
    assert err.value.details() == (f"internal error ({CLASSES[name].__name__}); the server's "
                                   "log has the details")


# -- the RM service maps its executor's errors -------------------------------------------------

@pytest.mark.parametrize(("name", "raised", "message"), [
    ("INVALID_ARGUMENT", errors.InvalidArgument, "the executor refused the tests: said"),
    ("UNAUTHENTICATED", errors.Unavailable, "failed: said UNAUTHENTICATED"),
    ("RESOURCE_EXHAUSTED", errors.Unavailable, "failed: said RESOURCE_EXHAUSTED"),
])
def test_the_rm_service_maps_its_executors_errors_to_its_own(
        target: str, name: str, raised: type[Exception], message: str) -> None:
    """An executor that refuses the tests is the caller's bad request; any other failure of
    it makes the RM UNAVAILABLE for tests (never the executor's own status)."""
    class Below(pb_grpc.ExecutorServicer):
        def ExecuteBatch(self, request, context):  # type: ignore[no-untyped-def]
            Answers.answer(name, context)

    server = grpc.server(futures.ThreadPoolExecutor(2))
    pb_grpc.add_ExecutorServicer_to_server(Below(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    async def main() -> None:
        service = RewardService(RewardConfig(executor=f"127.0.0.1:{port}"),
                                backend=LengthBackend())
        await service.start()
        try:
            with pytest.raises(raised, match=message) as err:
                await service.rerank("q", ["def f(): pass"], tests=["assert f() is None"])
            assert not isinstance(err.value, RemoteError)
        finally:
            await service.close()

    try:
        asyncio.run(main())
    finally:
        server.stop(0)
