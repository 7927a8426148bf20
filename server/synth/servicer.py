"""The grpc.aio adapter of the synthesis service: proto messages in and out."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc

from acecoder import log
from acecoder.v1 import synthesis_pb2 as pb
from acecoder.v1 import synthesis_pb2_grpc as pb_grpc

from . import pipeline
from .jobs import Job
from .llm import ChatResult
from .service import SynthesisService, request_id, seed

_OPTION_FIELDS = ("n_tests", "min_passed", "min_kept", "decontam_threshold", "proxy_reference",
                  "k", "temperature")


def overrides(o: pb.SynthesisOptions) -> dict[str, Any]:
    out = {name: getattr(o, name) for name in _OPTION_FIELDS if o.HasField(name)}
    if o.stages:
        out["stages"] = list(o.stages)
    return out


def _llm(chat: ChatResult | None) -> pb.LlmCall | None:
    if chat is None:
        return None
    return pb.LlmCall(seconds=chat.seconds, prompt_tokens=chat.prompt_tokens,
                      completion_tokens=chat.completion_tokens)


def _rejected(pairs: list[tuple[str, str]]) -> list[pb.RejectedTest]:
    return [pb.RejectedTest(test=t, reason=r) for t, r in pairs]


def event_proto(event: pipeline.Event, request_id: str) -> pb.SynthesisEvent:
    if isinstance(event, pipeline.RewriteDone):
        return pb.SynthesisEvent(request_id=request_id, seconds=event.seconds,
                                 rewritten=pb.Rewritten(
                                     question=event.question or "", tests=event.tests,
                                     rejected=_rejected(event.rejected), error=event.error or "",
                                     llm=_llm(event.chat)))
    if isinstance(event, pipeline.DecontamDone):
        m = event.match
        return pb.SynthesisEvent(request_id=request_id, seconds=event.seconds,
                                 decontaminated=pb.Decontaminated(
                                     clean=m is None, benchmark=m.benchmark if m else "",
                                     item_id=m.item_id if m else "",
                                     overlap=m.overlap if m else 0.0))
    if isinstance(event, pipeline.ProxyDone):
        return pb.SynthesisEvent(request_id=request_id, seconds=event.seconds,
                                 proxy=pb.ProxySolved(program=event.program or "",
                                                      llm=_llm(event.chat)))
    if isinstance(event, pipeline.FilterDone):
        return pb.SynthesisEvent(request_id=request_id, seconds=event.seconds,
                                 filtered=pb.Filtered(kept=event.kept,
                                                      dropped=_rejected(event.dropped)))
    rec = event.record
    record = None
    if rec is not None:
        record = pb.AceCodeRecord(
            id=rec["id"], source=rec["source"], question=rec["question"],
            test_cases=rec["test_cases"],
            context_messages=[pb.Message(role=m["role"], content=m["content"])
                              for m in rec["context_messages"]])
    return pb.SynthesisEvent(request_id=request_id, outcome=pb.Outcome(
        kept=rec is not None, record=record, reason=event.reason or "",
        tests_in=event.tests_in, tests_kept=event.tests_kept))


_STATES = {"QUEUED": pb.JOB_QUEUED, "RUNNING": pb.JOB_RUNNING, "SUCCEEDED": pb.JOB_SUCCEEDED,
           "FAILED": pb.JOB_FAILED, "CANCELLED": pb.JOB_CANCELLED}


def job_proto(job: Job) -> pb.Job:
    r = job.report
    counts = r.get("counts", {})
    seeds, done = r["seeds"], r["done"]
    if job.kind == "sample" and counts:  # live while it runs
        seeds, done = counts["questions"], counts["skipped"] + counts["sampled"]
    return pb.Job(job_id=job.job_id, state=_STATES[job.state], input_path=job.input_path,
                  output_path=job.output_path, seeds=seeds, done=done, kind=job.kind,
                  counts=counts,
                  kept=r["kept"], dropped=dict(r["dropped"]), tests_in=r["tests_in"],
                  tests_kept=r["tests_kept"], tests_rejected=dict(r["tests_rejected"]),
                  error=job.error, created=job.created, updated=job.updated, runs=job.runs)


class SynthesisServicer(pb_grpc.SynthesisServicer):
    def __init__(self, service: SynthesisService) -> None:
        self.service = service

    async def Synthesize(self, request: pb.SynthesizeRequest,
                         context: grpc.aio.ServicerContext) -> AsyncIterator[pb.SynthesisEvent]:
        rid = request_id(request.request_id) or uuid.uuid4().hex[:16]
        log.request_id.set(rid)
        s = request.seed
        one = seed(s.id, s.question, s.program, s.source, tuple(s.tests))
        async for event in self.service.synthesize(one, overrides(request.options)):
            yield event_proto(event, rid)

    async def SubmitJob(self, request: pb.SubmitJobRequest,
                        context: grpc.aio.ServicerContext) -> pb.Job:
        return job_proto(self.service.submit_job(request.input_path, request.output_path,
                                                 overrides(request.options), request.job_id,
                                                 request.kind))

    async def GetJob(self, request: pb.GetJobRequest, context: grpc.aio.ServicerContext) -> pb.Job:
        return job_proto(self.service.jobs.get(request.job_id))

    async def CancelJob(self, request: pb.CancelJobRequest,
                        context: grpc.aio.ServicerContext) -> pb.Job:
        return job_proto(await self.service.jobs.cancel(request.job_id))

    async def ListJobs(self, request: pb.ListJobsRequest,
                       context: grpc.aio.ServicerContext) -> pb.ListJobsResponse:
        return pb.ListJobsResponse(jobs=[job_proto(j) for j in self.service.jobs.list()])
