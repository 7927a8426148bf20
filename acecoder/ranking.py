"""The best-of-N ranking records: what the RM service's rerank returns, in this process or
through `acecoder.clients.RewardClient.rerank` (and `BestOfN.rank`, which fills the test
fields)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

SYNTH_SHARE = 0.7
"""The share of a best-of-N latency budget that imagining tests may take (the rest is for
scoring and running them)."""


@dataclass(frozen=True)
class RankedCandidate:
    index: int
    """Position in the request."""
    score: float | None
    """RM score; None when the budget ran out before it was scored."""
    truncated: bool
    pass_rate: float | None
    """Fraction of tests passed; None when no tests ran for it."""
    rank: int
    verdicts: tuple[str, ...] = ()
    """One per test, in test order (PASSED, FAILED, ...); empty when no tests ran."""
    tokens: int = 0
    """Tokens the RM saw for it (0 when it was not scored, or the server did not say)."""


@dataclass(frozen=True)
class Reranking:
    """Candidates best first; indexes and iterates like that list."""

    ranked: list[RankedCandidate]
    complete: bool = True
    """False when the budget ran out before every score and test result arrived."""
    rule: str = ""
    """How they were ranked, in words."""
    seconds: float = 0.0
    """Time it took: the server's, or the whole of a `BestOfN.rank`."""
    tests: tuple[str, ...] = ()
    """The tests that ranked them (given, or synthesized by BestOfN); filled by the clients."""
    tests_source: str = ""
    """given, synthesized (BestOfN) or none, as `acecoder rerank` reports it; filled by the
    clients (`RewardClient.rerank`, `BestOfN.rank`), empty from the service itself."""
    note: str = ""
    """BestOfN: why synthesis gave no tests, when it did not."""

    @property
    def best(self) -> RankedCandidate:
        return self.ranked[0]

    def __getitem__(self, i: int) -> RankedCandidate:
        return self.ranked[i]

    def __len__(self) -> int:
        return len(self.ranked)

    def __iter__(self) -> Iterator[RankedCandidate]:
        return iter(self.ranked)
