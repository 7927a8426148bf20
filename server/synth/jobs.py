"""Synthesis jobs that survive the server: each job's spec and state is a JSON file in the
state directory, replaced atomically on every change; its outputs are the append-only,
id-keyed files of `pipeline.run`. A server that starts finds the jobs that were queued or
running and resumes them, so a SIGKILL at any moment loses nothing and duplicates nothing.

States: QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED. A job stopped by a server
shutdown stays RUNNING on disk (and resumes at the next start); submitting a FAILED or
CANCELLED job's id again resumes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from acecoder.errors import FailedPrecondition, InvalidArgument, NotFound

from .pipeline import new_report

logger = logging.getLogger(__name__)

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")
ACTIVE = frozenset({QUEUED, RUNNING})
KINDS = ("synth", "sample", "pairs", "hard")
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass
class Job:
    job_id: str
    input_path: str
    output_path: str
    options: dict[str, Any]
    kind: str = "synth"
    """synth (stages 1-3), sample (4), pairs (5) or hard (6)."""
    state: str = QUEUED
    error: str = ""
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    runs: int = 0
    report: dict[str, Any] = field(default_factory=new_report)
    """Live counts (not saved: recounted from the outputs when the job resumes)."""

    def spec(self) -> dict[str, Any]:
        d = asdict(self)
        del d["report"]
        return d


Runner = Callable[[Job], Awaitable[None]]
"""Runs one job to completion (`pipeline.run` with the service's models), filling job.report."""


class JobManager:
    def __init__(self, state_dir: Path, data_dir: Path, runner: Runner, *,
                 max_running: int = 1, on_change: Callable[[], None] | None = None) -> None:
        if max_running < 1:
            raise ValueError(f"max_running must be >= 1, got {max_running}")
        self.state_dir = state_dir
        self.data_dir = data_dir.resolve()
        self.runner = runner
        self.on_change = on_change
        self.jobs: dict[str, Job] = {}
        self._slots = asyncio.Semaphore(max_running)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cancelled: set[str] = set()

    # -- paths and persistence

    def resolve(self, path: str, what: str) -> Path:
        """A client's path, relative to the data directory; nothing outside it."""
        if not path.strip():
            raise InvalidArgument(f"{what} is empty: give a path in the server's data directory")
        p = Path(path)
        full = (p if p.is_absolute() else self.data_dir / p).resolve()
        if not full.is_relative_to(self.data_dir):
            raise InvalidArgument(f"{what} {path!r} is outside the server's data directory "
                                  f"{self.data_dir}")
        return full

    def _file(self, job_id: str) -> Path:
        return self.state_dir / f"{job_id}.json"

    def _save(self, job: Job) -> None:
        job.updated = time.time()
        tmp = self._file(job.job_id).with_suffix(".json.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(job.spec(), f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self._file(job.job_id))
        if self.on_change is not None:
            self.on_change()

    def recover(self) -> list[Job]:
        """Load every job of the state directory; start again those that were active."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        resumed = []
        for path in sorted(self.state_dir.glob("*.json")):
            try:
                spec = json.loads(path.read_text(encoding="utf-8"))
                job = Job(**spec)
            except (ValueError, TypeError) as exc:
                logger.error("ignoring unreadable job file %s: %s", path, exc)
                continue
            self.jobs[job.job_id] = job
            if job.state in ACTIVE:
                resumed.append(job)
                self._start(job)
        if resumed:
            logger.info("resuming %d job(s): %s", len(resumed),
                        ", ".join(j.job_id for j in resumed))
        if self.on_change is not None:
            self.on_change()
        return resumed

    # -- the API

    def submit(self, input_path: str, output_path: str, options: dict[str, Any],
               job_id: str = "", kind: str = "synth") -> Job:
        if kind not in KINDS:
            raise InvalidArgument(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if job_id and not _JOB_ID.match(job_id):
            raise InvalidArgument(f"job_id {job_id!r} must be 1-128 letters, digits, '.', '_' "
                                  "or '-', starting with a letter or digit")
        if job_id in self.jobs:
            job = self.jobs[job_id]
            if job.state in (FAILED, CANCELLED):
                job.state, job.error = QUEUED, ""
                self._save(job)
                self._start(job)
            return job
        source = self.resolve(input_path, "input_path")
        target = self.resolve(output_path, "output_path")
        if not source.is_file():
            raise InvalidArgument(f"input_path {input_path!r}: no such file on the server")
        if target.is_relative_to(self.state_dir.resolve()):
            raise InvalidArgument(f"output_path {output_path!r} is in the server's job state "
                                  "directory; write elsewhere")
        for other in self.jobs.values():
            if other.state in ACTIVE and other.output_path == str(target):
                raise FailedPrecondition(f"job {other.job_id} is already writing {output_path!r}; "
                                         "cancel it or wait for it")
        job = Job(job_id or uuid.uuid4().hex[:12], str(source), str(target), options, kind)
        self.jobs[job.job_id] = job
        self._save(job)
        self._start(job)
        logger.info("job %s submitted: %s -> %s", job.job_id, source, target)
        return job

    def get(self, job_id: str) -> Job:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise NotFound(f"no job {job_id!r} on this server") from None

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.state in ACTIVE:
            self._cancelled.add(job_id)
            job.state = CANCELLED
            self._save(job)
            task = self._tasks.get(job_id)
            if task is not None:
                task.cancel()
        return job

    def list(self) -> list[Job]:
        return sorted(self.jobs.values(), key=lambda j: j.created, reverse=True)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys((QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED), 0)
        for job in self.jobs.values():
            out[job.state] += 1
        return out

    # -- running

    def _start(self, job: Job) -> None:
        self._cancelled.discard(job.job_id)
        task = asyncio.create_task(self._run(job), name=f"job-{job.job_id}")
        self._tasks[job.job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job.job_id, None))

    async def _run(self, job: Job) -> None:
        async with self._slots:
            if job.job_id in self._cancelled:
                return
            job.state, job.error, job.runs = RUNNING, "", job.runs + 1
            job.report = new_report()
            self._save(job)
            try:
                await self.runner(job)
            except asyncio.CancelledError:
                if job.job_id not in self._cancelled:  # server shutdown: stays RUNNING, resumes
                    logger.info("job %s interrupted; it resumes when the server starts again",
                                job.job_id)
                raise
            except Exception as exc:
                logger.exception("job %s failed", job.job_id)
                job.state, job.error = FAILED, f"{type(exc).__name__}: {exc}"
            else:
                job.state = SUCCEEDED
                logger.info("job %s done: %d kept of %d", job.job_id, job.report["kept"],
                            job.report["seeds"])
            self._save(job)

    async def close(self) -> None:
        """Stop running jobs without changing their saved state (they resume at next start)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
