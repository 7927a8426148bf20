"""The grpc.aio adapter: proto messages in, service calls, proto messages out."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from acecoder import __version__
from acecoder.errors import InvalidArgument
from acecoder.grpc_server import deadline_of
from acecoder.v1 import executor_pb2 as pb
from acecoder.v1 import executor_pb2_grpc as pb_grpc

from . import convert, languages
from .service import ExecutorService


class ExecutorServicer(pb_grpc.ExecutorServicer):
    def __init__(self, service: ExecutorService) -> None:
        self.service = service

    async def Execute(self, request: pb.ExecuteRequest,
                      context: grpc.aio.ServicerContext) -> pb.ExecuteResponse:
        req = self.service.validate(**convert.request_fields(request))
        result = await self.service.execute(req, deadline=deadline_of(context))
        return convert.result_to_proto(result)

    async def ExecuteBatch(self, request: pb.ExecuteBatchRequest,
                           context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ExecuteResponse]:
        cfg = self.service.config
        if not request.requests:
            raise InvalidArgument("requests is empty: send at least one program")
        if len(request.requests) > cfg.max_batch:
            raise InvalidArgument(
                f"{len(request.requests)} programs sent; the limit is {cfg.max_batch} (max_batch)")
        reqs = [self.service.validate(**convert.request_fields(m), where=f"requests[{i}]")
                for i, m in enumerate(request.requests)]
        async for result in self.service.execute_batch(reqs, deadline=deadline_of(context)):
            yield convert.result_to_proto(result)

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
