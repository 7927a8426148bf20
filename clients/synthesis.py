"""Typed client of the synthesis service (blocking).

    with SynthesisClient("localhost:50053") as synth:
        for event in synth.synthesize("q1", question="Write add(a, b)."):
            print(event.WhichOneof("event"))          # rewritten, decontaminated, proxy, ...
        job = synth.submit_job("seeds.jsonl", "acecode.jsonl")
        job = synth.wait_job(job.job_id)              # polls until it ends
        job.kept, dict(job.dropped)

Unary calls retry only UNAVAILABLE and RESOURCE_EXHAUSTED, never past their deadline; a
Synthesize stream is retried only when nothing has arrived yet. Each call is safe to repeat:
Synthesize leaves nothing behind on the server, GetJob, ListJobs and CancelJob come out the
same done twice, and SubmitJob carries a job id (picked by the client when none is given) that
makes a second try find the first one's job. Paths of jobs are on the server, relative to its
data directory; jobs live on the replica that runs them, so a job service is one replica.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from acecoder.security import ClientSecurity
from acecoder.v1 import synthesis_pb2 as pb
from acecoder.v1 import synthesis_pb2_grpc as pb_grpc

from .base import BlockingClient, RetryPolicy, stream

FINISHED = frozenset({pb.JOB_SUCCEEDED, pb.JOB_FAILED, pb.JOB_CANCELLED})


def state_name(state: int) -> str:
    """'RUNNING' for pb.JOB_RUNNING, and so on."""
    return pb.JobState.Name(state).removeprefix("JOB_")


def new_job_id() -> str:
    """A fresh job id, of the form the server picks when a request names none."""
    return uuid.uuid4().hex[:12]


def _options(**kw: Any) -> pb.SynthesisOptions:
    """Options of a request; None (and an empty stage list) leave the server's default."""
    return pb.SynthesisOptions(**{k: v for k, v in kw.items() if v is not None and v != ()})


class SynthesisClient(BlockingClient):
    """Blocking client. Thread-safe; reuse one per process."""

    stub_class = pb_grpc.SynthesisStub
    service = pb.DESCRIPTOR.services_by_name["Synthesis"].full_name

    def __init__(self, target: str, *, timeout: float = 30.0,
                 retry: RetryPolicy | None = None,
                 security: ClientSecurity | None = None, wait_ready: bool = False) -> None:
        super().__init__(target, timeout=timeout, retry=retry, security=security,
                         wait_ready=wait_ready)

    def synthesize(self, seed_id: str, *, question: str = "", program: str = "",
                   source: str = "", tests: Sequence[str] = (), n_tests: int | None = None,
                   min_passed: int | None = None, min_kept: int | None = None,
                   decontam_threshold: float | None = None, stages: Sequence[str] = (),
                   proxy_reference: bool | None = None, request_id: str = "",
                   deadline: float = 600.0) -> Iterator[pb.SynthesisEvent]:
        """Stage events of one seed as they happen; the last one's `outcome` is the result.
        `stages` picks some of rewrite, decontaminate, filter (default all); without rewrite,
        the seed's `tests` are used."""
        req = pb.SynthesizeRequest(
            seed=pb.Seed(id=seed_id, question=question, program=program, source=source,
                         tests=list(tests)),
            options=_options(n_tests=n_tests, min_passed=min_passed, min_kept=min_kept,
                             decontam_threshold=decontam_threshold, stages=tuple(stages),
                             proxy_reference=proxy_reference),
            request_id=request_id)
        yield from stream(self.stub.Synthesize, req, seconds=deadline, retry=self.retry,
                          wait_ready=self.wait_ready)

    def submit_job(self, input_path: str, output_path: str, *, kind: str = "synth",
                   job_id: str = "", n_tests: int | None = None, min_passed: int | None = None,
                   min_kept: int | None = None, decontam_threshold: float | None = None,
                   stages: Sequence[str] = (), proxy_reference: bool | None = None,
                   k: int | None = None, temperature: float | None = None,
                   deadline: float | None = None) -> pb.Job:
        """Start a job: `kind` synth (stages 1-3), sample (4; `k`, `temperature`), pairs (5)
        or hard (6). With the id of a job that exists, get it back instead (resumed if it had
        failed or been cancelled). Without `job_id`, the client picks one: it is the call's
        idempotency key, so a retry after a reply that was lost finds the job the first try
        started instead of starting a second one."""
        req = pb.SubmitJobRequest(
            input_path=input_path, output_path=output_path, job_id=job_id or new_job_id(),
            kind=kind,
            options=_options(n_tests=n_tests, min_passed=min_passed, min_kept=min_kept,
                             decontam_threshold=decontam_threshold, stages=tuple(stages),
                             proxy_reference=proxy_reference, k=k, temperature=temperature))
        return self._call(self.stub.SubmitJob, req, deadline)

    def get_job(self, job_id: str, *, deadline: float | None = None) -> pb.Job:
        return self._call(self.stub.GetJob, pb.GetJobRequest(job_id=job_id), deadline)

    def cancel_job(self, job_id: str, *, deadline: float | None = None) -> pb.Job:
        return self._call(self.stub.CancelJob, pb.CancelJobRequest(job_id=job_id), deadline)

    def list_jobs(self, *, deadline: float | None = None) -> list[pb.Job]:
        return list(self._call(self.stub.ListJobs, pb.ListJobsRequest(), deadline).jobs)

    def wait_job(self, job_id: str, *, timeout: float | None = None, poll: float = 0.5,
                 on_update: Any = None) -> pb.Job:
        """Poll until the job ends (or `timeout` seconds pass: TimeoutError). `on_update(job)`
        sees every poll."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get_job(job_id)
            if on_update is not None:
                on_update(job)
            if job.state in FINISHED:
                return job
            if end is not None and time.monotonic() >= end:
                raise TimeoutError(f"job {job_id} is still {state_name(job.state)} after "
                                   f"{timeout}s ({job.done}/{job.seeds} seeds done)")
            time.sleep(poll)
