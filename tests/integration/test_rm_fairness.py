"""The reward service under hostile clients, with a real (tiny) AceCode-RM and its real
tokenizer: a huge request does not starve a small one, long items are tokenized once and
off the event loop, and work whose caller is gone stops."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from acecoder.errors import DeadlineExceeded
from acecoder.server.rm import service as service_module
from acecoder.server.rm.config import RewardConfig
from acecoder.models.reward import BatchStats, Encoded
from acecoder.server.rm.service import RewardService, load_backend

QUESTION = "Write a function add(a, b) that returns the sum of a and b."


def long_response(k: int, lines: int = 40) -> str:
    return "def add(a, b):\n" + "".join(f"    x{i} = a + b  # step {i} of {k}\n"
                                        for i in range(lines)) + "    return x0\n"


class CountingTokenizer:
    """The model's real tokenizer, counting the texts it is asked to tokenize."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.inner(*args, **kwargs)

    def encode(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.inner.encode(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Recording:
    """The real backend, recording every forward it is given."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.description = inner.description
        self.tokenizer = CountingTokenizer(inner.model.tokenizer)
        inner.model.tokenizer = self.tokenizer
        self.batches: list[list[Encoded]] = []
        self.running = 0
        self._lock = threading.Lock()

    def encode(self, question: str, response: str) -> Encoded:
        return self.inner.encode(question, response)  # type: ignore[no-any-return]

    def score(self, items: Sequence[Encoded], stats: BatchStats) -> list[float]:
        with self._lock:
            self.batches.append(list(items))
            self.running += 1
        try:
            return self.inner.score(items, stats)  # type: ignore[no-any-return]
        finally:
            with self._lock:
                self.running -= 1

    def forwarded(self) -> int:
        with self._lock:
            return sum(len(b) for b in self.batches)

    def close(self) -> None:
        self.inner.close()


def make_service(path: Path, **config: Any) -> tuple[RewardService, Recording]:
    cfg = RewardConfig(model=str(path), lanes=1, max_wait_ms=0, **config)
    backend = Recording(load_backend(cfg))
    return RewardService(cfg, backend=backend), backend


async def until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.002)


def test_a_huge_request_does_not_starve_a_later_small_one(tiny_acecode_rm) -> None:  # type: ignore[no-untyped-def]
    path, reference = tiny_acecode_rm
    service, backend = make_service(path, max_batch_items=4)
    big = [(QUESTION, long_response(k)) for k in range(48)]
    small = ("Reverse a string s.", "def rev(s):\n    return s[::-1]\n")

    async def main() -> tuple[int, bool, float]:
        await service.start()
        try:
            task = asyncio.create_task(service.score(big))
            await until(lambda: backend.batches)
            seen = len(backend.batches)
            got = await service.score([small])
            big_done = task.done()
            assert len(await task) == len(big)
            return seen, big_done, got[0].score
        finally:
            await service.close()

    seen, big_done, score = asyncio.run(main())
    want = backend.inner.model.encode(*small)
    answered_in = next(i for i, b in enumerate(backend.batches) if want in b)
    # Answered in the batch after the one in flight (or the one after that), which it shared
    # with the big request's items: the big one took its 12 batches, in turns.
    assert answered_in <= seen + 1 and not big_done
    assert len(backend.batches[answered_in]) == 4
    assert len(backend.batches) == 13 and backend.forwarded() == 49
    assert score == pytest.approx(reference.reward(list(want.ids)), abs=1e-4)


def test_long_items_are_tokenized_once_and_off_the_event_loop(tiny_acecode_rm) -> None:  # type: ignore[no-untyped-def]
    path, _ = tiny_acecode_rm
    service, backend = make_service(path, max_length=64)
    preamble = "Read every line of this long statement before you answer. "
    items = [(preamble * (64 * 1024 // len(preamble)) + f"Question {k}: add a and b.",
              "def add(a, b):\n    return a + b\n") for k in range(12)]

    async def main() -> tuple[float, float, list[Any]]:
        await service.start()
        try:
            worst = 0.0
            scoring = asyncio.ensure_future(service.score(items))
            started = time.monotonic()
            while not scoring.done():  # the loop's lag, while the items are tokenized
                t = time.monotonic()
                await asyncio.sleep(0.005)
                worst = max(worst, time.monotonic() - t - 0.005)
            return worst, time.monotonic() - started, await scoring
        finally:
            await service.close()

    worst, took, scores = asyncio.run(main())
    assert all(s.truncated and s.tokens == 64 for s in scores)
    assert backend.tokenizer.calls == len(items)  # one call per item, truncation included
    # Inline, the loop would have stood still for the whole tokenization (nearly all of
    # `took`); off the loop it answers within a few thread switches.
    assert worst < took / 4, (worst, took)


def test_a_cancelled_request_stops_between_batches(tiny_acecode_rm) -> None:  # type: ignore[no-untyped-def]
    path, _ = tiny_acecode_rm
    service, backend = make_service(path, max_batch_items=2)
    items = [(QUESTION, long_response(k)) for k in range(40)]

    async def main() -> tuple[int, int]:
        await service.start()
        try:
            task = asyncio.create_task(service.score(items))
            await until(lambda: len(backend.batches) >= 2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert service.batcher is not None and service.batcher.queued == 0
            at_cancel = backend.forwarded()
            await until(lambda: backend.running == 0)
            await asyncio.sleep(0.05)  # a batch the lane would have started next
            after = backend.forwarded() - at_cancel
            # the service goes on serving
            assert len(await service.score([(QUESTION, long_response(99))])) == 1
            return at_cancel, after
        finally:
            await service.close()

    at_cancel, after = asyncio.run(main())
    # At most the batch being formed when the caller left; the other ~36 items never ran.
    assert after <= 2 and at_cancel + after <= 8
    cancelled = service.metrics.rejected.labels(reason="cancelled")._value.get()
    assert cancelled == 40 - at_cancel - after


def test_a_cancelled_request_stops_tokenizing(tiny_acecode_rm) -> None:  # type: ignore[no-untyped-def]
    path, _ = tiny_acecode_rm
    service, backend = make_service(path, max_length=64)
    long = "x = 1\n" * (service_module.TOKENIZE_CHUNK_CHARS // 6 + 1)  # one item a chunk
    items = [(QUESTION, long + f"# {k}\n") for k in range(32)]

    async def main() -> int:
        await service.start()
        try:
            task = asyncio.create_task(service.score(items))
            await until(lambda: backend.tokenizer.calls >= 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            seen = backend.tokenizer.calls
            await asyncio.sleep(0.3)  # long enough for a few more chunks, were any queued
            assert backend.tokenizer.calls <= seen + 1  # the chunk in hand, no more
            return seen
        finally:
            await service.close()

    asyncio.run(main())
    assert backend.tokenizer.calls < 8 and not backend.batches


def test_a_passed_deadline_stops_tokenizing(tiny_acecode_rm) -> None:  # type: ignore[no-untyped-def]
    path, _ = tiny_acecode_rm
    service, backend = make_service(path, max_length=64)
    items = [(QUESTION, "x = 1\n" * 20_000 + f"# {k}\n") for k in range(32)]  # 4 MB

    async def main() -> None:
        await service.start()
        try:
            with pytest.raises(DeadlineExceeded, match="while the items were tokenized"):
                await service.score(items, deadline=time.monotonic() + 0.05)
        finally:
            await service.close()

    asyncio.run(main())
    # it ran out within the first chunks (tokenizing all 4 MB takes seconds): the rest were
    # never tokenized, and nothing reached the model
    assert backend.tokenizer.calls < len(items) // 2 and not backend.batches
    assert service.metrics.rejected.labels(reason="deadline")._value.get() == len(items)


def test_over_grpc_health_answers_while_tokenizing_and_a_deadline_stops_the_work(
        tiny_acecode_rm) -> None:  # type: ignore[no-untyped-def]
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from acecoder.server.rm.main import RewardServer, RewardServerConfig
    from acecoder.v1 import reward_pb2 as pb
    from acecoder.v1 import reward_pb2_grpc as pb_grpc

    path, _ = tiny_acecode_rm
    config = RewardConfig(model=str(path), lanes=1, max_wait_ms=0, max_length=64,
                          max_batch_items=2)
    backend = Recording(load_backend(config))
    preamble = "Read every line of this long statement before you answer. "
    long_items = [pb.ScoreItem(question=(preamble * 2200 + f"Question {k}.").encode(),
                               response=b"def add(a, b):\n    return a + b\n") for k in range(12)]
    many_items = [pb.ScoreItem(question=QUESTION.encode(), response=long_response(k).encode())
                  for k in range(1000)]

    async def main() -> tuple[float, float, int, int]:
        server = RewardServer(config, RewardServerConfig(port=0), backend=backend)
        await server.start()
        await server.ready.wait()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)
                rm = pb_grpc.RewardModelStub(channel)
                started = time.monotonic()
                call = asyncio.ensure_future(rm.Score(pb.ScoreRequest(items=long_items),
                                                      timeout=120))
                worst = 0.0
                while not call.done():
                    t = time.monotonic()
                    await health.Check(health_pb2.HealthCheckRequest(), timeout=30)
                    worst = max(worst, time.monotonic() - t)
                    await asyncio.sleep(0.005)
                took = time.monotonic() - started
                assert len((await call).scores) == len(long_items)

                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await rm.Score(pb.ScoreRequest(items=many_items), timeout=0.3)
                assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                at_deadline = backend.forwarded()
                await until(lambda: backend.running == 0)
                await asyncio.sleep(0.1)
                return worst, took, at_deadline, backend.forwarded() - at_deadline
        finally:
            await server.stop()

    worst, took, at_deadline, after = asyncio.run(main())
    assert worst < took / 4, (worst, took)
    assert after <= 2 and at_deadline + after < len(long_items) + len(many_items) // 2
