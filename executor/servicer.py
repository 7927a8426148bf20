"""The grpc.aio adapter: proto messages in, service calls, proto messages out."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from acecoder import __version__
from acecoder.errors import AcecoderError, InvalidArgument
from acecoder.v1 import executor_pb2 as pb
from acecoder.v1 import executor_pb2_grpc as pb_grpc

from . import convert
from .metrics import ExecutorMetrics
from .service import ExecutorService


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class ExecutorServicer(pb_grpc.ExecutorServicer):
    def __init__(self, service: ExecutorService) -> None:
        self.service = service

    async def Execute(self, request: pb.ExecuteRequest,
                      context: grpc.aio.ServicerContext) -> pb.ExecuteResponse:
        req = self.service.validate(**convert.request_fields(request))
        result = await self.service.execute(req, deadline=_deadline(context))
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
        async for result in self.service.execute_batch(reqs, deadline=_deadline(context)):
            yield convert.result_to_proto(result)

    async def Info(self, request: pb.InfoRequest,
                   context: grpc.aio.ServicerContext) -> pb.InfoResponse:
        c = self.service.config
        return pb.InfoResponse(
            version=__version__, jail=self.service.jail, workers=c.workers, max_queue=c.max_queue,
            default_timeout_seconds=c.default_timeout, default_memory_limit_mb=c.default_memory_mb,
            max_program_bytes=c.max_program_bytes, max_tests=c.max_tests,
        )


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Turns AcecoderError into its status code, and counts and times every RPC."""

    def __init__(self, metrics: ExecutorMetrics) -> None:
        self.metrics = metrics

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method.rsplit("/", 1)[-1]
        metrics = self.metrics

        async def abort(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
            code = getattr(exc, "grpc_code", "INTERNAL")
            metrics.requests.labels(method=method, code=code).inc()
            await context.abort(grpc.StatusCode[code], str(exc) or type(exc).__name__)

        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started = time.monotonic()
                try:
                    response = await inner(request, context)
                except AcecoderError as exc:
                    await abort(context, exc)
                finally:
                    metrics.rpc_latency.labels(method=method).observe(time.monotonic() - started)
                metrics.requests.labels(method=method, code="OK").inc()
                return response

            return grpc.unary_unary_rpc_method_handler(
                unary, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)

        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                started = time.monotonic()
                try:
                    async for item in inner_stream(request, context):
                        yield item
                except AcecoderError as exc:
                    await abort(context, exc)
                finally:
                    metrics.rpc_latency.labels(method=method).observe(time.monotonic() - started)
                metrics.requests.labels(method=method, code="OK").inc()

            return grpc.unary_stream_rpc_method_handler(
                stream, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return handler
