"""Stage 2: proxy filtering. A strong model solves the rewritten question; only the tests
its solution passes are kept, and a question with too few left is dropped.

AceCoder's defaults: one greedy proxy solution, prompted with the question and its first
two tests; drop the question when the proxy passes 3 tests or fewer, or fewer than 5 remain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from acecoder.codeblocks import extract_program

from . import prompts
from .llm import Chat, ChatResult

# Why a question is dropped: stable strings for reports and metrics.
FEW_PASSED = "proxy_passed_too_few"
FEW_LEFT = "too_few_tests_left"
NO_PROXY = "no_proxy_solution"


@dataclass(frozen=True, kw_only=True)
class FilterRule:
    min_passed: int = 4
    """The proxy must pass at least this many tests (AceCoder drops at 3 or fewer)."""
    min_kept: int = 5
    """At least this many tests must remain."""
    agreement: str = "any"
    """With several proxies, keep a test that 'any' of them passes, or only what 'all' pass."""

    def __post_init__(self) -> None:
        if self.min_passed < 0 or self.min_kept < 0:
            raise ValueError("min_passed and min_kept must be >= 0")
        if self.agreement not in ("any", "all"):
            raise ValueError(f"agreement must be 'any' or 'all', got {self.agreement!r}")


@dataclass
class Filtered:
    kept: list[str]
    dropped: list[tuple[str, str]] = field(default_factory=list)
    """(test, why): the verdicts the proxies gave it, e.g. 'FAILED'."""
    drop_reason: str | None = None
    """Set when the whole question is dropped."""

    @property
    def keep_question(self) -> bool:
        return self.drop_reason is None


async def proxy_chat(client: Chat, question: str, tests: Sequence[str]
                     ) -> tuple[str | None, ChatResult]:
    """One greedy solution from the proxy model (None if it gave no code), and the call."""
    chat = await client.chat(prompts.proxy(question, list(tests)), temperature=0.0, json=False)
    program = extract_program(chat.text).strip()
    return program or None, chat


async def proxy_solution(client: Chat, question: str, tests: Sequence[str]) -> str | None:
    """One greedy solution from the proxy model, or None if it gave no code."""
    return (await proxy_chat(client, question, tests))[0]


async def filter_tests(executor: Any, tests: Sequence[str], proxies: Sequence[str], *,
                       rule: FilterRule = FilterRule(), setup: str = "",
                       timeout: float | None = None) -> Filtered:
    """Run every test against every proxy solution (through an AsyncExecutorClient) and keep
    what they pass."""
    from acecoder.clients.executor import Program

    if not proxies:
        return Filtered([], [(t, "no proxy") for t in tests], NO_PROXY)
    verdicts: list[list[str]] = [[] for _ in tests]
    programs = [Program(p, list(tests), setup=setup, timeout=timeout) for p in proxies]
    async for result in executor.execute_batch(programs):
        for i, v in enumerate(result.verdicts):
            verdicts[i].append(v.value)
    passes = [[v == "PASSED" for v in vs] for vs in verdicts]
    keep = [any(p) if rule.agreement == "any" else all(p) for p in passes]
    out = Filtered([t for t, k in zip(tests, keep) if k],
                   [(t, "/".join(vs)) for t, vs, k in zip(tests, verdicts, keep) if not k])
    best = max(sum(p[j] for p in passes) for j in range(len(proxies)))
    if best < rule.min_passed:
        out.drop_reason = FEW_PASSED
    elif len(out.kept) < rule.min_kept:
        out.drop_reason = FEW_LEFT
    return out
