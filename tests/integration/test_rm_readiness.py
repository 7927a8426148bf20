"""A real RM server while it loads and right after: a plain call fails with acecoder's own
RemoteUnavailable, a `wait_ready` client waits for the model, the model is warmed before the
server says it serves (the first budgeted ranking finds it warm), and `RewardClient.rerank`
reports where its tests came from, as `acecoder rerank` does."""

from __future__ import annotations

import re
import signal
import sys

import grpc
import httpx
import pytest

from acecoder.clients import RetryPolicy, RewardClient
from acecoder.remote_errors import RemoteUnavailable
from acecoder.server.rm.service import WARM_UP
from acecoder.serving import spawn_server

QUESTION, (GOOD, BAD) = WARM_UP
TESTS = ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]


def prefix_hits(metrics: str) -> float:
    text = httpx.get(metrics, timeout=10).text
    m = re.search(r'^acecoder_rm_prefix_cache_total\{result="hit"\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def test_a_loading_rm_server_is_waited_for_and_comes_up_warm(server, tiny_acecode_rm) -> None:  # type: ignore[no-untyped-def]
    init, _ = tiny_acecode_rm
    proc, m = spawn_server(
        [sys.executable, "-m", "acecoder.cli", "serve", "rm", "--port", "0", "--metrics-port",
         "0", "--model", str(init), "--executor", server.target],
        r"listening on (\S+) .*metrics on :(\d+)", "the RM server")
    target, metrics = m.group(1), f"http://127.0.0.1:{m.group(2)}/metrics"
    try:
        # Bound, the model still loading (seconds: torch alone takes that to import).
        with RewardClient(target, timeout=30, retry=RetryPolicy(attempts=2)) as plain:
            with pytest.raises(RemoteUnavailable) as err:
                plain.score([(QUESTION, GOOD)])
        assert type(err.value).__module__ == "acecoder.remote_errors"
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE

        with RewardClient(target, timeout=120, wait_ready=True) as rm:
            rm.wait_until_ready(timeout=120)
            assert prefix_hits(metrics) == 0.0
            # The first request after start-up, one item: its prefix is cached already (the
            # warm-up's), so the model ran before the server said it serves.
            rm.score([(QUESTION, GOOD)])
            assert prefix_hits(metrics) >= 1.0
            first = rm.rerank(QUESTION, [BAD, GOOD], tests=TESTS, budget=10.0)
            assert first.complete and first.best.index == 1
            assert first.tests_source == "given" and first.tests == tuple(TESTS)
            assert [r.pass_rate for r in first] == [1.0, 0.5]
            again = rm.rerank(QUESTION, [BAD, GOOD], budget=10.0)
            assert again.complete and again.tests_source == "none" and again.tests == ()
            assert all(r.pass_rate is None for r in again)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
