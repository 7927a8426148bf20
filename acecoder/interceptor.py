"""The gRPC interceptor every acecoder server installs: errors to status codes, RPC metrics."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import grpc

from acecoder.errors import AcecoderError


class RpcMetrics(Protocol):
    """Any metrics object with a requests counter (method, code) and a latency histogram
    (method)."""

    requests: Any
    rpc_latency: Any


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Turns AcecoderError into its status code, and counts and times every RPC."""

    def __init__(self, metrics: RpcMetrics) -> None:
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

        def done(started: float) -> None:
            metrics.rpc_latency.labels(method=method).observe(time.monotonic() - started)

        kw = {"request_deserializer": handler.request_deserializer,
              "response_serializer": handler.response_serializer}
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started = time.monotonic()
                try:
                    response = await inner(request, context)
                except AcecoderError as exc:
                    await abort(context, exc)
                finally:
                    done(started)
                metrics.requests.labels(method=method, code="OK").inc()
                return response

            return grpc.unary_unary_rpc_method_handler(unary, **kw)

        if handler.unary_stream is not None or handler.stream_stream is not None:
            streaming = handler.unary_stream is not None
            inner_stream = handler.unary_stream if streaming else handler.stream_stream

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                started = time.monotonic()
                try:
                    async for item in inner_stream(request, context):
                        yield item
                except AcecoderError as exc:
                    await abort(context, exc)
                finally:
                    done(started)
                metrics.requests.labels(method=method, code="OK").inc()

            if streaming:
                return grpc.unary_stream_rpc_method_handler(stream, **kw)
            return grpc.stream_stream_rpc_method_handler(stream, **kw)
        return handler
