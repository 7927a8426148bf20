"""The grpc.aio adapter: proto messages in, service calls, proto messages out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator

import grpc

from acecoder import __version__
from acecoder.errors import InvalidArgument
from acecoder.grpc_server import deadline_of
from acecoder.v1 import executor_pb2 as pb
from acecoder.v1 import executor_pb2_grpc as pb_grpc

from . import convert, languages
from .service import DEFAULT_LINGER, ExecutorService
from .types import ExecutionRequest

CHUNK_BYTES = 4 << 20
"""What one message of ExecuteBatchChunked holds at most (a single larger result goes alone)."""


def packed(messages: Iterable[pb.ExecuteResponse],
           budget: int = CHUNK_BYTES) -> Iterator[list[pb.ExecuteResponse]]:
    """`messages` in order, in runs whose encoded sizes add up to at most `budget` bytes (one
    larger message makes a run of its own)."""
    run: list[pb.ExecuteResponse] = []
    size = 0
    for m in messages:
        n = m.ByteSize()
        if run and size + n > budget:
            yield run
            run, size = [], 0
        run.append(m)
        size += n
    if run:
        yield run


class ExecutorServicer(pb_grpc.ExecutorServicer):
    def __init__(self, service: ExecutorService) -> None:
        self.service = service

    async def Execute(self, request: pb.ExecuteRequest,
                      context: grpc.aio.ServicerContext) -> pb.ExecuteResponse:
        req = self.service.validate(**convert.request_fields(request))
        result = await self.service.execute(req, deadline=deadline_of(context))
        return convert.result_to_proto(result)

    def _batch(self, request: pb.ExecuteBatchRequest) -> list[ExecutionRequest]:
        cfg = self.service.config
        if not request.requests:
            raise InvalidArgument("requests is empty: send at least one program")
        if len(request.requests) > cfg.max_batch:
            raise InvalidArgument(
                f"{len(request.requests)} programs sent; the limit is {cfg.max_batch} (max_batch)")
        return [self.service.validate(**convert.request_fields(m), where=f"requests[{i}]")
                for i, m in enumerate(request.requests)]

    async def ExecuteBatch(self, request: pb.ExecuteBatchRequest,
                           context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ExecuteResponse]:
        reqs = self._batch(request)
        async for result in self.service.execute_batch(reqs, deadline=deadline_of(context)):
            yield convert.result_to_proto(result)

    async def ExecuteBatchChunked(
            self, request: pb.ExecuteBatchRequest,
            context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ExecuteBatchChunk]:
        linger = request.linger_seconds if request.HasField("linger_seconds") else DEFAULT_LINGER
        reqs = self._batch(request)
        groups = self.service.execute_batch_groups(reqs, deadline=deadline_of(context),
                                                   linger=linger)
        async for group in groups:
            for run in packed(convert.result_to_proto(r) for r in group):
                yield pb.ExecuteBatchChunk(results=run)

    async def Info(self, request: pb.InfoRequest,
                   context: grpc.aio.ServicerContext) -> pb.InfoResponse:
        c = self.service.config
        return pb.InfoResponse(
            version=__version__, jail=self.service.jail, workers=c.workers, max_queue=c.max_queue,
            default_timeout_seconds=c.default_timeout, default_memory_limit_mb=c.default_memory_mb,
            max_program_bytes=c.max_program_bytes, max_tests=c.max_tests,
            languages=[pb.Language(name=name, version=version)
                       for name, version in languages.available().items()],
        )
