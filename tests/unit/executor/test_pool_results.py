"""The pool checks what a worker reports before it becomes a result (WorkerPool._result), and
answers a request whose worker failed with CRASHED tests that say why (never an exception)."""

from __future__ import annotations

import pytest

from acecoder.executor.config import ExecutorConfig
from acecoder.executor.pool import WorkerPool
from acecoder.executor.service import validate
from acecoder.executor.types import Verdict

CONFIG = ExecutorConfig(workers=1)
REQ = validate(CONFIG, program="def f(x):\n    return x\n", tests=["assert f(1) == 1", "assert 1"])


def raw(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "status": "OK", "detail": "", "verdicts": [["PASSED", 0.1, "", ""], ["FAILED", 0.1, "A", "m"]],
        "stdout": b"", "stderr": b"", "stdout_truncated": False, "stderr_truncated": False,
        "duration": 0.2, "flags": [],
    }
    base.update(over)
    return base


def test_a_wellformed_report_becomes_the_result() -> None:
    r = WorkerPool(CONFIG)._result(REQ, raw())
    assert r.verdicts == [Verdict.PASSED, Verdict.FAILED] and r.tests[1].error_type == "A"


@pytest.mark.parametrize("bad", [
    {"verdicts": [["PASSED", 0.1, "", ""]]},                             # one verdict short
    {"verdicts": [["WON", 0, "", ""], ["PASSED", 0, "", ""]]},           # unknown verdict
    {"status": "GREAT"},
    {"verdicts": [["PASSED"], ["PASSED", 0, "", ""]]},
    {"verdicts": None},
])
def test_a_malformed_report_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError, IndexError, KeyError)):
        WorkerPool(CONFIG)._result(REQ, raw(**bad))


def test_a_lost_request_is_answered_not_raised() -> None:
    r = WorkerPool(CONFIG)._lost_result(REQ, "the sandbox failed: boom")
    assert r.verdicts == [Verdict.CRASHED, Verdict.CRASHED]
    assert r.status_detail == "the sandbox failed: boom" == r.tests[0].error_message


def test_a_request_s_capture_size_replaces_the_server_s() -> None:
    pool = WorkerPool(CONFIG)
    assert pool.job(REQ)["output_bytes"] == CONFIG.output_bytes
    big = validate(CONFIG, program="print(1)", tests=[], stdio=[("", "")], capture_bytes=1 << 24)
    assert pool.job(big)["output_bytes"] == 1 << 24


def test_workers_go_to_waiting_requests_first_come_first_served() -> None:
    """A request that finds a worker free takes it at once only when no one is waiting: a
    worker handed back while requests wait goes to the first of them, never to one that
    arrives at that moment."""
    import asyncio

    async def scenario() -> list[str]:
        pool = WorkerPool(CONFIG)
        got: list[str] = []

        async def take(name: str) -> None:
            worker = await pool._acquire(None)
            got.append(name)
            pool._idle.put_nowait(worker)  # done with it at once

        first = asyncio.create_task(take("waiting-1"))
        second = asyncio.create_task(take("waiting-2"))
        await asyncio.sleep(0)  # both wait: no worker yet
        pool._idle.put_nowait(object())  # type: ignore[arg-type]
        await take("arrived-now")  # comes after both, though a worker is in the queue
        await asyncio.gather(first, second)
        alone = WorkerPool(CONFIG)
        alone._idle.put_nowait("w")  # type: ignore[arg-type]
        assert await alone._acquire(None) == "w" and alone._waiting == 0
        return got

    assert asyncio.run(scenario()) == ["waiting-1", "waiting-2", "arrived-now"]
