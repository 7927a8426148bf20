"""The executor's gRPC service, on loopback: contract, bad input, admission, deadlines, drain."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from acecoder.clients import AsyncExecutorClient, ExecutorClient, Program, RetryPolicy
from acecoder.executor.types import ProgramStatus, Verdict
from acecoder.v1 import executor_pb2 as pb
from acecoder.v1 import executor_pb2_grpc as pb_grpc
from tests.conftest import start_server, stop_server

GOOD = "def f(x):\n    return 2 * x\n"


def test_execute_reports_every_verdict_kind(client) -> None:  # type: ignore[no-untyped-def]
    program = ("import time, ctypes\n"
               "def f(x):\n    if x == 'sleep': time.sleep(5)\n    if x == 'crash': ctypes.string_at(0)\n"
               "    if x == 'mem': return bytearray(1 << 40)\n    if x == 'boom': raise KeyError(x)\n"
               "    return 2 * x\n")
    tests = ["assert f(2) == 4", "assert f(2) == 5", "f('boom')", "f('sleep')", "f('mem')",
             "f('crash')", "assert f(1) == 2"]
    r = client.execute(program, tests, timeout=0.5, memory_mb=256, request_id="kinds")
    assert r.request_id == "kinds"
    assert r.verdicts == [Verdict.PASSED, Verdict.FAILED, Verdict.ERROR, Verdict.TIMEOUT,
                          Verdict.MEMORY, Verdict.CRASHED, Verdict.PASSED]
    assert r.tests[2].error_type == "KeyError" and "boom" in r.tests[2].error_message
    assert r.pass_rate == pytest.approx(2 / 7) and not r.all_passed
    assert r.tests[3].duration >= 0.5
    assert r.jail in ("firejail", "bubblewrap", "namespaces")


def test_program_status_and_skipped(client) -> None:  # type: ignore[no-untyped-def]
    r = client.execute("def f(:\n", ["assert f(1)", "assert f(2)"])
    assert r.status is ProgramStatus.SYNTAX_ERROR and r.verdicts == [Verdict.ERROR] * 2
    assert r.pass_rate == 0.0
    r = client.execute("raise ValueError('at import')\n", ["assert True"])
    assert r.status is ProgramStatus.LOAD_ERROR and "at import" in r.status_detail
    r = client.execute("import sys\nsys.exit(3)\n", ["assert True"])
    assert r.status is ProgramStatus.EXITED_EARLY and r.verdicts == [Verdict.ERROR]
    r = client.execute("while True: pass\n", ["assert True"], timeout=0.5)
    assert r.status is ProgramStatus.LOAD_TIMEOUT and r.verdicts == [Verdict.TIMEOUT]
    r = client.execute(GOOD, ["assert True"], setup="import no_such_module_anywhere")
    assert r.status in (ProgramStatus.LOAD_ERROR, ProgramStatus.SETUP_ERROR)
    r = client.execute(GOOD, ["assert f(1) == 2", "assert f(1) == 3", "assert f(1) == 2"],
                       stop_on_first_failure=True)
    assert r.verdicts == [Verdict.PASSED, Verdict.FAILED, Verdict.SKIPPED]


def test_semantics_match_plain_python(client) -> None:  # type: ignore[no-untyped-def]
    program = (
        "import math, collections\nfrom typing import List\nCONST = [1, 2]\ncalls = []\n"
        "class P:\n    def __init__(self, v): self.v = v\n    def __eq__(self, o): return self.v == o.v\n"
        "    def get(self): return self.v\n"
        "def f(xs: List[int]) -> List[int]:\n    calls.append(1)\n    return sorted(xs)\n"
        "def inplace(xs):\n    xs.sort()\n"
        "def gen(n):\n    yield from range(n)\n"
        "def counter(s):\n    return collections.Counter(s)\n"
        "def fail(x):\n    raise ValueError('nope')\n"
        "def apply(fn, x):\n    return fn(x)\n"
        "print('hello from the program')\n"
    )
    tests = [
        "assert f([3, 1, 2]) == [1, 2, 3]",
        "assert len(calls) == 1",                         # state persists across tests
        "assert CONST == [1, 2]",
        "xs = [3, 2, 1]\ninplace(xs)\nassert xs == [1, 2, 3]",  # in-place changes are seen
        "assert list(gen(3)) == [0, 1, 2]",
        "assert counter('aab') == {'a': 2, 'b': 1}",
        "assert math.isclose(sum(f([0.1, 0.2])), 0.3)",
        "try:\n    fail(1)\n    assert False\nexcept ValueError as e:\n    assert 'nope' in str(e)",
        "assert P(1).get() == 1",
        "assert apply(lambda v: v * 10, 4) == 40",
        "assert isinstance(f([1]), list) and type(f([])) is list",
        "def check(candidate):\n    assert candidate([2, 1]) == [1, 2]\ncheck(f)",
    ]
    r = client.execute(program, tests)
    assert r.all_passed, [(t.verdict, t.error_type, t.error_message) for t in r.tests]
    assert "hello from the program" in r.stdout
    # Where Python would let the program decide, the executor refuses, and says why: two of
    # the program's objects (neither plain data) cannot be compared.
    r = client.execute(program, ["assert P(1) == P(1)"])
    assert r.verdicts == [Verdict.ERROR] and "two of the program's objects" in r.tests[0].error_message


@pytest.mark.parametrize(("fields", "message"), [
    pytest.param({"program": b"\xff\xfe bad"}, "not valid UTF-8", id="invalid-utf8-program"),
    pytest.param({"tests": [b"assert 1", b"\xc3\x28"]}, "tests[1] is not valid UTF-8",
                 id="invalid-utf8-test"),
    pytest.param({"program": b"x" * ((1 << 20) + 1)}, "max_program_bytes", id="program-too-big"),
    pytest.param({"tests": [b"assert 1"] * 1001}, "max_tests", id="too-many-tests"),
    pytest.param({"tests": []}, "tests is empty", id="no-tests"),
    pytest.param({"tests": [b"   "]}, "tests[0] is empty", id="blank-test"),
    pytest.param({"timeout_seconds": 0.0}, "timeout_seconds must be a positive", id="zero-timeout"),
    pytest.param({"timeout_seconds": -1.0}, "timeout_seconds must be a positive", id="negative-timeout"),
    pytest.param({"timeout_seconds": float("nan")}, "timeout_seconds must be a positive", id="nan-timeout"),
    pytest.param({"timeout_seconds": 1e9}, "exceeds the limit", id="huge-timeout"),
    pytest.param({"memory_limit_mb": 0}, "memory_limit_mb must be between", id="zero-memory"),
    pytest.param({"memory_limit_mb": -5}, "memory_limit_mb must be between", id="negative-memory"),
])
def test_bad_input_is_invalid_argument(server, fields, message) -> None:  # type: ignore[no-untyped-def]
    req = pb.ExecuteRequest(program=GOOD.encode(), tests=[b"assert f(1) == 2"])
    for key, value in fields.items():
        if key == "tests":
            del req.tests[:]
            req.tests.extend(value)
        else:
            setattr(req, key, value)
    with grpc.insecure_channel(server.target, options=[
            ("grpc.max_send_message_length", 1 << 26)]) as ch:
        stub = pb_grpc.ExecutorStub(ch)
        with pytest.raises(grpc.RpcError) as err:
            stub.Execute(req, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in err.value.details()
        batch = pb.ExecuteBatchRequest(requests=[pb.ExecuteRequest(program=b"x=1", tests=[b"assert x"]), req])
        for method in (stub.ExecuteBatch, stub.ExecuteBatchChunked):
            with pytest.raises(grpc.RpcError) as err:
                list(method(batch, timeout=30))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "requests[1]" in err.value.details()


def test_batch_streams_results_as_they_finish(client) -> None:  # type: ignore[no-untyped-def]
    slow = Program("import time\ndef f(x):\n    time.sleep(1.5)\n    return x\n", ["assert f(1) == 1"])
    fast = [Program(GOOD, [f"assert f({i}) == {2 * i}"], request_id=f"fast-{i}") for i in range(6)]
    order = [r.index for r in client.execute_batch([slow, *fast])]
    assert sorted(order) == list(range(7))
    assert order[-1] == 0  # the slow one came back last, the others did not wait for it


MIXED = [
    Program(GOOD, ["assert f(1) == 2", "assert f(2) == 4"]),
    Program(GOOD, ["assert f(1) == 3"]),
    Program("def f(:\n", ["assert f(1) == 2"]),
    Program("def f(x):\n    raise KeyError(x)\n", ["assert f(1) == 2"]),
    Program("import sys\nsys.exit(0)\n", ["assert f(1) == 2"]),
    Program("def f(x):\n    return [x] * 3\n", ["assert f(1) == [1, 1, 1]", "assert f(2) == []"]),
    Program(GOOD, ["assert f(3) == 6"]),
    Program("def f(x):\n    print('all tests passed')\n    return x\n", ["assert f(1) == 2"]),
]


def _chunked(server, programs: list[Program], linger: float | None = None) -> list[list[pb.ExecuteResponse]]:  # type: ignore[no-untyped-def]
    """ExecuteBatchChunked's messages, each as its list of results."""
    req = pb.ExecuteBatchRequest(requests=[p.to_proto() for p in programs])
    if linger is not None:
        req.linger_seconds = linger
    with grpc.insecure_channel(server.target) as ch:
        return [list(m.results) for m in pb_grpc.ExecutorStub(ch).ExecuteBatchChunked(req, timeout=60)]


def _answer(m: pb.ExecuteResponse) -> tuple[object, ...]:
    return (m.status, m.status_detail, [(t.verdict, t.error_type) for t in m.results],
            m.pass_rate, m.all_passed, sorted(m.flags))


@pytest.mark.parametrize("linger", [0.5, 0.0, None])
def test_a_chunked_batch_answers_every_request_once_as_execute_batch_does(server, linger) -> None:  # type: ignore[no-untyped-def]
    """The same results as ExecuteBatch's, each request's once, several to a message where
    they finish within the linger of each other (0: only those that finished together)."""
    req = pb.ExecuteBatchRequest(requests=[p.to_proto() for p in MIXED])
    with grpc.insecure_channel(server.target) as ch:
        alone = {m.index: _answer(m) for m in pb_grpc.ExecutorStub(ch).ExecuteBatch(req, timeout=60)}
    messages = _chunked(server, MIXED, linger)
    got = [m.index for chunk in messages for m in chunk]
    assert sorted(got) == list(range(len(MIXED)))  # every one, once
    assert {m.index: _answer(m) for chunk in messages for m in chunk} == alone
    assert all(chunk for chunk in messages)  # no empty message
    if linger == 0.5:  # eight programs of milliseconds on two workers: well within 0.5 s
        assert len(messages) < len(MIXED), [len(c) for c in messages]


def test_a_chunk_holds_no_result_back_for_a_slow_one(server) -> None:  # type: ignore[no-untyped-def]
    """A finished result waits for others at most the linger: the fast programs' results do
    not wait for the slow one, and the last one does not wait out a linger alone."""
    slow = Program("import time\ndef f(x):\n    time.sleep(1.5)\n    return x\n", ["assert f(1) == 1"])
    fast = [Program(GOOD, [f"assert f({i}) == {2 * i}"]) for i in range(6)]
    messages = _chunked(server, [slow, *fast], linger=0.2)
    assert [m.index for m in messages[-1]] == [0]  # alone, last
    assert sorted(m.index for chunk in messages[:-1] for m in chunk) == list(range(1, 7))
    started = time.monotonic()
    messages = _chunked(server, fast[:3], linger=1.0)
    assert time.monotonic() - started < 1.0  # all three finished: nothing left to wait for
    assert sorted(m.index for chunk in messages for m in chunk) == [0, 1, 2]


def test_programs_that_bloat_their_results_cannot_bloat_a_message(server) -> None:  # type: ignore[no-untyped-def]
    """Programs whose results are as large as they can make them (a thousand tests, each an
    error with a long message, and output to the cap), finishing together under a long
    linger: every result arrives, whole; no message holds more than 4 MiB but a single
    result."""
    from acecoder.executor.servicer import CHUNK_BYTES

    bloat = Program("import sys\nsys.stdout.write('o' * 200000)\n"
                    "def f(x):\n    raise ValueError('m' * 20000)\n",
                    [f"assert f({i}) == 0" for i in range(1000)])
    messages = _chunked(server, [bloat] * 3 + [Program(GOOD, ["assert f(1) == 2"])] * 3,
                        linger=1.0)
    got = sorted(m.index for chunk in messages for m in chunk)
    assert got == list(range(6))
    for chunk in messages:
        assert len(chunk) == 1 or sum(m.ByteSize() for m in chunk) <= CHUNK_BYTES
    big = [m for chunk in messages for m in chunk if m.index < 3]
    assert all(len(m.results) == 1000 and m.stdout_truncated for m in big)
    assert all(t.error_type == "ValueError" for m in big for t in m.results)
    assert sum(m.ByteSize() for m in big) > CHUNK_BYTES  # (so they could not go together)


@pytest.mark.parametrize("linger", [-0.001, 1.5, float("nan"), float("inf")])
def test_a_linger_out_of_range_is_invalid_argument(server, linger) -> None:  # type: ignore[no-untyped-def]
    before = _programs_run(server)
    with pytest.raises(grpc.RpcError) as err:
        _chunked(server, [Program(GOOD, ["assert f(1) == 2"])], linger)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "linger_seconds must be between 0 and 1" in err.value.details()
    assert _programs_run(server) == before


def _programs_run(server) -> float:  # type: ignore[no-untyped-def]
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics",
                                  timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("acecoder_executor_programs_total{"))


def test_a_batch_its_client_stops_reading_is_cancelled(server, client) -> None:  # type: ignore[no-untyped-def]
    """The client's stream is read on the calling thread (a single-threaded unary-stream
    call): dropping it must still cancel the RPC, and the server the programs left."""
    slow = [Program("import time\ndef f(x):\n    time.sleep(1)\n    return x\n",
                    ["assert f(1) == 1"], request_id=f"slow-{i}") for i in range(10)]
    before = _programs_run(server)
    results = client.execute_batch(slow)
    first = next(results)
    assert first.all_passed
    results.close()  # the consumer walks away after one of ten
    time.sleep(3.0)
    ran = _programs_run(server) - before
    assert 1 <= ran <= 4, ran  # the ones in flight finish; the rest never start
    assert client.execute(GOOD, ["assert f(1) == 2"]).all_passed  # the workers serve on


def test_info_health_and_reflection(server, client) -> None:  # type: ignore[no-untyped-def]
    info = client.info()
    assert info.workers == 2 and info.max_tests == 1000 and info.max_program_bytes == 1 << 20
    assert info.jail in ("firejail", "bubblewrap", "namespaces")
    with grpc.insecure_channel(server.target) as ch:
        health = health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service="acecoder.v1.Executor"), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)
        replies = list(refl.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
        names = {s.name for s in replies[0].list_services_response.service}
        assert "acecoder.v1.Executor" in names and "grpc.health.v1.Health" in names


def test_metrics_endpoint(server, client) -> None:  # type: ignore[no-untyped-def]
    client.execute(GOOD, ["assert f(1) == 2", "assert f(1) == 3"])
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    for name in ("acecoder_executor_requests_total", "acecoder_executor_verdicts_total",
                 "acecoder_executor_rpc_latency_seconds_bucket", "acecoder_executor_queue_depth",
                 "acecoder_executor_worker_restarts_total", "acecoder_executor_workers"):
        assert name in text
    assert 'acecoder_executor_verdicts_total{verdict="FAILED"}' in text


def test_async_client(server) -> None:  # type: ignore[no-untyped-def]
    async def go() -> list[float]:
        async with AsyncExecutorClient(server.target) as c:
            one = await c.execute(GOOD, ["assert f(2) == 4"])
            assert one.all_passed
            rates = [r.pass_rate async for r in c.execute_batch(
                [Program(GOOD, ["assert f(1) == 2", "assert f(1) == 0"])] * 3)]
            info = await c.info()
            assert info.workers == 2
            return rates
    assert asyncio.run(go()) == [0.5, 0.5, 0.5]


@pytest.mark.slow
def test_queue_full_is_resource_exhausted_and_expired_work_is_not_started() -> None:
    s = start_server("--max-queue", "1", workers=1)
    try:
        sleeper = "import time\ndef f():\n    time.sleep(1.0)\n    return 1\n"
        no_retry = RetryPolicy(attempts=1)
        results: list[object] = []

        def call() -> None:
            with ExecutorClient(s.target, retry=no_retry) as c:
                try:
                    results.append(c.execute(sleeper, ["assert f() == 1"]))
                except grpc.RpcError as exc:
                    results.append(exc.code())

        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
            time.sleep(0.05)
        for t in threads:
            t.join()
        codes = [r for r in results if isinstance(r, grpc.StatusCode)]
        assert codes and set(codes) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert len(results) - len(codes) == 2  # one running, one queued

        # A request whose deadline passes while queued is never started.
        marker = "/tmp/acecoder-deadline-marker"
        with ExecutorClient(s.target, retry=no_retry) as c:
            blocker = threading.Thread(target=lambda: c.execute(sleeper, ["assert f() == 1"]))
            blocker.start()
            time.sleep(0.2)
            with pytest.raises(grpc.RpcError) as err:
                c.execute(f"open('{marker}', 'w')\n", ["assert True"], deadline=0.3)
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            blocker.join()
            time.sleep(0.3)
        import os
        assert not os.path.exists(marker)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{s.metrics_port}/metrics").read().decode()
        assert 'acecoder_executor_rejected_total{reason="queue_full"}' in metrics
    finally:
        assert stop_server(s) == 0


def test_sigterm_drains_in_flight_work() -> None:
    s = start_server(workers=1)
    try:
        with ExecutorClient(s.target, retry=RetryPolicy(attempts=1)) as c:
            out: list[object] = []
            t = threading.Thread(target=lambda: out.append(c.execute(
                "import time\ndef f():\n    time.sleep(1.5)\n    return 1\n", ["assert f() == 1"])))
            t.start()
            time.sleep(0.5)
            import signal
            s.proc.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            with grpc.insecure_channel(s.target) as ch:
                health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
                with pytest.raises(grpc.RpcError) as err:
                    pb_grpc.ExecutorStub(ch).Execute(
                        pb.ExecuteRequest(program=b"x=1", tests=[b"assert x"]), timeout=5)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            t.join()
            assert out and out[0].all_passed  # type: ignore[union-attr]
    finally:
        assert stop_server(s) == 0
