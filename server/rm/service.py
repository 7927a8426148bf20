"""The reward-model service: validation, scoring through the batcher, reranking, drain.
Knows nothing of grpc or HTTP."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from acecoder.codeblocks import extract_program
from acecoder.errors import AcecoderError, DeadlineExceeded, InvalidArgument, Unavailable
from acecoder.models import calibration as calibrations
from acecoder.models.calibration import Calibration
from acecoder.models.reward import BatchStats, Encoded, ModelDescription
from acecoder.ranking import RankedCandidate, Reranking
from acecoder.serving import Admission

from .batcher import Batcher, BatchPolicy
from .config import RewardConfig
from .metrics import RewardMetrics

logger = logging.getLogger(__name__)

INLINE_TOKENIZE_CHARS = 4096
"""A request with at most this much text is tokenized on the event loop (about a
millisecond per KiB): it costs less than a thread hop and never queues behind long ones."""
TOKENIZE_CHUNK_CHARS = 64 * 1024
"""Larger requests are tokenized off the loop in chunks of about this much text (an item is
never split), one chunk at a time per request: a request that is cancelled or out of time
stops after the chunk in hand, and requests take turns at the tokenizer threads."""
TOKENIZER_THREADS = max(1, min(4, (os.cpu_count() or 1) // 2))

RERANK_RULE = ("pass rate (descending) first when tests ran, then RM score (descending), "
               "then request order; when a budget ran out, a candidate whose tests did not run "
               "yet ranks after those that passed all and before those that failed some, and "
               "one not yet scored after the scored ones of its kind")

UNCALIBRATED = ("this model carries no calibration: probabilities are sigmoid(raw score), "
                "which need not estimate p(correct); fit one with `acecoder rm calibrate`")


class Backend(Protocol):
    """What the service needs from a loaded model, whichever library runs it."""

    description: ModelDescription

    def encode(self, question: str, response: str) -> Encoded: ...

    def score(self, items: Sequence[Encoded], stats: BatchStats) -> list[float]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ItemScore:
    id: str
    score: float
    """The raw model output."""
    truncated: bool
    tokens: int
    probability: float = 0.0
    """Estimated p(program is correct): sigmoid of the calibrated score, or sigmoid(score)
    when the model carries no calibration."""


def text(value: bytes | str, what: str, limit: int) -> str:
    """Decode a request field, or raise InvalidArgument saying what to change."""
    raw = value.encode("utf-8", errors="surrogatepass") if isinstance(value, str) else bytes(value)
    if not raw.strip():
        raise InvalidArgument(f"{what} is empty: send the text to score")
    if len(raw) > limit:
        raise InvalidArgument(f"{what} is {len(raw)} bytes; the limit is {limit} "
                              "(max_text_bytes): send less")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{what} is not valid UTF-8 (bad byte at offset {exc.start}): "
                              "send UTF-8 text") from None


def load_backend(config: RewardConfig) -> Backend:
    """Load the configured model with the configured library (blocking: seconds to minutes)."""
    if config.backend == "vllm":
        from .vllm_backend import VllmBackend

        return VllmBackend.load(config)
    import torch

    from acecoder.models import reward as models

    from .engine import TransformersEngine

    if config.device == "cpu":
        torch.set_num_threads(config.threads_per_lane)
    model = models.load(config.model, dtype=config.dtype, device=config.device,
                        max_length=config.max_length)
    packed = None if config.engine == "auto" else config.engine == "packed"
    engine = TransformersEngine(model, prefix_cache_bytes=config.prefix_cache_mb << 20,
                                packed=packed)
    return _TransformersBackend(model, engine)


WARM_UP = ("Write a function add(a, b) that returns the sum of a and b.",
           ("def add(a, b):\n    return a + b\n", "def add(a, b):\n    return a - b\n"))


def warm_up(backend: Backend) -> None:
    """Score a question's two answers once before the service reports ready: the first
    forward of a fresh model costs several later ones (allocations, kernel set-up), and a
    budgeted rerank must not pay for it. Two answers, so that a shared prefix is cached and
    reused as in real batches. Metrics never see it."""
    started = time.monotonic()
    question, answers = WARM_UP
    backend.score([backend.encode(question, a) for a in answers], BatchStats())
    logger.info("warmed the reward model up in %.2f s", time.monotonic() - started)


class _TransformersBackend:
    def __init__(self, model: Any, engine: Any) -> None:
        self.model = model
        self.engine = engine
        self.description = model.description

    def encode(self, question: str, response: str) -> Encoded:
        return self.model.encode(question, response)

    def score(self, items: Sequence[Encoded], stats: BatchStats) -> list[float]:
        return self.engine.score(items, stats)

    def close(self) -> None:
        pass


class RewardService:
    """Scores (question, response) items with one model. `start()` loads it (the service
    answers UNAVAILABLE until then); `begin_drain()` refuses new work while admitted work
    finishes."""

    def __init__(self, config: RewardConfig, *, metrics: RewardMetrics | None = None,
                 backend: Backend | None = None) -> None:
        self.config = config
        self.metrics = metrics or RewardMetrics()
        self.backend = backend
        self.batcher: Batcher | None = None
        self._executor: Any = None
        self._tokenizers = concurrent.futures.ThreadPoolExecutor(
            max_workers=TOKENIZER_THREADS, thread_name_prefix="rm-tokenize")
        self.admission = Admission("reward server")
        self.calibration: Calibration | None = None

    @property
    def ready(self) -> bool:
        return self.batcher is not None and not self.admission.draining

    @property
    def description(self) -> ModelDescription:
        if self.backend is None:
            raise Unavailable("the reward model is still loading; retry shortly")
        return self.backend.description

    async def start(self) -> None:
        if self.backend is None:  # a backend handed in is the caller's to warm
            self.backend = await asyncio.to_thread(load_backend, self.config)
            await asyncio.to_thread(warm_up, self.backend)
        d = self.backend.description
        self.calibration = calibrations.for_model(
            d.model_id, d.path, head_trained=d.head_trained,
            explicit=self.config.calibration)
        if self.calibration is None:
            logger.warning("%s: %s", self.config.model, UNCALIBRATED)
        self.metrics.model.info({"model_id": d.model_id, "format": d.format,
                                 "backend": self.config.backend, "dtype": d.dtype,
                                 "head_trained": str(d.head_trained).lower()})
        lanes = self.config.effective_lanes if self.config.backend == "transformers" else 1
        policy = BatchPolicy(max_batch_tokens=self.config.max_batch_tokens,
                             max_batch_items=self.config.max_batch_items,
                             max_wait=self.config.max_wait_ms / 1000,
                             max_queue=self.config.max_queue, lanes=lanes)
        batcher = Batcher(self.backend.score, policy, self.metrics, decoder=d.decoder)
        await batcher.start()
        self.batcher = batcher
        if self.config.executor is not None:
            self.executor_client()  # connected to every replica before the first rerank

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        self._tokenizers.shutdown(wait=False, cancel_futures=True)
        if self._executor is not None:
            await self._executor.close()
        if self.backend is not None:
            self.backend.close()

    def begin_drain(self) -> None:
        self.admission.draining = True

    async def wait_idle(self, timeout: float) -> bool:
        return await self.admission.wait_idle(timeout)

    def _admit(self) -> Batcher:
        if self.batcher is None and not self.admission.draining:
            raise Unavailable("the reward model is still loading; retry shortly")
        self.admission.admit()
        assert self.batcher is not None
        return self.batcher

    def _release(self) -> None:
        self.admission.release()

    # -- scoring --------------------------------------------------------------------------

    def validate(self, items: Sequence[tuple[bytes | str, bytes | str]], *,
                 what: str = "items") -> list[tuple[str, str]]:
        if not items:
            raise InvalidArgument(f"{what} is empty: send at least one item")
        if len(items) > self.config.max_items:
            raise InvalidArgument(f"{len(items)} {what} sent; the limit is "
                                  f"{self.config.max_items} (max_items): split the request")
        limit = self.config.max_text_bytes
        return [(text(q, f"{what}[{i}].question", limit), text(r, f"{what}[{i}].response", limit))
                for i, (q, r) in enumerate(items)]

    async def _encode(self, pairs: Sequence[tuple[str, str]],
                      deadline: float | None) -> list[Encoded]:
        """Tokenize every pair, off the event loop unless the request is small."""
        backend = self.backend
        assert backend is not None

        def run(chunk: Sequence[tuple[str, str]]) -> list[Encoded]:
            return [backend.encode(q, r) for q, r in chunk]

        started = time.perf_counter()
        if sum(len(q) + len(r) for q, r in pairs) <= INLINE_TOKENIZE_CHARS:
            encoded = run(pairs)
            self.metrics.stage_seconds.labels(stage="tokenize").inc(
                time.perf_counter() - started)
            return encoded
        loop = asyncio.get_running_loop()
        encoded = []
        for chunk in _chunks(pairs, TOKENIZE_CHUNK_CHARS):
            if deadline is not None and time.monotonic() >= deadline:
                self.metrics.rejected.labels(reason="deadline").inc(len(pairs))
                raise DeadlineExceeded("the deadline passed while the items were tokenized")
            encoded += await loop.run_in_executor(self._tokenizers, run, chunk)
        self.metrics.stage_seconds.labels(stage="tokenize").inc(time.perf_counter() - started)
        return encoded

    async def score(self, items: Sequence[tuple[bytes | str, bytes | str]], *,
                    ids: Sequence[str] = (), deadline: float | None = None) -> list[ItemScore]:
        """Score (question, response) items; `deadline` is a time.monotonic() value. A call
        that is cancelled, or whose deadline passes, stops its work between chunks and
        batches: the rest of its items are neither tokenized nor scored."""
        pairs = self.validate(items)
        batcher = self._admit()
        try:
            encoded = await self._encode(pairs, deadline)
            scores = await batcher.submit(encoded, deadline)
        finally:
            self._release()
        self.metrics.items.inc(len(encoded))
        self.metrics.truncated.inc(sum(e.truncated for e in encoded))
        ids = list(ids) or [""] * len(encoded)
        return [ItemScore(i, s, e.truncated, len(e.ids), self.probability(s))
                for i, s, e in zip(ids, scores, encoded, strict=True)]

    def probability(self, raw: float) -> float:
        """p(correct) of a raw score under this model's calibration (sigmoid(raw) without)."""
        c = self.calibration
        return calibrations.sigmoid(raw) if c is None else c.probability(raw)

    @property
    def warning(self) -> str:
        """Everything a caller must know about the served model's scores, or ''."""
        parts = [self.description.warning, "" if self.calibration else UNCALIBRATED]
        return "; ".join(p for p in parts if p)

    async def rerank(self, question: bytes | str, candidates: Sequence[bytes | str], *,
                     tests: Sequence[bytes | str] = (), setup: bytes | str = b"",
                     test_timeout: float | None = None, deadline: float | None = None,
                     budget: float | None = None) -> Reranking:
        """Score N candidates for one question (and run their tests when given); best first.
        With a `budget` (seconds), what has arrived when it runs out is ranked and returned
        (`complete` False); without one, everything is awaited until `deadline` (a
        time.monotonic() value)."""
        started = time.monotonic()
        if not candidates:
            raise InvalidArgument("candidates is empty: send at least one")
        if budget is not None and not budget > 0:
            raise InvalidArgument(f"budget_seconds must be > 0, got {budget}")
        if tests and self.config.executor is None:
            raise InvalidArgument("tests were sent but this server knows no executor: start it "
                                  "with --executor HOST:PORT, or leave tests out")
        pairs = self.validate([(question, c) for c in candidates], what="candidates")
        n = len(pairs)
        scores: list[ItemScore | None] = [None] * n
        rates: list[float | None] = [None] * n
        verdicts: list[tuple[str, ...]] = [()] * n

        async def score_one(i: int) -> None:  # one call each: a budget keeps what came back
            scores[i] = (await self.score([pairs[i]], deadline=deadline))[0]

        work = [asyncio.ensure_future(score_one(i)) for i in range(n)]
        if tests:
            limit = self.config.max_text_bytes
            test_texts = [text(t, f"tests[{i}]", limit) for i, t in enumerate(tests)]
            programs = [extract_program(r) for _, r in pairs]
            setup_text = text(setup, "setup", limit) if setup else ""
            work.append(asyncio.ensure_future(self._run_tests(
                programs, test_texts, setup_text, test_timeout, deadline, rates, verdicts)))
        try:
            done, pending = await asyncio.wait(
                work, timeout=None if budget is None else max(0.0, started + budget -
                                                               time.monotonic()),
                return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in work:
                if not task.done():
                    task.cancel()
        if pending:
            self.metrics.rerank_budget_expired.inc()
        values = [None if s is None else s.score for s in scores]
        truncated = [s is not None and s.truncated for s in scores]
        tokens = [0 if s is None else s.tokens for s in scores]
        order = sorted(range(n), key=lambda i: rank_key(values[i], rates[i], i))
        ranked = [RankedCandidate(i, values[i], truncated[i], rates[i], r, verdicts[i],
                                  tokens[i])
                  for r, i in enumerate(order)]
        return Reranking(ranked, complete=not pending, rule=RERANK_RULE,
                         seconds=time.monotonic() - started)

    def executor_client(self) -> Any:
        """The AsyncExecutorClient of --executor (made on first use, closed with the service)."""
        from acecoder.clients.executor import AsyncExecutorClient

        if self.config.executor is None:
            raise InvalidArgument("this server knows no executor: start it with --executor "
                                  "HOST:PORT")
        if self._executor is None:
            self._executor = AsyncExecutorClient(self.config.executor)
        return self._executor

    async def _run_tests(self, programs: list[str], tests: list[str], setup: str,
                         timeout: float | None, deadline: float | None,
                         rates: list[float | None], verdicts: list[tuple[str, ...]]) -> None:
        """Run every program on the tests; each result lands in `rates` and `verdicts` as it
        arrives (a budget that runs out keeps the ones that did)."""
        from acecoder.clients.executor import Program
        from acecoder.remote_errors import RemoteError

        executor = self.executor_client()
        budget = None if deadline is None else max(0.1, deadline - time.monotonic())
        try:
            async for r in executor.execute_batch(
                    [Program(p, tests, setup=setup, timeout=timeout) for p in programs],
                    deadline=budget):
                rates[r.index] = r.pass_rate
                verdicts[r.index] = tuple(v.value for v in r.verdicts)
        except RemoteError as exc:  # the executor's status is not ours to pass on
            if isinstance(exc, InvalidArgument):
                raise InvalidArgument(f"the executor refused the tests: {exc.details()}") from None
            raise Unavailable(f"the executor at {self.config.executor} failed: "
                              f"{exc.details()}") from None
        except AcecoderError:
            raise
        except Exception as exc:
            raise Unavailable(f"the executor at {self.config.executor} failed: {exc}") from None


def _chunks(pairs: Sequence[tuple[str, str]],
            size: int) -> list[Sequence[tuple[str, str]]]:
    """Consecutive runs of pairs of about `size` characters each (at least one pair)."""
    out: list[Sequence[tuple[str, str]]] = []
    start, chars = 0, 0
    for i, (q, r) in enumerate(pairs):
        chars += len(q) + len(r)
        if chars >= size:
            out.append(pairs[start:i + 1])
            start, chars = i + 1, 0
    if start < len(pairs):
        out.append(pairs[start:])
    return out


def rank_key(score: float | None, pass_rate: float | None, index: int) -> tuple[Any, ...]:
    """Sort key of a candidate, best first (see RERANK_RULE). A candidate whose tests have not
    run yet (a budget ran out) ranks below one known to pass every test and above one known to
    fail some; one not yet scored ranks below the scored ones of its tier."""
    if pass_rate is None:
        tier, rate = 1, 0.0
    else:
        tier, rate = (0 if pass_rate >= 1.0 else 2), pass_rate
    return (tier, -rate, score is None, -(score or 0.0), index)


def new_request_id(given: str) -> str:
    if len(given) > 256:
        raise InvalidArgument("request_id is longer than 256 characters")
    return given or uuid.uuid4().hex
