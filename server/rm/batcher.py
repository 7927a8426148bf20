"""Dynamic batching: items of concurrent requests share forward passes.

Items wait in one queue. When a lane (a thread that runs the model) is free, the batcher
waits at most `max_wait` after the oldest waiting item arrived for more to come, then forms
a batch around that oldest item (so nothing starves): items that share a prefix stay
together (their prefix is computed once), and groups of similar response length go
together (less padding), up to a token budget. With several lanes idle, a batch takes only
its fair share of the waiting work so that every lane has some. Items whose deadline passed,
or whose caller went away, are dropped before they cost a forward.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from acecoder.errors import DeadlineExceeded, ResourceExhausted, Unavailable

from .models import BatchStats
from .metrics import RewardMetrics
from .models import Encoded

logger = logging.getLogger(__name__)

ScoreFn = Callable[[Sequence[Encoded], BatchStats], list[float]]


@dataclass(eq=False)
class _Waiting:
    item: Encoded
    future: asyncio.Future[float]
    deadline: float | None
    arrived: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, kw_only=True)
class BatchPolicy:
    max_batch_tokens: int = 4096
    """Tokens one forward may compute, padding and new prefixes included."""
    max_batch_items: int = 64
    """Items in one forward."""
    max_wait: float = 0.005
    """Seconds a free lane waits for more items after the oldest waiting one arrived."""
    max_queue: int = 4096
    """Items that may wait; a request that would overflow it gets RESOURCE_EXHAUSTED."""
    lanes: int = 1
    """Batches that run at once (threads into the model)."""


class Batcher:
    def __init__(self, score: ScoreFn, policy: BatchPolicy, metrics: RewardMetrics,
                 *, decoder: bool = True) -> None:
        self._score = score
        self.policy = policy
        self.metrics = metrics
        self.decoder = decoder
        self._waiting: list[_Waiting] = []
        self._arrived = asyncio.Event()
        self._lanes = asyncio.Semaphore(policy.lanes)
        self._idle_lanes = policy.lanes
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=policy.lanes, thread_name_prefix="rm-lane")
        self._loop_task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def queued(self) -> int:
        return len(self._waiting)

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._dispatch(), name="rm-batcher")

    async def close(self) -> None:
        """Fail what still waits, finish running batches, stop the lanes."""
        self._closed = True
        for w in self._waiting:
            if not w.future.done():
                w.future.set_exception(Unavailable("the reward server is shutting down"))
        self._waiting.clear()
        self._update_depth()
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        self._pool.shutdown(wait=True)

    async def submit(self, items: Sequence[Encoded], deadline: float | None = None) -> list[float]:
        """Score items (in order). `deadline` is a time.monotonic() value."""
        if self._closed:
            raise Unavailable("the reward server is shutting down")
        if len(self._waiting) + len(items) > self.policy.max_queue:
            self.metrics.rejected.labels(reason="queue_full").inc()
            raise ResourceExhausted(
                f"the scoring queue is full ({len(self._waiting)} items waiting, limit "
                f"{self.policy.max_queue}); retry with backoff")
        loop = asyncio.get_running_loop()
        waiting = [_Waiting(e, loop.create_future(), deadline) for e in items]
        self._waiting.extend(waiting)
        self._update_depth()
        self._arrived.set()
        try:
            return list(await asyncio.gather(*(w.future for w in waiting)))
        finally:
            for w in waiting:  # the caller went away or one item failed: drop the rest
                if not w.future.done():
                    w.future.cancel()

    # -- the dispatch loop ----------------------------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            if not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            await self._lanes.acquire()
            try:
                await self._gather_more()
                batch = self._take_batch()
            except BaseException:
                self._lanes.release()
                raise
            if not batch:
                self._lanes.release()
                continue
            self._idle_lanes -= 1
            task = asyncio.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _gather_more(self) -> None:
        """Wait (bounded by max_wait from the oldest arrival) while the batch could grow."""
        if not self._waiting:
            return
        until = min(w.arrived for w in self._waiting) + self.policy.max_wait
        while (left := until - time.monotonic()) > 0 and \
                len(self._waiting) < self.policy.max_batch_items and \
                self._pending_tokens() < self.policy.max_batch_tokens:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                break

    def _pending_tokens(self) -> int:
        return sum(w.item.response_len if self.decoder else len(w.item.ids)
                   for w in self._waiting)

    def _take_batch(self) -> list[_Waiting]:
        now = time.monotonic()
        live: list[_Waiting] = []
        for w in self._waiting:
            if w.future.done():
                continue
            if w.deadline is not None and w.deadline <= now:
                self.metrics.rejected.labels(reason="deadline").inc()
                w.future.set_exception(DeadlineExceeded(
                    "the deadline passed before the item reached the model"))
                continue
            live.append(w)
        self._waiting = live
        if not live:
            self._update_depth()
            return []
        batch = select_batch(live, self.policy, decoder=self.decoder,
                             share=self._idle_lanes)
        chosen = set(map(id, batch))
        self._waiting = [w for w in live if id(w) not in chosen]
        self._update_depth()
        return batch

    async def _run(self, batch: list[_Waiting]) -> None:
        stats = BatchStats()
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        try:
            scores = await loop.run_in_executor(
                self._pool, self._score, [w.item for w in batch], stats)
        except Exception as exc:
            logger.exception("a batch of %d items failed", len(batch))
            for w in batch:
                if not w.future.done():
                    w.future.set_exception(exc)
            return
        finally:
            self._idle_lanes += 1
            self._lanes.release()
            self._arrived.set()
        elapsed = time.monotonic() - started
        for w, s in zip(batch, scores, strict=True):
            if not w.future.done():
                w.future.set_result(s)
        self.metrics.observe_batch(stats, elapsed, waits=[started - w.arrived for w in batch])

    def _update_depth(self) -> None:
        self.metrics.queue_depth.set(len(self._waiting))


def select_batch(waiting: Sequence[_Waiting], policy: BatchPolicy, *, decoder: bool,
                 share: int = 1) -> list[_Waiting]:
    """Choose the next batch: the oldest item's prefix group, then whole groups of the
    nearest response lengths while the budget allows. `share` idle lanes split the work."""
    groups: dict[tuple[int, ...], list[_Waiting]] = {}
    for w in waiting:
        groups.setdefault(w.item.prefix if decoder else (id(w),), []).append(w)
    units = sorted(groups.values(), key=lambda g: max(_length(w, decoder) for w in g))
    oldest = min(waiting, key=lambda w: w.arrived)
    anchor = next(i for i, g in enumerate(units) if oldest in g)

    total = sum(_unit_cost(g, decoder) for g in units)
    budget = min(policy.max_batch_tokens, max(1, -(-total // max(1, share))))
    chosen: list[_Waiting] = []
    width = 0
    prefix_cost = 0

    def fits(group: list[_Waiting]) -> bool:
        n = len(chosen) + len(group)
        w = max(width, *(_length(x, decoder) for x in group))
        p = prefix_cost + (len(group[0].item.prefix) if decoder else 0)
        return n <= policy.max_batch_items and n * w + p <= budget

    def take(group: list[_Waiting]) -> None:
        nonlocal width, prefix_cost
        chosen.extend(group)
        width = max(width, *(_length(x, decoder) for x in group))
        prefix_cost += len(group[0].item.prefix) if decoder else 0

    first = units[anchor]
    if fits(first):
        take(first)
    else:  # a group larger than the budget: its oldest items, as many as fit
        for w in sorted(first, key=lambda w: w.arrived):
            if chosen and not fits([w]):
                break
            take([w])
    lo, hi = anchor - 1, anchor + 1
    while lo >= 0 or hi < len(units):
        # Extend toward the unit whose length is closest to the batch's width.
        pick_hi = hi < len(units) and (
            lo < 0 or _unit_len(units[hi], decoder) - width <= width - _unit_len(units[lo], decoder))
        idx = hi if pick_hi else lo
        if not fits(units[idx]):
            break
        take(units[idx])
        if pick_hi:
            hi += 1
        else:
            lo -= 1
    return chosen


def _length(w: _Waiting, decoder: bool) -> int:
    return w.item.response_len if decoder else len(w.item.ids)


def _unit_len(group: list[_Waiting], decoder: bool) -> int:
    return max(_length(w, decoder) for w in group)


def _unit_cost(group: list[_Waiting], decoder: bool) -> int:
    return len(group) * _unit_len(group, decoder) + (len(group[0].item.prefix) if decoder else 0)
