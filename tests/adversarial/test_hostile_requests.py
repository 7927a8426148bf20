"""Hostile requests at the executor's front door, in one sequence on one server: a request
refused before work (no token, a message that does not parse, a batch over the client's
burst) runs no program at all, and the honest request after them is answered exactly as it
is alone."""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Iterator

import grpc
import httpx
import pytest

from acecoder.clients import ExecutorClient, RetryPolicy
from acecoder.security import ClientSecurity
from acecoder.serving import spawn_server
from acecoder.v1 import executor_pb2

TOKEN = "front-door-0123456789abcdef"
PROGRAM = "def add(a, b):\n    return a + b\n"
TESTS = ["assert add(1, 2) == 3", "assert add(2, 2) == 5"]


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    tokens = tmp_path_factory.mktemp("front") / "tokens"
    tokens.write_text(f"client {TOKEN}\n")
    cmd = [sys.executable, "-m", "acecoder.cli", "serve", "executor", "--port", "0",
           "--workers", "1", "--metrics-port", "0", "--auth-tokens", str(tokens),
           "--rate-limit", "0.5", "--rate-burst", "4"]
    proc, m = spawn_server(cmd, r"listening on (\S+) .*metrics on :(\d+)", "the executor")
    yield m.group(1), f"http://127.0.0.1:{m.group(2)}/metrics"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def programs_run(metrics: str) -> float:
    text = httpx.get(metrics, timeout=30).text
    return sum(float(n) for n in re.findall(
        r"^acecoder_executor_programs_total\{[^}]*\} (\S+)", text, re.M))


def raw(target: str, method: str, payload: bytes, token: str | None) -> str:
    meta = [("authorization", f"Bearer {token}")] if token else None
    with grpc.insecure_channel(target) as ch:
        try:
            if method.endswith("Batch"):
                list(ch.unary_stream(method)(payload, timeout=30, metadata=meta))
            else:
                ch.unary_unary(method)(payload, timeout=30, metadata=meta)
        except grpc.RpcError as exc:
            return exc.code().name
    return "OK"


def test_refused_requests_run_nothing_and_change_nothing_after(front: tuple[str, str]) -> None:
    target, metrics = front
    with ExecutorClient(target, timeout=60, retry=RetryPolicy(attempts=1),
                        security=ClientSecurity(token=TOKEN)) as ex:
        alone = ex.execute(PROGRAM, TESTS)
    assert [v.value for v in alone.verdicts] == ["PASSED", "FAILED"]
    before = programs_run(metrics)
    request = executor_pb2.ExecuteRequest(program=PROGRAM.encode(),
                                          tests=[t.encode() for t in TESTS])
    one = request.SerializeToString()
    batch = executor_pb2.ExecuteBatchRequest(requests=[request] * 5).SerializeToString()
    execute, execute_batch = "/acecoder.v1.Executor/Execute", "/acecoder.v1.Executor/ExecuteBatch"
    chunked = "/acecoder.v1.Executor/ExecuteBatchChunked"
    refused = [
        raw(target, execute, one, None),  # no token: the message is never even read
        raw(target, execute, one, "x" * 30),  # a token not listed
        raw(target, execute_batch, batch, None),
        raw(target, execute, one[:-3] + b"\xff\xff\xff", TOKEN),  # does not parse
        raw(target, execute, one + b"\x0a\x02\xff\xfe", TOKEN),  # request_id not UTF-8
        raw(target, execute_batch, batch, TOKEN),  # 5 programs, over the burst of 4
        raw(target, chunked, batch, None),
        raw(target, chunked, batch, TOKEN),  # charged by its programs too
    ]
    assert refused == ["UNAUTHENTICATED", "UNAUTHENTICATED", "UNAUTHENTICATED",
                       "INVALID_ARGUMENT", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED",
                       "UNAUTHENTICATED", "RESOURCE_EXHAUSTED"]
    assert programs_run(metrics) == before, "a refused request ran a program"
    # the honest request after them (its bucket still holds 3): answered exactly as alone
    with ExecutorClient(target, timeout=60, retry=RetryPolicy(attempts=1),
                        security=ClientSecurity(token=TOKEN)) as ex:
        after = ex.execute(PROGRAM, TESTS)
    assert [(t.verdict, t.error_type) for t in after.tests] == \
        [(t.verdict, t.error_type) for t in alone.tests]
    assert after.status == alone.status and after.flags == alone.flags
    assert programs_run(metrics) == before + 1
