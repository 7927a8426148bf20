"""Faults from outside: a worker killed mid-request costs no request, and is replaced."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from acecoder.executor.config import ExecutorConfig
from acecoder.executor.pool import WorkerPool
from acecoder.executor.service import validate
from acecoder.executor.types import Verdict

SLOW = "import time\ndef f():\n    time.sleep(0.6)\n    return 1\n"


def test_worker_killed_mid_request_is_rerun_and_replaced() -> None:
    async def go() -> None:
        cfg = ExecutorConfig(workers=2)
        async with WorkerPool(cfg) as pool:
            before = set(pool.worker_pids())
            req = validate(cfg, program=SLOW, tests=["assert f() == 1"])
            task = asyncio.create_task(pool.execute(req))
            await asyncio.sleep(0.3)
            busy = [w for w in pool._workers.values() if w not in list(pool._idle._queue)]  # noqa: SLF001
            assert len(busy) == 1
            os.killpg(busy[0].pid, signal.SIGKILL)  # the whole jail, from outside
            result = await asyncio.wait_for(task, 30)
            assert result.verdicts == [Verdict.PASSED]  # rerun on the other worker
            for _ in range(100):
                if len(pool.worker_pids()) == 2 and set(pool.worker_pids()) != before:
                    break
                await asyncio.sleep(0.1)
            assert len(set(pool.worker_pids()) - before) == 1
            restarts = pool.metrics.worker_restarts.labels(reason="lost")._value.get()  # noqa: SLF001
            assert restarts == 1
            again = await pool.execute(validate(cfg, program=SLOW, tests=["assert f() == 1"]))
            assert again.all_passed

    asyncio.run(go())


@pytest.mark.slow
def test_every_worker_dying_gives_crashed_verdicts() -> None:
    async def go() -> None:
        cfg = ExecutorConfig(workers=1)
        async with WorkerPool(cfg) as pool:
            req = validate(cfg, program=SLOW, tests=["assert f() == 1", "assert f() == 1"])

            async def killer() -> None:
                for _ in range(2):
                    await asyncio.sleep(0.3)
                    for pid in pool.worker_pids():
                        os.killpg(pid, signal.SIGKILL)
                    for _ in range(100):  # wait for the replacement to start
                        await asyncio.sleep(0.1)
                        if pool.idle == 0 and pool.worker_pids():
                            break

            kill = asyncio.create_task(killer())
            result = await asyncio.wait_for(pool.execute(req), 60)
            await kill
            assert result.verdicts == [Verdict.CRASHED, Verdict.CRASHED]

    asyncio.run(go())


def test_workers_are_recycled() -> None:
    async def go() -> None:
        cfg = ExecutorConfig(workers=1, recycle_after=3)
        async with WorkerPool(cfg) as pool:
            first = pool.worker_pids()
            for _ in range(4):
                r = await pool.execute(validate(cfg, program="x = 1\n", tests=["assert x == 1"]))
                assert r.all_passed
            assert pool.worker_pids() != first
            assert pool.metrics.worker_restarts.labels(reason="recycled")._value.get() == 1  # noqa: SLF001

    asyncio.run(go())


@pytest.mark.slow
def test_a_worker_that_stops_answering_costs_one_request_and_is_replaced(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The worker enforces every limit itself; if it ever stops answering (stuck in a decoder,
    frozen from outside), the pool's own bound answers the request (CRASHED, saying why) and
    the worker is replaced, instead of the request waiting forever."""
    from acecoder.executor import pool as pool_module

    monkeypatch.setattr(pool_module, "_ANSWER_SLACK", 0.5)

    async def go() -> None:
        cfg = ExecutorConfig(workers=1, load_timeout=1.0)
        async with WorkerPool(cfg) as pool:
            (stuck,) = pool.worker_pids()
            req = validate(cfg, program=SLOW, tests=["assert f() == 1"], timeout=1.0)
            bound = pool_module.answer_bound(pool.job(req))
            assert bound == 2 * (1.0 + 1.0 + 1.0) + 0.5
            task = asyncio.create_task(pool.execute(req))
            await asyncio.sleep(0.2)
            os.killpg(stuck, signal.SIGSTOP)  # the whole jail freezes mid-request
            result = await asyncio.wait_for(task, bound + 10)
            assert result.verdicts == [Verdict.CRASHED]
            assert "did not answer within" in result.status_detail
            restarts = pool.metrics.worker_restarts.labels(reason="hung")._value.get()  # noqa: SLF001
            assert restarts == 1
            for _ in range(100):
                if pool.worker_pids() and stuck not in pool.worker_pids():
                    break
                await asyncio.sleep(0.1)
            again = await pool.execute(validate(cfg, program=SLOW, tests=["assert f() == 1"]))
            assert again.all_passed

    asyncio.run(go())
