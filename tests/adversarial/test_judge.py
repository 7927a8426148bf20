"""The judge: each slot's test process that runs suites of plain checks for many requests.

What must hold, whatever the program does: a request judged there is answered exactly as a
fresh test process answers it (verdicts, error types and messages, status, output, flags); a
suite that reads anything but the program's functions and the pure builtins goes to a fresh
test process without loading the program twice; and nothing a program does to the judge (a
reply that hangs its decoder, signals, huge values) reaches the next request."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from acecoder.datasets import broken, load_humaneval, load_mbpp
from acecoder.executor.config import ExecutorConfig
from acecoder.executor.pool import WorkerPool
from acecoder.executor.service import validate
from acecoder.executor.types import ExecutionResult, ProgramStatus, Verdict

Job = tuple[str, Sequence[str], str]  # program, tests, setup


def _run(jobs: list[Job], *, judge: bool, workers: int = 1, timeout: float = 2.0,
         memory_mb: int | None = None) -> list[ExecutionResult]:
    async def go() -> list[ExecutionResult]:
        cfg = ExecutorConfig(workers=workers, max_queue=100_000, plain_judge=judge)
        async with WorkerPool(cfg) as pool:
            sem = asyncio.Semaphore(2 * workers)

            async def one(job: Job) -> ExecutionResult:
                program, tests, setup = job
                async with sem:
                    return await pool.execute(validate(cfg, program=program, tests=tests,
                                                       setup=setup, timeout=timeout,
                                                       memory_mb=memory_mb))

            return list(await asyncio.gather(*(one(j) for j in jobs)))

    return asyncio.run(go())


def _answer(r: ExecutionResult) -> tuple[Any, ...]:
    """Everything a caller sees but the timings."""
    tests = [(t.verdict, t.error_type, t.error_message) for t in r.tests]
    return (r.status, r.status_detail, tests, r.stdout, r.stderr, r.stdout_truncated,
            r.stderr_truncated, r.flags)


@pytest.mark.slow
def test_the_judge_answers_exactly_as_a_fresh_test_process() -> None:
    """MbppBase and HumanEval, reference and broken solutions: every answer identical."""
    jobs: list[Job] = []
    for p in [*load_mbpp(), *load_humaneval()]:
        jobs += [(p.program, p.tests, p.setup), (broken(p), p.tests, p.setup)]
    judged = _run(jobs, judge=True, workers=2)
    fresh = _run(jobs, judge=False, workers=2)
    differ = [i for i, (a, b) in enumerate(zip(judged, fresh)) if _answer(a) != _answer(b)]
    assert not differ, [(jobs[i][1][:1], _answer(judged[i]), _answer(fresh[i])) for i in differ[:3]]
    assert sum(r.all_passed for r in judged) > len(jobs) // 3  # the suite is not all failures


# A program that answers its first call with a pickle whose decoding hashes a tuple of 2**60
# leaves (60 memo references and a frozenset), written straight on its reply channel (fd 4).
HANG_THE_DECODER = """
import os, struct, time
def f(x):
    ops = b'\\x80\\x04(' + b'K\\x01K\\x01\\x86\\x94'
    for i in range(60):
        ops += b'h' + bytes([i]) + b'h' + bytes([i]) + b'\\x86\\x94'
    ops += b'\\x91.'
    os.write(4, struct.pack('>I', len(ops)) + ops)
    time.sleep(60)
"""
# Stops (or kills) every process it may signal, and keeps trying while the tests run.
SIGNAL_EVERYONE = """
import os, signal
def spray():
    for pid in range(2, 5000):
        if pid != os.getpid():
            for sig in (signal.SIGSTOP, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
spray()
def f(x):
    spray()
    return x
"""
# Sends the largest value that may cross, and namedtuple types named like the victim's.
HUGE_VALUES = """
import collections
P = collections.namedtuple('P', 'a b')
def f(x):
    return [P(i, str(i) * 8) for i in range(600_000)]
"""
VICTIM: Job = ("import collections\nP = collections.namedtuple('P', 'a b')\n"
               "def f(x):\n    return P(x, x + 1)\n",
               ["assert f(1) == (1, 2)", "assert f(2) == P(2, 3)", "assert f(3) == (3, 5)"], "")


@pytest.mark.parametrize("attacker", [HANG_THE_DECODER, SIGNAL_EVERYONE, HUGE_VALUES])
def test_nothing_a_program_does_to_the_judge_reaches_the_next_request(attacker: str) -> None:
    tests = ["assert f(1) == 1", "assert f(2) == 2"]
    alone = _run([VICTIM], judge=True)[0]
    # One worker: the attacker's requests and the victim's meet the same judge, in turn.
    results = _run([(attacker, tests, ""), VICTIM, (attacker, tests, ""), VICTIM], judge=True)
    for victim in (results[1], results[3]):
        assert _answer(victim) == _answer(alone)
    assert alone.verdicts == [Verdict.PASSED, Verdict.PASSED, Verdict.FAILED]
    # And the attacker is answered as a fresh test process answers it.
    assert _answer(results[0]) == _answer(_run([(attacker, tests, "")], judge=False)[0])


@pytest.mark.parametrize(("memory_mb", "items", "verdict"), [
    (256, 150_000_000, Verdict.MEMORY),   # 1.2 GB: past any test process's address space
    (3072, 330_000_000, Verdict.FAILED),  # 2.6 GB: within what this request's tests may use
], ids=["past-the-limit", "within-a-large-limit"])
def test_a_plain_check_gets_the_memory_a_fresh_test_process_gets(
        memory_mb: int, items: int, verdict: Verdict) -> None:
    """The judge serves requests of every memory limit: each one's tests get exactly the address
    space a fresh test process would give them, not the judge's own."""
    job = ("def f(x):\n    return [x]\n", [f"assert f(0) == [0] * {items}", "assert f(1) == [1]"],
           "")
    # The longest limit: filling 2.6 GB took 11 s once on a VM whose host backs guest memory
    # lazily (2 s the next time); the verdict must not depend on that.
    judged = _run([job], judge=True, memory_mb=memory_mb, timeout=60.0)[0]
    fresh = _run([job], judge=False, memory_mb=memory_mb, timeout=60.0)[0]
    assert judged.verdicts == [verdict, Verdict.PASSED], judged
    assert _answer(judged) == _answer(fresh)


def test_a_hung_decoder_costs_its_test_and_the_judge_is_replaced() -> None:
    tests = ["assert f(1) == 1", "assert f(2) == 2"]
    (r,) = _run([(HANG_THE_DECODER, tests, "")], judge=True, timeout=1.0)
    assert r.verdicts == [Verdict.TIMEOUT, Verdict.TIMEOUT]
    assert r.status == ProgramStatus.OK, r  # the second test met a judge that was not stuck


LOUD = "print('loading')\ndef f(x):\n    return x\n"


@pytest.mark.parametrize("test", [
    "assert f(1) == 1 and print('from the test') is None",  # a builtin the judge never calls
    "assert f(len([1])) == 1",                                 # a pure builtin: judged
    "assert json(1) == 1",                                     # a module of the program's
    "assert g(1) == 1",                                        # a live global of the program's
    "assert missing(1) == 1",                                  # no such name at all
])
def test_a_suite_the_judge_may_not_run_goes_to_a_fresh_test_process_once(test: str) -> None:
    program = LOUD + "import json\ng = [1]\n"
    judged = _run([(program, [test, "assert f(2) == 2"], "")], judge=True)[0]
    fresh = _run([(program, [test, "assert f(2) == 2"], "")], judge=False)[0]
    assert _answer(judged) == _answer(fresh)
    assert judged.stdout.count("loading") == 1  # the program loaded once


def test_a_program_named_like_a_builtin_is_still_the_entry_point() -> None:
    program = "def sum(a, b):\n    return a + b\n"
    tests = ["assert sum(2, 3) == 5", "assert sum(2, 2) == 5"]
    judged = _run([(program, tests, "")], judge=True)[0]
    assert judged.verdicts == [Verdict.PASSED, Verdict.FAILED]
    assert _answer(judged) == _answer(_run([(program, tests, "")], judge=False)[0])


def _judges(pool: WorkerPool) -> set[int]:
    """The pool's judges: processes under its workers named acecoder-judge."""
    from tests.conftest import _descendants

    out = set()
    for worker in pool.worker_pids():
        for pid in _descendants(worker):
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == "acecoder-judge":
                        out.add(pid)
            except OSError:
                continue
    return out


def test_the_judge_serves_many_requests_and_is_replaced_after_a_timeout() -> None:
    async def go() -> None:
        cfg = ExecutorConfig(workers=1)
        async with WorkerPool(cfg) as pool:
            def request(job: Job) -> Any:
                return pool.execute(validate(cfg, program=job[0], tests=job[1], timeout=1.0))

            seen = []
            for _ in range(3):
                assert (await request(VICTIM)).tests[0].verdict == Verdict.PASSED
                seen.append(_judges(pool))
            assert len(seen[0]) == 1 and seen[0] == seen[1] == seen[2]  # one, kept
            sleeper = "import time\ndef f(x):\n    time.sleep(5)\n"
            hung = await request((sleeper, ["assert f(1) == 1"], ""))
            assert hung.verdicts == [Verdict.TIMEOUT]
            assert (await request(VICTIM)).tests[0].verdict == Verdict.PASSED
            assert len(_judges(pool)) == 1 and not _judges(pool) & seen[0]  # a new one

    asyncio.run(go())
