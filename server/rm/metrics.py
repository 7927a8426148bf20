"""Prometheus metrics of the reward-model server, on a registry of their own."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from acecoder.models.reward import BatchStats

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class RewardMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "acecoder_rm_requests", "RPCs and HTTP calls finished, by method and status code.",
            ["method", "code"], registry=r)
        self.rpc_latency = Histogram(
            "acecoder_rm_rpc_latency_seconds", "Request latency, by method.", ["method"],
            buckets=_LATENCY_BUCKETS, registry=r)
        self.items = Counter("acecoder_rm_items", "Items scored.", registry=r)
        self.truncated = Counter(
            "acecoder_rm_truncated_items", "Items cut to the maximum length.", registry=r)
        self.rejected = Counter(
            "acecoder_rm_rejected_items", "Items refused or dropped before scoring, by reason.",
            ["reason"], registry=r)
        self.batch_items = Histogram(
            "acecoder_rm_batch_items", "Items per forward batch.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        self.padding_ratio = Histogram(
            "acecoder_rm_batch_padding_ratio",
            "Share of a batch's computed tokens that are padding.",
            buckets=(0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0), registry=r)
        self.batch_latency = Histogram(
            "acecoder_rm_batch_seconds", "Time of one batch on the model.",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram(
            "acecoder_rm_queue_wait_seconds", "Time an item waited for its batch.",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.tokens = Counter(
            "acecoder_rm_tokens", "Tokens computed by the model, padding included "
            "(rate() of it is tokens/s).", registry=r)
        self.tokens_per_second = Gauge(
            "acecoder_rm_batch_tokens_per_second", "Real tokens per second of the last batch.",
            registry=r)
        self.prefix_cache = Counter(
            "acecoder_rm_prefix_cache", "Prefix lookups of the batches, by result (hit/miss).",
            ["result"], registry=r)
        self.stage_seconds = Counter(
            "acecoder_rm_stage_seconds", "Seconds spent by stage, summed over items and lanes: "
            "tokenize, queue_wait, prefix_lookup, forward, head, prefix_store (the profile "
            "`bench/rm_bench.py` prints). On a GPU, forward time may show under head, where "
            "the results are read back.", ["stage"], registry=r)
        self.queue_depth = Gauge(
            "acecoder_rm_queue_depth", "Items waiting for a batch.", registry=r)
        self.rerank_budget_expired = Counter(
            "acecoder_rm_rerank_budget_expired", "Rerank calls answered with a partial ranking "
            "because their latency budget ran out.", registry=r)
        self.model = Info("acecoder_rm_model", "The model being served.", registry=r)

    def observe_batch(self, stats: BatchStats, seconds: float, *, waits: Sequence[float]) -> None:
        self.batch_items.observe(stats.items)
        self.batch_latency.observe(seconds)
        self.tokens.inc(stats.tokens)
        if stats.tokens:
            self.padding_ratio.observe(max(0.0, 1 - stats.useful_tokens / stats.tokens))
        if seconds > 0:
            self.tokens_per_second.set(stats.real_tokens / seconds)
        self.prefix_cache.labels(result="hit").inc(stats.prefix_hits)
        self.prefix_cache.labels(result="miss").inc(stats.prefix_misses)
        for w in waits:
            self.queue_wait.observe(w)
        self.stage_seconds.labels(stage="queue_wait").inc(sum(waits))
        for stage, seconds in stats.seconds.items():
            self.stage_seconds.labels(stage=stage).inc(seconds)
