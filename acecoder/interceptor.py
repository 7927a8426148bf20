"""The one gRPC interceptor every acecoder server installs.

In the order a call meets it:
1. authentication, from the call's metadata alone: a call without an accepted token is
   answered UNAUTHENTICATED (RESOURCE_EXHAUSTED once its address has failed too often) by a
   handler that never reads the request message, so an unauthenticated peer costs neither the
   bytes of its message nor their parsing;
2. per call: the client's rate, charged in items (`costs`; a stream is charged message by
   message as the servicer reads it);
3. a message that does not parse is INVALID_ARGUMENT naming the field at fault (a string
   field that is not UTF-8, say), never UNKNOWN;
4. errors to status codes: an AcecoderError to its own, anything unexpected to INTERNAL
   (logged with its traceback); every call counted by (method, code) and timed.

The health service (`OPEN_METHODS`) needs no token and is never rate limited: kubelet probes
and load balancers cannot send one.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, NoReturn, Protocol

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from acecoder.errors import AcecoderError, InvalidArgument, Unauthenticated
from acecoder.remote_errors import RemoteError
from acecoder.security import Guard, Token, client_name, peer_address

logger = logging.getLogger(__name__)

OPEN_METHODS = ("/grpc.health.v1.Health/",)
"""Calls that need no token and are never rate limited."""

Cost = Callable[[Any], int]
"""What one request message costs in a client's rate bucket (its items)."""


class RpcMetrics(Protocol):
    """Any metrics object with a requests counter (method, code) and a latency histogram
    (method)."""

    requests: Any
    rpc_latency: Any


# -- messages that do not parse ----------------------------------------------------------------

class Malformed:
    """What the request deserializer hands on for bytes that are not a valid message: the
    interceptor answers INVALID_ARGUMENT with `detail` before the servicer sees anything."""

    __slots__ = ("detail",)

    def __init__(self, detail: str) -> None:
        self.detail = detail


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def bad_field(desc: Descriptor, data: bytes, prefix: str = "") -> str | None:
    """The path (`items[3].id`) of the first string field of `data` that is not UTF-8, or
    None. Walks the wire format, so it works where the parser gave up."""
    seen: dict[int, int] = {}
    i = 0
    try:
        while i < len(data):
            key, i = _varint(data, i)
            number, wire = key >> 3, key & 7
            if wire == 0:
                _, i = _varint(data, i)
            elif wire == 1:
                i += 8
            elif wire == 5:
                i += 4
            elif wire == 2:
                size, i = _varint(data, i)
                chunk, i = data[i:i + size], i + size
                field = desc.fields_by_number.get(number)
                if field is None:
                    continue
                index = seen.get(number, 0)
                seen[number] = index + 1
                name = prefix + field.name + (f"[{index}]" if _repeated(field) else "")
                if field.type == FieldDescriptor.TYPE_STRING:
                    try:
                        chunk.decode("utf-8")
                    except UnicodeDecodeError:
                        return name
                elif field.type == FieldDescriptor.TYPE_MESSAGE:
                    found = bad_field(field.message_type, chunk, name + ".")
                    if found is not None:
                        return found
            else:
                return None
    except ValueError:
        return None
    return None


def _repeated(field: FieldDescriptor) -> bool:
    label = getattr(field, "is_repeated", None)
    if label is not None:
        return bool(label)
    return field.label == FieldDescriptor.LABEL_REPEATED


def describe_malformed(message_class: Any, data: bytes) -> str:
    desc = getattr(message_class, "DESCRIPTOR", None)
    if desc is None:
        return "the request message does not parse"
    path = bad_field(desc, data)
    if path is not None:
        return f"{desc.name}.{path} is not valid UTF-8: string fields must be UTF-8 text"
    return f"the request is not a valid {desc.full_name} message"


def _deserializer(inner: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if inner is None:
        return None
    message_class = getattr(inner, "__self__", None)

    def load(data: bytes) -> Any:
        try:
            return inner(data)
        except Exception:
            return Malformed(describe_malformed(message_class, data))

    return load


def _metadata_value(metadata: Any, key: str) -> str | bytes | None:
    for k, v in metadata or ():
        if k == key:
            return v  # type: ignore[no-any-return]
    return None


# -- the interceptor ----------------------------------------------------------------------------

class ServiceInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: RpcMetrics, *, guard: Guard | None = None,
                 costs: Mapping[str, Cost] | None = None) -> None:
        self.metrics = metrics
        self.guard = guard
        self.costs = dict(costs or {})

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        open_method = details.method.startswith(OPEN_METHODS)
        call = _Call(self, details.method.rsplit("/", 1)[-1], open_method)
        if self.guard is not None and not open_method:
            try:
                call.token = self.guard.authenticate(
                    _metadata_value(details.invocation_metadata, "authorization"))
            except Unauthenticated as exc:
                return call.refusal(handler, exc)
        return call.wrap(handler)


class _Call:
    """One call's checks, counting and error mapping."""

    def __init__(self, owner: ServiceInterceptor, method: str, open_method: bool) -> None:
        self.owner = owner
        self.method = method
        self.open = open_method
        self.token: Token | None = None
        self.client = ""
        self.code = "OK"
        self.started = time.monotonic()

    # -- bookkeeping

    def _count(self) -> None:
        if self.open and self.method == "Watch":
            # Clients watch each replica's health for as long as their channel lives (that is
            # how they skip a draining one); counted, it would put channel lifetimes in the
            # latency histogram and a CANCELLED in the error counts for each closed channel.
            return
        m = self.owner.metrics
        m.requests.labels(method=self.method, code=self.code).inc()
        m.rpc_latency.labels(method=self.method).observe(time.monotonic() - self.started)

    async def _abort(self, context: grpc.aio.ServicerContext, exc: AcecoderError) -> NoReturn:
        self.code = exc.grpc_code
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            context.set_trailing_metadata((("retry-after", f"{max(1, math.ceil(retry_after))}"),))
        await context.abort(grpc.StatusCode[self.code], str(exc) or type(exc).__name__)
        raise AssertionError("abort returned")  # pragma: no cover

    async def _fail(self, context: grpc.aio.ServicerContext, exc: BaseException) -> NoReturn:
        """Answer for an exception out of the call: its own code, or INTERNAL (also for a
        service we called that failed: its status is not ours to pass on)."""
        if isinstance(exc, AcecoderError) and not isinstance(exc, RemoteError):
            await self._abort(context, exc)
        if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
            self.code = "CANCELLED"
            raise exc
        if isinstance(exc, grpc.aio.AbortError):  # the servicer aborted by itself
            code = context.code() if hasattr(context, "code") else None
            self.code = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
            raise exc
        logger.error("%s failed", self.method, exc_info=exc)
        self.code = "INTERNAL"
        await context.abort(grpc.StatusCode.INTERNAL,
                            f"internal error ({type(exc).__name__}); the server's log has the "
                            "details")
        raise AssertionError("abort returned")  # pragma: no cover

    # -- the checks

    def admit(self, context: grpc.aio.ServicerContext) -> None:
        guard = self.owner.guard
        if guard is None or self.open:
            return
        address = peer_address(context.peer() or "")
        common = None
        if guard.limiter is not None and self.token is None:
            names = (context.auth_context() or {}).get("x509_common_name")
            common = names[0].decode(errors="replace") if names else None
        self.client = client_name(self.token, common, address)

    def check(self, request: Any) -> None:
        """One request message: parsed, and paid for."""
        if isinstance(request, Malformed):
            raise InvalidArgument(request.detail)
        guard = self.owner.guard
        if guard is None or self.open or guard.limiter is None:
            return
        cost = self.owner.costs.get(self.method)
        guard.charge(self.client, 1 if cost is None else cost(request))

    async def _checked(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            self.check(request)
            yield request

    # -- handlers

    def refusal(self, handler: grpc.RpcMethodHandler, exc: Unauthenticated
                ) -> grpc.RpcMethodHandler:
        """A handler of the request-streaming kind, so that grpc never reads the message."""
        guard = self.owner.guard
        assert guard is not None

        async def refuse(requests: Any, context: grpc.aio.ServicerContext) -> None:
            try:
                address = peer_address(context.peer() or "")
                await self._abort(context, guard.failed(address, exc))
            finally:
                self._count()

        if handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(refuse)
        return grpc.stream_unary_rpc_method_handler(refuse)

    def wrap(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        kw = {"request_deserializer": _deserializer(handler.request_deserializer),
              "response_serializer": handler.response_serializer}
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(self._unary(handler.unary_unary), **kw)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(handler.stream_unary, streaming=True), **kw)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(handler.unary_stream), **kw)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._stream(handler.stream_stream, streaming=True), **kw)
        return handler

    def _prepare(self, request: Any, context: grpc.aio.ServicerContext, streaming: bool) -> Any:
        self.started = time.monotonic()
        self.admit(context)
        if streaming:
            return self._checked(request)
        self.check(request)
        return request

    def _unary(self, inner: Callable[..., Any], *, streaming: bool = False) -> Callable[..., Any]:
        async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await inner(self._prepare(request, context, streaming), context)
            except BaseException as exc:
                await self._fail(context, exc)
            finally:
                self._count()

        return behaviour

    def _stream(self, inner: Callable[..., Any], *, streaming: bool = False) -> Callable[..., Any]:
        if not inspect.isasyncgenfunction(inner):
            # A handler that writes with `context.write` (grpc's own health Watch does) must
            # stay a coroutine: grpc refuses a generator that mixes in writes.
            return self._unary(inner, streaming=streaming)

        async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async for item in inner(self._prepare(request, context, streaming), context):
                    yield item
            except BaseException as exc:
                await self._fail(context, exc)
            finally:
                self._count()

        return behaviour
