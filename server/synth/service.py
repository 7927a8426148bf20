"""The synthesis service: one-seed synthesis with stage events, and resumable jobs over JSONL
files. Bounded: a fixed number of seeds run at once, a bounded number wait, the rest are
refused (RESOURCE_EXHAUSTED). Knows nothing of grpc."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acecoder.errors import InvalidArgument, ResourceExhausted, Unavailable
from acecoder.serving import Admission

from . import decontam, offline, pipeline, sample
from .filter import FilterRule
from .jobs import Job, JobManager, checked_text, in_thread
from .llm import Chat
from .metrics import SynthMetrics

logger = logging.getLogger(__name__)

MAX_TEXT_BYTES = 256 * 1024
"""The longest question, program or test a request may carry."""
MAX_ID_BYTES = 1024
"""The longest seed id, source or request id."""


@dataclass(frozen=True, kw_only=True)
class SynthServiceConfig:
    synth: pipeline.SynthConfig = dataclasses.field(default_factory=pipeline.SynthConfig)
    """Defaults of every request and job (AceCoder's); requests may override some."""
    state_dir: Path = Path(".acecoder-jobs")
    """Where jobs' state files live (keep it on a persistent volume)."""
    data_dir: Path = Path(".")
    """Jobs read and write only under this directory."""
    max_running_jobs: int = 1
    """Jobs that run at once; later ones wait QUEUED."""
    max_inflight: int = 8
    """Synthesize calls that run at once."""
    max_queue: int = 64
    """Synthesize calls that may wait for a slot; more are refused with RESOURCE_EXHAUSTED."""

    def __post_init__(self) -> None:
        for name in ("max_running_jobs", "max_inflight"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {self.max_queue}")


def options(base: pipeline.SynthConfig, overrides: dict[str, Any]) -> pipeline.SynthConfig:
    """`base` with a request's or job's overrides (n_tests, min_passed, min_kept,
    decontam_threshold, stages, proxy_reference; k and temperature are checked here and read
    by sample jobs), or InvalidArgument saying which value is wrong."""
    n_tests = overrides.get("n_tests", base.n_tests)
    if not 1 <= n_tests <= 100:
        raise InvalidArgument(f"n_tests must be in [1, 100], got {n_tests}")
    threshold = overrides.get("decontam_threshold", base.decontam_threshold)
    if not 0.0 <= threshold <= 1.0:
        raise InvalidArgument(f"decontam_threshold must be in [0, 1], got {threshold}")
    rule = FilterRule(min_passed=overrides.get("min_passed", base.rule.min_passed),
                      min_kept=overrides.get("min_kept", base.rule.min_kept),
                      agreement=base.rule.agreement)
    stages = tuple(overrides.get("stages") or base.stages)
    unknown = sorted(set(stages) - set(pipeline.STAGES))
    if unknown:
        shown = ", ".join(repr(stage[:40]) for stage in unknown[:5])
        raise InvalidArgument(f"unknown stage(s) {shown}: choose from "
                              f"{', '.join(pipeline.STAGES)}")
    k = overrides.get("k", 8)
    if not 1 <= k <= 1024:
        raise InvalidArgument(f"k must be in [1, 1024], got {k}")
    temperature = overrides.get("temperature", 1.0)
    if not 0.0 <= temperature <= 2.0:
        raise InvalidArgument(f"temperature must be in [0, 2], got {temperature}")
    return dataclasses.replace(
        base, n_tests=n_tests, decontam_threshold=threshold, rule=rule, stages=stages,
        proxy_reference=overrides.get("proxy_reference", base.proxy_reference))


def seed(seed_id: str, question: str, program: str, source: str,
         tests: tuple[str, ...] = ()) -> pipeline.Seed:
    """A request's seed, validated: every field free of NUL bytes and of bounded size."""
    checked_text("seed.id", seed_id, MAX_ID_BYTES)
    checked_text("seed.source", source, MAX_ID_BYTES)
    for what, text in (("seed.question", question), ("seed.program", program)):
        checked_text(what, text, MAX_TEXT_BYTES)
    for k, test in enumerate(tests):
        checked_text(f"seed.tests[{k}]", test, MAX_TEXT_BYTES)
    if not seed_id:
        raise InvalidArgument("seed.id is empty: give the seed an id")
    if not question.strip() and not program.strip():
        raise InvalidArgument("the seed needs a question, a program, or both")
    return pipeline.Seed(seed_id, question, program, source or "seed", tests)


def request_id(value: str) -> str:
    """A request's own id (it goes into every log line of the request), validated."""
    return checked_text("request_id", value, MAX_ID_BYTES)


class SynthesisService:
    """`start()` builds the benchmark index and resumes the jobs that were running."""

    def __init__(self, config: SynthServiceConfig, *, llm: Chat, proxy: Chat, executor: Any,
                 metrics: SynthMetrics | None = None, llm_name: str = "llm") -> None:
        self.config = config
        self.llm_name = llm_name
        """The model name sample jobs record in their inferences."""
        self.llm = llm
        self.proxy = proxy
        self.executor = executor
        self.metrics = metrics or SynthMetrics()
        self.admission = Admission("synthesis server")
        self.index: decontam.BenchmarkIndex | None = None
        self.jobs = JobManager(config.state_dir, config.data_dir, self._run_job,
                               max_running=config.max_running_jobs, on_change=self._job_gauges)
        self._slots = asyncio.Semaphore(config.max_inflight)
        self._waiting = 0

    async def start(self) -> None:
        s = self.config.synth
        self.index = await asyncio.to_thread(decontam.default_index, s.decontam_n,
                                             s.benchmark_files)
        self.jobs.recover()

    def _job_gauges(self) -> None:
        for state, n in self.jobs.counts().items():
            self.metrics.jobs.labels(state=state).set(n)

    async def synthesize(self, one: pipeline.Seed, overrides: dict[str, Any]
                         ) -> AsyncIterator[pipeline.Event]:
        """Stage events of one seed; the last is its Outcome."""
        if self.index is None:
            raise Unavailable("the synthesis server is starting; retry shortly")
        config = options(self.config.synth, overrides)
        if self._waiting >= self.config.max_queue and self._slots.locked():
            raise ResourceExhausted(f"{self.config.max_queue} questions are already waiting; "
                                    "retry later or use a job")
        self.admission.admit()
        try:
            self._waiting += 1
            self.metrics.waiting.set(self._waiting)
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
                self.metrics.waiting.set(self._waiting)
            self.metrics.inflight.inc()
            try:
                async for event in pipeline.stages(one, llm=self.llm, proxy=self.proxy,
                                                   executor=self.executor, index=self.index,
                                                   config=config):
                    self.metrics.observe(event)
                    yield event
            finally:
                self.metrics.inflight.dec()
                self._slots.release()
        finally:
            self.admission.release()

    # -- jobs

    def submit_job(self, input_path: str, output_path: str, overrides: dict[str, Any],
                   job_id: str = "", kind: str = "") -> Job:
        if self.admission.draining:
            raise Unavailable("the synthesis server is draining for shutdown; retry on "
                              "another replica")
        options(self.config.synth, overrides)  # refuse bad options now, not in the job
        return self.jobs.submit(input_path, output_path, overrides, job_id, kind or "synth")

    async def _run_job(self, job: Job) -> None:
        source, target = self.jobs.file(job.input_path), self.jobs.file(job.output_path)
        config = options(self.config.synth, job.options)
        report = job.report
        if job.kind == "synth":
            await pipeline.run(source, target, llm=self.llm, proxy=self.proxy,
                               executor=self.executor, config=config, progress=False,
                               report=report, on_event=self.metrics.observe, index=self.index)
            return
        counts: dict[str, int] = {}
        report["counts"] = counts
        if job.kind == "sample":
            await sample.run(source, target, policy=self.llm, model_name=self.llm_name,
                             k=job.options.get("k", 8),
                             temperature=job.options.get("temperature", 1.0),
                             executor=self.executor, progress=False, counts=counts)
            counts["done"] = counts["skipped"] + counts["sampled"]
        elif job.kind == "pairs":
            counts.update(await in_thread(lambda stopped: offline.run_pairs(
                source, target, progress=False, stopped=stopped)))
        else:
            counts.update(await in_thread(lambda stopped: offline.run_hard(
                source, target, progress=False, stopped=stopped)))
        report["seeds"] = report["done"] = counts["questions"]

    # -- lifecycle

    def begin_drain(self) -> None:
        self.admission.draining = True

    async def wait_idle(self, timeout: float) -> bool:
        return await self.admission.wait_idle(timeout)

    async def close(self) -> None:
        await self.jobs.close()
        await self.llm.close()
        if self.proxy is not self.llm:
            await self.proxy.close()
