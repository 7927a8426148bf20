"""Prometheus metrics of the synthesis server, on a registry of their own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .llm import ChatResult
from .pipeline import DecontamDone, Event, FilterDone, Outcome, ProxyDone, RewriteDone

_SECONDS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class SynthMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "acecoder_synth_requests", "RPCs finished, by method and status code.",
            ["method", "code"], registry=r)
        self.rpc_latency = Histogram(
            "acecoder_synth_rpc_latency_seconds", "RPC latency, by method.", ["method"],
            buckets=_SECONDS, registry=r)
        self.questions = Counter(
            "acecoder_synth_questions", "Seeds finished, by result (kept/dropped) and reason.",
            ["result", "reason"], registry=r)
        self.tests = Counter(
            "acecoder_synth_tests", "Tests by stage: imagined (parsed or not), parsed (single "
            "asserts), kept (passed by the proxy, question kept).", ["stage"], registry=r)
        self.tests_rejected = Counter(
            "acecoder_synth_tests_rejected", "Imagined tests refused, by reason.", ["reason"],
            registry=r)
        self.llm_latency = Histogram(
            "acecoder_synth_llm_latency_seconds", "One LLM call, retries included, by role.",
            ["role"], buckets=_SECONDS, registry=r)
        self.llm_tokens = Counter(
            "acecoder_synth_llm_tokens", "LLM tokens, by role and kind (prompt/completion).",
            ["role", "kind"], registry=r)
        self.stage_seconds = Histogram(
            "acecoder_synth_stage_seconds", "Time of one seed in a stage (rate() of the count "
            "is the stage's throughput).", ["stage"], buckets=_SECONDS, registry=r)
        self.inflight = Gauge(
            "acecoder_synth_inflight", "Synthesize calls running.", registry=r)
        self.waiting = Gauge(
            "acecoder_synth_waiting", "Synthesize calls waiting for a slot.", registry=r)
        self.jobs = Gauge("acecoder_synth_jobs", "Jobs, by state.", ["state"], registry=r)

    def _llm(self, role: str, chat: ChatResult | None) -> None:
        if chat is None:
            return
        self.llm_latency.labels(role=role).observe(chat.seconds)
        self.llm_tokens.labels(role=role, kind="prompt").inc(chat.prompt_tokens)
        self.llm_tokens.labels(role=role, kind="completion").inc(chat.completion_tokens)

    def observe(self, event: Event) -> None:
        """Count one pipeline event (the servicer's and the jobs' alike)."""
        if isinstance(event, RewriteDone):
            self.stage_seconds.labels(stage="rewrite").observe(event.seconds)
            self._llm("rewrite", event.chat)
            self.tests.labels(stage="parsed").inc(len(event.tests))
        elif isinstance(event, DecontamDone):
            self.stage_seconds.labels(stage="decontaminate").observe(event.seconds)
        elif isinstance(event, ProxyDone):
            self.stage_seconds.labels(stage="proxy").observe(event.seconds)
            self._llm("proxy", event.chat)
        elif isinstance(event, FilterDone):
            self.stage_seconds.labels(stage="filter").observe(event.seconds)
        elif isinstance(event, Outcome):
            self.tests.labels(stage="imagined").inc(event.tests_in)
            for reason, n in event.rejected.items():
                self.tests_rejected.labels(reason=reason).inc(n)
            if event.record is not None:
                self.questions.labels(result="kept", reason="").inc()
                self.tests.labels(stage="kept").inc(event.tests_kept)
            else:
                reason = (event.reason or "?").split(":")[0]
                self.questions.labels(result="dropped", reason=reason).inc()
