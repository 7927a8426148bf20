"""The grpc.aio adapter of the reward service: proto messages in and out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from acecoder import __version__, log
from acecoder.errors import InvalidArgument
from acecoder.grpc_server import deadline_of
from acecoder.v1 import reward_pb2 as pb
from acecoder.v1 import reward_pb2_grpc as pb_grpc

from .service import RewardService, new_request_id


class RewardServicer(pb_grpc.RewardModelServicer):
    def __init__(self, service: RewardService) -> None:
        self.service = service

    async def _score(self, request: pb.ScoreRequest, deadline: float | None) -> pb.ScoreResponse:
        request_id = new_request_id(request.request_id)
        log.request_id.set(request_id)
        scores = await self.service.score(
            [(it.question, it.response) for it in request.items],
            ids=[it.id for it in request.items], deadline=deadline)
        return pb.ScoreResponse(request_id=request_id, scores=[
            pb.ItemScore(id=s.id, score=s.score, truncated=s.truncated, tokens=s.tokens,
                         probability=s.probability)
            for s in scores])

    async def Score(self, request: pb.ScoreRequest,
                    context: grpc.aio.ServicerContext) -> pb.ScoreResponse:
        return await self._score(request, deadline_of(context))

    async def ScoreStream(self, requests: AsyncIterator[pb.ScoreRequest],
                          context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ScoreResponse]:
        """Score each incoming request concurrently; answer in completion order."""
        deadline = deadline_of(context)
        done: asyncio.Queue[pb.ScoreResponse | BaseException | None] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()

        async def one(request: pb.ScoreRequest) -> None:
            try:
                await done.put(await self._score(request, deadline))
            except BaseException as exc:  # handed to the stream, which ends with its status
                await done.put(exc)

        async def read() -> None:
            try:
                async for request in requests:
                    task = asyncio.create_task(one(request))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            except Exception as exc:  # a message refused on arrival ends the stream with it
                await done.put(exc)
                return
            await done.put(None)

        reader = asyncio.create_task(read())
        reading = True
        try:
            while reading or tasks or not done.empty():
                item = await done.get()
                if item is None:
                    reading = False
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
            await reader
        finally:
            reader.cancel()
            for t in list(tasks):
                t.cancel()

    async def Rerank(self, request: pb.RerankRequest,
                     context: grpc.aio.ServicerContext) -> pb.RerankResponse:
        request_id = new_request_id(request.request_id)
        log.request_id.set(request_id)
        timeout = request.test_timeout_seconds if request.HasField("test_timeout_seconds") \
            else None
        if timeout is not None and not timeout > 0:
            raise InvalidArgument(f"test_timeout_seconds must be > 0, got {timeout}")
        budget = request.budget_seconds if request.HasField("budget_seconds") else None
        got = await self.service.rerank(
            request.question, list(request.candidates), tests=list(request.tests),
            setup=request.setup, test_timeout=timeout, deadline=deadline_of(context),
            budget=budget)
        out = []
        for r in got.ranked:
            c = pb.RankedCandidate(index=r.index, truncated=r.truncated, rank=r.rank,
                                   verdicts=list(r.verdicts))
            if r.score is not None:
                c.score = r.score
            if r.pass_rate is not None:
                c.pass_rate = r.pass_rate
            out.append(c)
        return pb.RerankResponse(request_id=request_id, ranked=out, rule=got.rule,
                                 complete=got.complete, seconds=got.seconds)

    async def ModelInfo(self, request: pb.ModelInfoRequest,
                        context: grpc.aio.ServicerContext) -> pb.ModelInfoResponse:
        d = self.service.description
        info = pb.ModelInfoResponse(
            version=__version__, model_id=d.model_id, format=d.format,
            backend=self.service.config.backend, dtype=d.dtype, max_length=d.max_length,
            head_trained=d.head_trained, architecture=d.architecture, device=d.device,
            warning=self.service.warning)
        c = self.service.calibration
        if c is not None:
            info.calibrated = True
            info.calibration_scale, info.calibration_shift = c.scale, c.shift
            info.calibration_method = c.method
            info.calibration_brier_before = c.brier_before or 0.0
            info.calibration_brier_after = c.brier_after or 0.0
        return info
