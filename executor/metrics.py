"""Prometheus metrics of the executor, on a registry of their own (one per service instance)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ExecutorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "acecoder_executor_requests", "RPCs finished, by method and status code.",
            ["method", "code"], registry=r)
        self.rpc_latency = Histogram(
            "acecoder_executor_rpc_latency_seconds", "RPC latency, by method.", ["method"],
            buckets=_LATENCY_BUCKETS, registry=r)
        self.programs = Counter(
            "acecoder_executor_programs", "Programs run, by program status.", ["status"],
            registry=r)
        self.verdicts = Counter(
            "acecoder_executor_verdicts", "Test verdicts, by kind.", ["verdict"], registry=r)
        self.program_latency = Histogram(
            "acecoder_executor_program_latency_seconds",
            "Time from admission to result for one program (queueing included).",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge(
            "acecoder_executor_queue_depth", "Programs admitted and waiting for a worker.",
            registry=r)
        self.inflight = Gauge(
            "acecoder_executor_inflight", "Programs admitted and not finished.", registry=r)
        self.rejected = Counter(
            "acecoder_executor_rejected", "Programs refused before running, by reason.",
            ["reason"], registry=r)
        self.workers = Gauge("acecoder_executor_workers", "Live jailed workers.", registry=r)
        self.worker_restarts = Counter(
            "acecoder_executor_worker_restarts", "Workers replaced, by reason.", ["reason"],
            registry=r)
        self.jail_info = Info("acecoder_executor_jail", "The jail workers run in.", registry=r)
