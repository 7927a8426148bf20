"""The dynamic batcher, with a scoring function that records what it was given."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from acecoder.errors import DeadlineExceeded, ResourceExhausted, Unavailable
from acecoder.server.rm.batcher import Batcher, BatchPolicy, _Waiting, select_batch
from acecoder.server.rm.models import BatchStats
from acecoder.server.rm.metrics import RewardMetrics
from acecoder.server.rm.models import Encoded


def item(prefix: int, response_len: int, tag: int = 0) -> Encoded:
    """An item whose prefix is `prefix` tokens of value 7 and whose response encodes `tag`."""
    return Encoded(tuple([7] * prefix + [tag] * response_len), prefix, False)


class Recorder:
    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[list[Encoded]] = []
        self.delay = delay
        self.lock = threading.Lock()
        self.concurrent = 0
        self.max_concurrent = 0

    def __call__(self, items: Sequence[Encoded], stats: BatchStats) -> list[float]:
        with self.lock:
            self.batches.append(list(items))
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
        time.sleep(self.delay)
        with self.lock:
            self.concurrent -= 1
        stats.items += len(items)
        stats.tokens += sum(len(e.ids) for e in items)
        return [float(len(e.ids) * 1000 + e.ids[-1]) for e in items]


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_concurrent_requests_share_batches_and_get_their_own_scores() -> None:
    rec = Recorder()

    async def main() -> list[list[float]]:
        b = Batcher(rec, BatchPolicy(max_wait=0.05), RewardMetrics())
        await b.start()
        try:
            reqs = [[item(5, 3 + k, tag=k)] for k in range(8)]
            return await asyncio.gather(*(b.submit(r) for r in reqs))
        finally:
            await b.close()

    results = run(main())
    assert results == [[float((8 + k) * 1000 + k)] for k in range(8)]
    assert len(rec.batches) == 1 and len(rec.batches[0]) == 8


def test_the_token_budget_splits_batches_and_the_oldest_item_goes_first() -> None:
    rec = Recorder()

    async def main() -> None:
        b = Batcher(rec, BatchPolicy(max_wait=0.05, max_batch_tokens=40), RewardMetrics())
        await b.start()
        try:
            await asyncio.gather(*(b.submit([item(0, 10, tag=k)]) for k in range(10)))
        finally:
            await b.close()

    run(main())
    assert all(len(batch) * 10 <= 40 for batch in rec.batches)
    assert sum(len(batch) for batch in rec.batches) == 10
    assert rec.batches[0][0].ids[-1] == 0


def test_selection_keeps_prefix_groups_together_and_groups_similar_lengths() -> None:
    loop = asyncio.new_event_loop()
    try:
        def w(prefix: int, rlen: int, arrived: float) -> _Waiting:
            return _Waiting(item(prefix, rlen), loop.create_future(), None, arrived)

        group_a = [w(10, 5, 0.0), w(10, 50, 1.0)]
        short = [w(11, 4, 2.0), w(12, 6, 3.0)]
        long = [w(13, 60, 4.0)]
        chosen = select_batch(group_a + short + long,
                              BatchPolicy(max_batch_tokens=260), decoder=True)
    finally:
        loop.close()
    # Group A (oldest) comes whole, and then the unit closest to its width (60, not 4-6).
    assert group_a[0] in chosen and group_a[1] in chosen
    assert long[0] in chosen
    assert not set(map(id, short)) & set(map(id, chosen))


def test_with_idle_lanes_each_batch_takes_a_fair_share() -> None:
    rec = Recorder(delay=0.05)

    async def main() -> None:
        b = Batcher(rec, BatchPolicy(max_wait=0.05, lanes=2), RewardMetrics())
        await b.start()
        try:
            await asyncio.gather(*(b.submit([item(k, 10, tag=k)]) for k in range(8)))
        finally:
            await b.close()

    run(main())
    assert rec.max_concurrent == 2
    assert max(len(batch) for batch in rec.batches) <= 4


def test_expired_items_are_not_computed() -> None:
    rec = Recorder(delay=0.2)

    async def main() -> None:
        b = Batcher(rec, BatchPolicy(max_wait=0.0, lanes=1), RewardMetrics())
        await b.start()
        try:
            first = asyncio.create_task(b.submit([item(0, 3, tag=1)]))
            await asyncio.sleep(0.05)  # the lane is busy with `first`
            with pytest.raises(DeadlineExceeded):
                await b.submit([item(0, 3, tag=2)], deadline=time.monotonic() + 0.05)
            await first
        finally:
            await b.close()

    run(main())
    assert [e.ids[-1] for batch in rec.batches for e in batch] == [1]


def test_a_caller_that_goes_away_costs_nothing() -> None:
    rec = Recorder(delay=0.2)

    async def main() -> None:
        b = Batcher(rec, BatchPolicy(max_wait=0.0, lanes=1), RewardMetrics())
        await b.start()
        try:
            first = asyncio.create_task(b.submit([item(0, 3, tag=1)]))
            await asyncio.sleep(0.05)
            gone = asyncio.create_task(b.submit([item(0, 3, tag=2)]))
            await asyncio.sleep(0.01)
            gone.cancel()
            await first
            await asyncio.sleep(0.3)
        finally:
            await b.close()

    run(main())
    assert [e.ids[-1] for batch in rec.batches for e in batch] == [1]


def test_a_full_queue_refuses_at_once_and_close_fails_the_waiting() -> None:
    rec = Recorder(delay=0.3)
    metrics = RewardMetrics()

    async def main() -> None:
        b = Batcher(rec, BatchPolicy(max_wait=0.0, max_queue=2, lanes=1), metrics)
        await b.start()
        running = asyncio.create_task(b.submit([item(0, 3)]))
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(b.submit([item(0, 3), item(0, 4)]))
        await asyncio.sleep(0.01)
        with pytest.raises(ResourceExhausted, match="queue is full"):
            await b.submit([item(0, 5)])
        await b.close()
        with pytest.raises(Unavailable):
            await waiting
        await running
        with pytest.raises(Unavailable):
            await b.submit([item(0, 3)])

    run(main())
    assert metrics.rejected.labels(reason="queue_full")._value.get() == 1


def test_a_failing_batch_fails_its_requests_and_the_batcher_goes_on() -> None:
    calls = []

    def flaky(items: Sequence[Encoded], stats: BatchStats) -> list[float]:
        calls.append(len(items))
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return [1.0] * len(items)

    async def main() -> None:
        b = Batcher(flaky, BatchPolicy(max_wait=0.0), RewardMetrics())
        await b.start()
        try:
            with pytest.raises(RuntimeError, match="out of memory"):
                await b.submit([item(0, 3)])
            assert await b.submit([item(0, 3)]) == [1.0]
        finally:
            await b.close()

    run(main())
