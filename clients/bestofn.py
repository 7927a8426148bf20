"""Online best-of-N: a question and N candidate answers in, the candidates ranked out, within a
latency budget.

    with BestOfN("localhost:50052", synth="localhost:50053") as bon:
        r = bon.rank(question, candidates, budget=0.5)                  # by RM score
        r = bon.rank(question, candidates, tests=tests, budget=2.0)     # tests, then RM
        r = bon.rank(question, candidates, synthesize=True, budget=60)  # imagined tests
        r.best.index, r.complete, r.tests_source

The RM server scores the candidates and, when there are tests, has its executor run them
(start it with `--executor`); the pass rate ranks first, the RM score breaks ties. When the
budget runs out, the server answers with the ranking of what has arrived (`complete` False).
With `synthesize=True` and no tests, the synthesis service imagines tests for the question
first (AceCoder's rewrite and proxy filter); it may take `synth_share` of the budget, and when
it cannot give tests in time (or drops the question) the candidates are ranked by RM alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence

from acecoder.ranking import SYNTH_SHARE, Reranking
from acecoder.remote_errors import RemoteError

from .rm import AsyncRewardClient, RewardClient
from .synthesis import SynthesisClient


@dataclasses.dataclass(frozen=True)
class Imagined:
    tests: tuple[str, ...]
    """Empty when synthesis gave none in time (`reason` says why)."""
    reason: str = ""
    seconds: float = 0.0


def imagine_tests(synth: SynthesisClient, question: str, *, deadline: float,
                  n_tests: int | None = None, min_tests: int = 1) -> Imagined:
    """Tests the synthesis service keeps for `question` (stages rewrite and filter), or none
    and why. Never raises for a slow or failing service: best-of-N goes on without tests.
    `min_tests`: fewest kept tests worth ranking by (AceCoder keeps a dataset question only
    with 4 or more; a single question being reranked online is better served by any)."""
    started = time.monotonic()
    try:
        for event in synth.synthesize("bestofn", question=question, source="bestofn",
                                      n_tests=n_tests, min_passed=min_tests,
                                      min_kept=min_tests, stages=("rewrite", "filter"),
                                      deadline=deadline):
            if event.WhichOneof("event") == "outcome":
                o = event.outcome
                if o.kept:
                    return Imagined(tuple(o.record.test_cases), "",
                                    time.monotonic() - started)
                return Imagined((), o.reason, time.monotonic() - started)
    except RemoteError as exc:
        return Imagined((), f"synthesis failed: {exc.code().name}: {exc.details()}",
                        time.monotonic() - started)
    return Imagined((), "synthesis ended without an outcome", time.monotonic() - started)


def _check(candidates: Sequence[str], budget: float | None, synth_share: float) -> None:
    if not candidates:
        raise ValueError("candidates is empty: send at least one")
    if budget is not None and not budget > 0:
        raise ValueError(f"budget must be > 0 seconds, got {budget}")
    if not 0.0 < synth_share < 1.0:
        raise ValueError(f"synth_share must be in (0, 1), got {synth_share}")


def _with_tests(r: Reranking, tests: Sequence[str], source: str, note: str,
                started: float) -> Reranking:
    return dataclasses.replace(r, tests=tuple(tests), tests_source=source, note=note,
                               seconds=time.monotonic() - started)


class _Settings:
    def __init__(self, synth: str | None, timeout: float, synth_share: float,
                 n_tests: int | None) -> None:
        _check(["x"], None, synth_share)
        self.synth = SynthesisClient(synth, timeout=timeout) if synth else None
        self.timeout = timeout
        self.synth_share = synth_share
        self.n_tests = n_tests

    def _imagine(self, question: str, budget: float | None) -> Imagined:
        if self.synth is None:
            raise ValueError("synthesize=True needs the synthesis service: pass "
                             "synth=HOST:PORT")
        return imagine_tests(self.synth, question, n_tests=self.n_tests,
                             deadline=self.timeout if budget is None
                             else budget * self.synth_share)


def _left(budget: float | None, started: float) -> float | None:
    return None if budget is None else max(0.05, budget - (time.monotonic() - started))


class BestOfN(_Settings):
    """Blocking best-of-N over the RM server (and the synthesis service for imagined tests).
    Thread-safe; reuse one per process."""

    def __init__(self, rm: str, *, synth: str | None = None, timeout: float = 120.0,
                 synth_share: float = SYNTH_SHARE, n_tests: int | None = None) -> None:
        super().__init__(synth, timeout, synth_share, n_tests)
        self.rm = RewardClient(rm, timeout=timeout)

    def rank(self, question: str, candidates: Sequence[str], *, tests: Sequence[str] = (),
             setup: str = "", budget: float | None = None, synthesize: bool = False,
             test_timeout: float | None = None) -> Reranking:
        _check(candidates, budget, self.synth_share)
        started = time.monotonic()
        source, note = ("given" if tests else "none"), ""
        if not tests and synthesize:
            got = self._imagine(question, budget)
            tests, source, note = got.tests, ("synthesized" if got.tests else "none"), got.reason
        r = self.rm.rerank(question, candidates, tests=tests, setup=setup,
                           test_timeout=test_timeout, budget=_left(budget, started))
        return _with_tests(r, tests, source, note, started)

    def close(self) -> None:
        self.rm.close()
        if self.synth is not None:
            self.synth.close()

    def __enter__(self) -> BestOfN:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncBestOfN(_Settings):
    """asyncio best-of-N; create and use it inside one event loop. (Synthesis runs its
    blocking client in a thread.)"""

    def __init__(self, rm: str, *, synth: str | None = None, timeout: float = 120.0,
                 synth_share: float = SYNTH_SHARE, n_tests: int | None = None) -> None:
        super().__init__(synth, timeout, synth_share, n_tests)
        self.rm = AsyncRewardClient(rm, timeout=timeout)

    async def rank(self, question: str, candidates: Sequence[str], *,
                   tests: Sequence[str] = (), setup: str = "", budget: float | None = None,
                   synthesize: bool = False, test_timeout: float | None = None) -> Reranking:
        _check(candidates, budget, self.synth_share)
        started = time.monotonic()
        source, note = ("given" if tests else "none"), ""
        if not tests and synthesize:
            got = await asyncio.to_thread(self._imagine, question, budget)
            tests, source, note = got.tests, ("synthesized" if got.tests else "none"), got.reason
        r = await self.rm.rerank(question, candidates, tests=tests, setup=setup,
                                 test_timeout=test_timeout, budget=_left(budget, started))
        return _with_tests(r, tests, source, note, started)

    async def close(self) -> None:
        await self.rm.close()
        if self.synth is not None:
            self.synth.close()

    async def __aenter__(self) -> AsyncBestOfN:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
