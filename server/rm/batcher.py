"""Dynamic batching: items of concurrent requests share forward passes.

Items wait in one queue. When a lane (a thread that runs the model) is free, the batcher
waits at most `max_wait` after the oldest waiting item arrived for more to come, then forms
a batch. Waiting requests lead batches in turn (round robin), so that one request of a
thousand items delays a later one by a batch or two, not by all of its items: a batch
starts from its leader's oldest item; items that share a prefix stay together (their
prefix is computed once), and groups of similar response length go together (less
padding), up to a token budget, the last group that does not fit whole giving what fits
(the leader's items first, then the others' in turn). A request alone fills every batch.
With several lanes idle, a batch takes only its fair share of the waiting work so that
every lane has some. Work whose caller is gone never starts: a request that is cancelled
or whose deadline passes leaves the queue at once, and an expired item is dropped before it
costs a forward (a batch already running finishes).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from acecoder.errors import DeadlineExceeded, ResourceExhausted, Unavailable
from acecoder.models.reward import BatchStats, Encoded

from .metrics import RewardMetrics

logger = logging.getLogger(__name__)

ScoreFn = Callable[[Sequence[Encoded], BatchStats], list[float]]


class _Request:
    """One submit() call: the unit that takes turns at leading a batch."""


@dataclass(eq=False)
class _Waiting:
    item: Encoded
    future: asyncio.Future[float]
    deadline: float | None
    arrived: float = field(default_factory=time.monotonic)
    request: _Request | None = None
    """None: the item is a request of its own."""


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
        self._turns: deque[_Request] = deque()
        """Requests with waiting items, in the order they lead the next batches."""
        self._leader: _Request | None = None
        """The leader of the last batch: back in `_turns` when the next one is formed, after
        whoever arrived meanwhile."""
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
        """Score items (in order). `deadline` is a time.monotonic() value: when it passes
        the items leave the queue and DeadlineExceeded is raised; a caller that goes away
        (cancels) takes its items out of the queue too."""
        if self._closed:
            raise Unavailable("the reward server is shutting down")
        if len(self._waiting) + len(items) > self.policy.max_queue:
            self.metrics.rejected.labels(reason="queue_full").inc()
            raise ResourceExhausted(
                f"the scoring queue is full ({len(self._waiting)} items waiting, limit "
                f"{self.policy.max_queue}); retry with backoff")
        if deadline is not None and deadline <= time.monotonic():
            self.metrics.rejected.labels(reason="deadline").inc(len(items))
            raise DeadlineExceeded("the deadline passed before the items reached the model")
        loop = asyncio.get_running_loop()
        request = _Request()
        waiting = [_Waiting(e, loop.create_future(), deadline, request=request) for e in items]
        self._waiting.extend(waiting)
        self._turns.append(request)
        self._update_depth()
        self._arrived.set()
        scored, reason = False, "cancelled"
        try:
            results = asyncio.gather(*(w.future for w in waiting))
            # When the caller leaves first, the items' cancellation ends the gather with an
            # exception nobody awaits any more: retrieve it, so asyncio does not log it.
            results.add_done_callback(lambda f: f.cancelled() or f.exception())
            if deadline is None:
                scores = list(await results)
            else:
                try:
                    scores = list(await asyncio.wait_for(results, deadline - time.monotonic()))
                except TimeoutError:
                    reason = "deadline"
                    raise DeadlineExceeded("the deadline passed before every item was "
                                           "scored") from None
            scored = True
            return scores
        finally:
            if not scored:  # the caller went away, the deadline passed or an item failed
                self._withdraw(request, waiting, reason)

    def _withdraw(self, request: _Request, waiting: list[_Waiting], reason: str) -> None:
        """Take the items of a request that ended early out of the queue (its turn is
        dropped when it comes)."""
        for w in waiting:
            if not w.future.done():
                w.future.cancel()
        before = len(self._waiting)
        self._waiting = [w for w in self._waiting if w.request is not request]
        if len(self._waiting) < before:
            self.metrics.rejected.labels(reason=reason).inc(before - len(self._waiting))
            self._update_depth()

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
                             share=self._idle_lanes, leader=self._next_leader(live))
        chosen = set(map(id, batch))
        self._waiting = [w for w in live if id(w) not in chosen]
        self._update_depth()
        return batch

    def _next_leader(self, live: list[_Waiting]) -> _Request | None:
        """The request whose turn it is to lead a batch: the first in `_turns` that still
        has items waiting. The last leader goes back behind those that came meanwhile."""
        if self._leader is not None:
            self._turns.append(self._leader)
            self._leader = None
        waiting = {w.request for w in live}
        while self._turns:
            request = self._turns.popleft()
            if request in waiting:
                self._leader = request
                return request
        return None

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
                 share: int = 1, leader: _Request | None = None) -> list[_Waiting]:
    """Choose the next batch: the leader's oldest item (the oldest of all without a leader)
    with its prefix group, then whole groups of the nearest response lengths while the
    budget allows; of a group that does not fit whole, the items that do, the leader's
    first, then the other requests' in turn. `share` idle lanes split the work."""
    groups: dict[tuple[int, ...], list[_Waiting]] = {}
    for w in waiting:
        groups.setdefault(w.item.prefix if decoder else (id(w),), []).append(w)
    units = sorted(groups.values(), key=lambda g: max(_length(w, decoder) for w in g))
    own = [w for w in waiting if leader is not None and w.request is leader]
    first_item = min(own or waiting, key=lambda w: w.arrived)
    anchor = next(i for i, g in enumerate(units) if first_item in g)

    total = sum(_unit_cost(g, decoder) for g in units)
    budget = min(policy.max_batch_tokens, max(1, -(-total // max(1, share))))
    chosen: list[_Waiting] = []
    width = 0
    prefixes: set[tuple[int, ...]] = set()
    prefix_cost = 0

    def new_prefix(group: list[_Waiting]) -> int:
        prefix = group[0].item.prefix if decoder else ()
        return 0 if prefix in prefixes else len(prefix)

    def fits(group: list[_Waiting]) -> bool:
        n = len(chosen) + len(group)
        w = max(width, *(_length(x, decoder) for x in group))
        return n <= policy.max_batch_items and n * w + prefix_cost + new_prefix(group) <= budget

    def take(group: list[_Waiting]) -> None:
        nonlocal width, prefix_cost
        prefix_cost += new_prefix(group)
        if decoder:
            prefixes.add(group[0].item.prefix)
        chosen.extend(group)
        width = max(width, *(_length(x, decoder) for x in group))

    def take_what_fits(group: list[_Waiting]) -> None:
        for w in _in_turn(group, leader):
            if chosen and not fits([w]):
                break
            take([w])

    first = units[anchor]
    if fits(first):
        take(first)
    else:  # a group larger than the budget: the leader's oldest items, as many as fit
        take_what_fits(first)
    lo, hi = anchor - 1, anchor + 1
    while lo >= 0 or hi < len(units):
        # Extend toward the unit whose length is closest to the batch's width.
        pick_hi = hi < len(units) and (
            lo < 0
            or _unit_len(units[hi], decoder) - width <= width - _unit_len(units[lo], decoder))
        idx = hi if pick_hi else lo
        if not fits(units[idx]):
            take_what_fits(units[idx])
            break
        take(units[idx])
        if pick_hi:
            hi += 1
        else:
            lo -= 1
    return chosen


def _in_turn(group: list[_Waiting], leader: _Request | None) -> list[_Waiting]:
    """The items of a group in the order they get a place: the leader's first (oldest
    first), then round robin over the other requests (each one's oldest, then each one's
    second, ...)."""
    seen: dict[int, int] = {}
    ranked: list[tuple[tuple[bool, int, float], _Waiting]] = []
    for w in sorted(group, key=lambda w: w.arrived):
        request = id(w.request) if w.request is not None else id(w)
        k = seen.get(request, 0)
        seen[request] = k + 1
        ranked.append(((leader is None or w.request is not leader, k, w.arrived), w))
    return [w for _, w in sorted(ranked, key=lambda kw: kw[0])]


def _length(w: _Waiting, decoder: bool) -> int:
    return w.item.response_len if decoder else len(w.item.ids)


def _unit_len(group: list[_Waiting], decoder: bool) -> int:
    return max(_length(w, decoder) for w in group)


def _unit_cost(group: list[_Waiting], decoder: bool) -> int:
    return len(group) * _unit_len(group, decoder) + (len(group[0].item.prefix) if decoder else 0)
