"""Rewards for the RL trainer, over the network.

`rule`: the executor runs the program extracted from the response on the question's tests:
the pass rate, or (`binary`) 1.0 only when every test passes (AceCoder's RL reward). `rm`: the
RM server's score. `mix`: rm_weight * rm + (1 - rm_weight) * rule.

Calls run on an event loop of their own (a background thread), so that a trainer submits a
batch and goes on generating while it is scored (`submit` returns a future). Every call has a
deadline and transient failures are retried by the clients; a sample whose reward could not
be had comes back with `value=None` and the reason, to be dropped and counted, never scored 0.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from acecoder.codeblocks import extract_program

KINDS = ("rule", "rm", "mix")


@dataclass(frozen=True, kw_only=True)
class RewardSpec:
    kind: str = "rule"
    """rule (executor), rm (reward model) or mix."""
    binary: bool = False
    """rule: 1.0 only when all tests pass, else 0.0 (instead of the pass rate)."""
    rm_weight: float = 0.5
    """mix: weight of the RM score (the rule reward gets the rest)."""
    executor: str | None = None
    """HOST:PORT of `acecoder serve executor` (rule, mix)."""
    rm: str | None = None
    """HOST:PORT of `acecoder serve rm` (rm, mix)."""
    deadline: float = 120.0
    """Seconds for one batch's calls, retries included."""
    test_timeout: float | None = None
    """Per-test time limit (the executor's default when None)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"reward kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind in ("rule", "mix") and not self.executor:
            raise ValueError(f"a {self.kind} reward needs an executor (HOST:PORT)")
        if self.kind in ("rm", "mix") and not self.rm:
            raise ValueError(f"a {self.kind} reward needs an RM server (HOST:PORT)")
        if not 0.0 <= self.rm_weight <= 1.0:
            raise ValueError(f"rm_weight must be in [0, 1], got {self.rm_weight}")
        if self.deadline <= 0:
            raise ValueError(f"deadline must be > 0, got {self.deadline}")


@dataclass(frozen=True)
class Sample:
    question: str
    response: str
    tests: tuple[str, ...] = ()
    setup: str = ""


@dataclass(frozen=True)
class Reward:
    value: float | None
    """The reward; None when it could not be had (`error` says why)."""
    pass_rate: float | None = None
    all_passed: bool | None = None
    rm_score: float | None = None
    flags: tuple[str, ...] = ()
    """What the executor saw the program try (EXITED_EARLY, FORGED_OUTPUT,
    OVERRIDDEN_EQUALITY): reward hacks, defeated, counted by the trainer."""
    error: str | None = None

    @property
    def hacked(self) -> bool:
        return bool(self.flags)


def _why(exc: BaseException) -> str:
    details = getattr(exc, "details", None)
    text = details() if callable(details) else None
    return str(text or exc or type(exc).__name__)


class RewardClient:
    """`submit(samples)` -> a future of one Reward per sample; `close()` when done."""

    def __init__(self, spec: RewardSpec) -> None:
        self.spec = spec
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rewards",
                                        daemon=True)
        self._thread.start()
        self._executor: Any = None
        self._rm: Any = None
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(timeout=30)

    async def _open(self) -> None:
        from acecoder.clients import AsyncExecutorClient, AsyncRewardClient

        if self.spec.executor:
            self._executor = AsyncExecutorClient(self.spec.executor, timeout=self.spec.deadline)
        if self.spec.rm:
            self._rm = AsyncRewardClient(self.spec.rm, timeout=self.spec.deadline)

    def submit(self, samples: Sequence[Sample]) -> concurrent.futures.Future[list[Reward]]:
        return asyncio.run_coroutine_threadsafe(self.score(list(samples)), self._loop)

    async def score(self, samples: list[Sample]) -> list[Reward]:
        spec = self.spec
        rule_task = rm_task = None
        if spec.kind in ("rule", "mix"):
            rule_task = asyncio.ensure_future(self._rule(samples))
        if spec.kind in ("rm", "mix"):
            rm_task = asyncio.ensure_future(self._rm_scores(samples))
        rules = await rule_task if rule_task else [None] * len(samples)
        scores = await rm_task if rm_task else [None] * len(samples)
        out = []
        for rule, score in zip(rules, scores, strict=True):
            out.append(self._combine(rule, score))
        return out

    def _combine(self, rule: Any, score: Any) -> Reward:
        spec = self.spec
        error = next((x for x in (rule, score) if isinstance(x, str)), None)
        if error is not None:
            return Reward(None, error=error)
        pass_rate = all_passed = None
        flags: tuple[str, ...] = ()
        rule_value = 0.0
        if rule is not None:
            pass_rate, all_passed, flags = rule
            rule_value = (1.0 if all_passed else 0.0) if spec.binary else pass_rate
        if spec.kind == "rule":
            value = rule_value
        elif spec.kind == "rm":
            value = score
        else:
            value = spec.rm_weight * score + (1 - spec.rm_weight) * rule_value
        return Reward(value, pass_rate, all_passed, score, flags)

    async def _rule(self, samples: list[Sample]) -> list[Any]:
        """(pass rate, all passed, flags) per sample, or an error string."""
        from acecoder.clients import Program

        programs = [Program(extract_program(s.response), list(s.tests), setup=s.setup,
                            timeout=self.spec.test_timeout) for s in samples]
        pending = "no verdict from the executor"
        results: list[Any] = [pending if s.tests else "the sample has no tests" for s in samples]
        runnable = [i for i, s in enumerate(samples) if s.tests]
        if not runnable:
            return results
        try:
            async for r in self._executor.execute_batch([programs[i] for i in runnable],
                                                        deadline=self.spec.deadline):
                flags = set(r.flags)
                if r.status.value == "EXITED_EARLY":  # an executor from before flags
                    flags.add("EXITED_EARLY")
                results[runnable[r.index]] = (r.pass_rate, r.all_passed, tuple(sorted(flags)))
        except Exception as exc:  # the executor is gone or too slow: no reward, not 0
            reason = f"executor: {_why(exc)}"
            results = [reason if r == pending else r for r in results]
        return results

    async def _rm_scores(self, samples: list[Sample]) -> list[Any]:
        try:
            scores = await self._rm.score([(s.question, s.response) for s in samples],
                                          deadline=self.spec.deadline)
        except Exception as exc:
            return [f"rm: {_why(exc)}"] * len(samples)
        return [s.score for s in scores]

    def close(self) -> None:
        async def shut() -> None:
            for c in (self._executor, self._rm):
                if c is not None:
                    await c.close()

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
