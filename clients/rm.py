"""Typed clients of the reward-model service, blocking and asyncio.

Same rules as the executor's clients: every call has a deadline, and only UNAVAILABLE and
RESOURCE_EXHAUSTED are retried, with jittered backoff, never past the deadline.

    with RewardClient("localhost:50052") as rm:
        scores = rm.score([("Write add(a, b).", "def add(a, b): return a + b")])
        scores[0].score, scores[0].probability   # raw model output, estimated p(correct)
        ranking = rm.rerank("Write add(a, b).", candidates, budget=0.2)
        ranking.best.index, ranking.complete       # best so far when 0.2 s ran out
        ranking.tests_source                       # "given" or "none", as `acecoder rerank`

    RewardClient("rm:50052", wait_ready=True)      # calls wait for a model still loading
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from acecoder.ranking import RankedCandidate, Reranking
from acecoder.security import ClientSecurity
from acecoder.v1 import reward_pb2 as pb
from acecoder.v1 import reward_pb2_grpc as pb_grpc

from .base import AsyncClient, BlockingClient, RetryPolicy


@dataclass(frozen=True)
class Score:
    id: str
    score: float
    """The raw model output (higher is better; not centred)."""
    truncated: bool
    tokens: int
    probability: float = 0.0
    """Estimated p(program is correct) under the served model's calibration (sigmoid(score)
    when it has none: see `model_info().calibrated`)."""


def _encode(s: str) -> bytes:
    return s.encode("utf-8", errors="surrogatepass")


def _score_request(items: Sequence[tuple[str, str]], ids: Sequence[str] | None,
                   request_id: str) -> pb.ScoreRequest:
    ids = list(ids) if ids is not None else [""] * len(items)
    if len(ids) != len(items):
        raise ValueError(f"{len(ids)} ids for {len(items)} items")
    return pb.ScoreRequest(request_id=request_id, items=[
        pb.ScoreItem(question=_encode(q), response=_encode(r), id=i)
        for (q, r), i in zip(items, ids, strict=True)])


def _scores(reply: pb.ScoreResponse) -> list[Score]:
    return [Score(s.id, s.score, s.truncated, s.tokens, s.probability) for s in reply.scores]


def _rerank_request(question: str, candidates: Sequence[str], tests: Sequence[str],
                    setup: str, test_timeout: float | None, budget: float | None,
                    request_id: str) -> pb.RerankRequest:
    req = pb.RerankRequest(request_id=request_id, question=_encode(question),
                           candidates=[_encode(c) for c in candidates],
                           tests=[_encode(t) for t in tests], setup=_encode(setup))
    if test_timeout is not None:
        req.test_timeout_seconds = test_timeout
    if budget is not None:
        req.budget_seconds = budget
    return req


def _call_deadline(deadline: float | None, budget: float | None) -> float | None:
    """A budget needs room for the answer to come back: the call's deadline covers it."""
    if budget is None or deadline is not None:
        return deadline
    return budget + 5.0


def _ranked(reply: pb.RerankResponse, tests: Sequence[str]) -> Reranking:
    """The reply as a Reranking; `tests` (those sent) fill `tests` and `tests_source` ("given"
    or "none"), as `acecoder rerank` reports them."""
    return Reranking([RankedCandidate(c.index, c.score if c.HasField("score") else None,
                                      c.truncated,
                                      c.pass_rate if c.HasField("pass_rate") else None, c.rank,
                                      tuple(c.verdicts))
                      for c in reply.ranked],
                     complete=reply.complete, rule=reply.rule, seconds=reply.seconds,
                     tests=tuple(tests), tests_source="given" if tests else "none")


class RewardClient(BlockingClient):
    """Blocking client. Thread-safe; reuse one per process."""

    stub_class = pb_grpc.RewardModelStub
    service = pb.DESCRIPTOR.services_by_name["RewardModel"].full_name

    def __init__(self, target: str, *, timeout: float = 120.0,
                 retry: RetryPolicy | None = None,
                 security: ClientSecurity | None = None, wait_ready: bool = False) -> None:
        super().__init__(target, timeout=timeout, retry=retry, security=security,
                         wait_ready=wait_ready)

    def score(self, items: Sequence[tuple[str, str]], *, ids: Sequence[str] | None = None,
              request_id: str = "", deadline: float | None = None) -> list[Score]:
        """Score (question, response) pairs, in order. `deadline`: seconds for the call."""
        return _scores(self._call(self.stub.Score, _score_request(items, ids, request_id),
                                  deadline))

    def rerank(self, question: str, candidates: Sequence[str], *, tests: Sequence[str] = (),
               setup: str = "", test_timeout: float | None = None,
               budget: float | None = None, request_id: str = "",
               deadline: float | None = None) -> Reranking:
        """Rank candidates, best first. With tests, pass rate first (the server needs an
        executor); `setup` runs before each candidate (e.g. imports the tests use). With a
        `budget` (seconds), the server answers with the best so far when it runs out."""
        req = _rerank_request(question, candidates, tests, setup, test_timeout, budget,
                              request_id)
        return _ranked(self._call(self.stub.Rerank, req, _call_deadline(deadline, budget)),
                       tests)

    def model_info(self, *, deadline: float | None = None) -> pb.ModelInfoResponse:
        return self._call(self.stub.ModelInfo, pb.ModelInfoRequest(), deadline)


class AsyncRewardClient(AsyncClient):
    """asyncio client; create and use it inside one event loop."""

    stub_class = pb_grpc.RewardModelStub
    service = pb.DESCRIPTOR.services_by_name["RewardModel"].full_name

    def __init__(self, target: str, *, timeout: float = 120.0,
                 retry: RetryPolicy | None = None,
                 security: ClientSecurity | None = None, wait_ready: bool = False) -> None:
        super().__init__(target, timeout=timeout, retry=retry, security=security,
                         wait_ready=wait_ready)

    async def score(self, items: Sequence[tuple[str, str]], *, ids: Sequence[str] | None = None,
                    request_id: str = "", deadline: float | None = None) -> list[Score]:
        return _scores(await self._call(
            self.stub.Score, _score_request(items, ids, request_id), deadline))

    async def rerank(self, question: str, candidates: Sequence[str], *,
                     tests: Sequence[str] = (), setup: str = "",
                     test_timeout: float | None = None, budget: float | None = None,
                     request_id: str = "", deadline: float | None = None) -> Reranking:
        req = _rerank_request(question, candidates, tests, setup, test_timeout, budget,
                              request_id)
        return _ranked(await self._call(self.stub.Rerank, req,
                                        _call_deadline(deadline, budget)), tests)

    async def model_info(self, *, deadline: float | None = None) -> pb.ModelInfoResponse:
        return await self._call(self.stub.ModelInfo, pb.ModelInfoRequest(), deadline)
