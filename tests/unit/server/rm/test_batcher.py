"""The dynamic batcher, with a scoring function that records what it was given."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from acecoder.errors import DeadlineExceeded, ResourceExhausted, Unavailable
from acecoder.server.rm.batcher import Batcher, BatchPolicy, _Waiting, select_batch
from acecoder.models.reward import BatchStats
from acecoder.server.rm.metrics import RewardMetrics
from acecoder.models.reward import Encoded


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


@pytest.mark.parametrize("prefix", [
    pytest.param(lambda k: 5, id="one-prefix"),  # the hostile request shares the question
    pytest.param(lambda k: 1 + k % 7, id="many-prefixes"),
])
def test_a_later_request_leads_the_next_batch(prefix) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder(delay=0.02)

    async def main() -> tuple[int, int, bool]:
        b = Batcher(rec, BatchPolicy(max_wait=0.0, max_batch_items=4, lanes=1), RewardMetrics())
        await b.start()
        try:
            big = asyncio.create_task(b.submit([item(prefix(k), 10, tag=k) for k in range(40)]))
            while not rec.batches:
                await asyncio.sleep(0.001)
            seen = len(rec.batches)
            assert await b.submit([item(5, 10, tag=99)]) == [float(15 * 1000 + 99)]
            answered_in = next(i for i, batch in enumerate(rec.batches)
                               if any(e.ids[-1] == 99 for e in batch))
            done = big.done()
            await big
            return seen, answered_in, done
        finally:
            await b.close()

    seen, answered_in, big_done = run(main())
    # The small request waited for the batch in flight (and at most one more), not for the
    # ten batches of the big one; and it did not cost a forward of its own.
    assert answered_in <= seen + 1 and not big_done
    assert len(rec.batches[answered_in]) == 4
    assert [len(batch) for batch in rec.batches] == [4] * 10 + [1]


def test_waiting_requests_take_turns_and_share_every_batch_fully() -> None:
    rec = Recorder(delay=0.01)

    async def main() -> None:
        b = Batcher(rec, BatchPolicy(max_wait=0.0, max_batch_items=4, lanes=1), RewardMetrics())
        await b.start()
        try:
            first = asyncio.create_task(b.submit([item(5, 10, tag=1)] * 12))
            await asyncio.sleep(0.005)  # the first batch is running
            await asyncio.gather(first, b.submit([item(6, 10, tag=2)] * 12))
        finally:
            await b.close()

    run(main())
    tags = [[e.ids[-1] for e in batch] for batch in rec.batches]
    assert all(len(t) == 4 for t in tags)  # 24 items, 6 full batches
    # After the first batch, the two requests lead in turn: each leads with its own items.
    leaders = [t[0] for t in tags[1:]]
    assert leaders[:4] == [2, 1, 2, 1]


def test_a_deadline_takes_the_items_out_of_the_queue_at_once() -> None:
    rec = Recorder(delay=0.5)
    metrics = RewardMetrics()

    async def main() -> None:
        b = Batcher(rec, BatchPolicy(max_wait=0.0, lanes=1), metrics)
        await b.start()
        try:
            busy = asyncio.create_task(b.submit([item(0, 3, tag=1)]))
            await asyncio.sleep(0.05)
            with pytest.raises(DeadlineExceeded):
                await b.submit([item(0, 3, tag=2)] * 10, deadline=time.monotonic() + 0.05)
            # answered while the lane is still busy with the first batch, the queue empty
            assert rec.concurrent == 1 and b.queued == 0
            with pytest.raises(DeadlineExceeded):  # already past: refused at the door
                await b.submit([item(0, 3, tag=3)], deadline=time.monotonic() - 1)
            await busy
        finally:
            await b.close()

    run(main())
    assert [e.ids[-1] for batch in rec.batches for e in batch] == [1]
    assert metrics.rejected.labels(reason="deadline")._value.get() == 11


def test_a_cancelled_request_leaves_the_queue_at_once() -> None:
    rec = Recorder(delay=0.3)
    metrics = RewardMetrics()

    async def main() -> None:
        b = Batcher(rec, BatchPolicy(max_wait=0.0, lanes=1, max_queue=20), metrics)
        await b.start()
        try:
            busy = asyncio.create_task(b.submit([item(0, 3, tag=1)]))
            await asyncio.sleep(0.05)
            gone = asyncio.create_task(b.submit([item(0, 3, tag=2)] * 20))
            await asyncio.sleep(0.01)
            assert b.queued == 20
            gone.cancel()
            with pytest.raises(asyncio.CancelledError):
                await gone
            # its places are free before the lane is: another request fits the queue
            assert b.queued == 0 and rec.concurrent == 1
            assert await b.submit([item(0, 3, tag=3)] * 20) == [3003.0] * 20
            await busy
        finally:
            await b.close()

    run(main())
    assert 2 not in [e.ids[-1] for batch in rec.batches for e in batch]
    assert metrics.rejected.labels(reason="cancelled")._value.get() == 20


def test_one_prefix_counts_once_in_the_token_budget() -> None:
    loop = asyncio.new_event_loop()
    try:
        group = [_Waiting(item(100, 10, tag=k), loop.create_future(), None, float(k))
                 for k in range(20)]
        chosen = select_batch(group, BatchPolicy(max_batch_tokens=200), decoder=True)
    finally:
        loop.close()
    # the 100 prefix tokens once, then 10 per item
    assert chosen == group[:10]
