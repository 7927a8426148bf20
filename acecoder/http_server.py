"""The HTTP front every acecoder server can run beside its gRPC port: uvicorn with a hardened h11
protocol, the port's TLS, the bearer tokens and rate limit of the gRPC port (one `Guard`), bodies
read within bounds, and work cancelled when its caller hangs up. Routes are the server's own
(the RM server's OpenRLHF gateway, the executor's SandboxFusion-compatible front).

Hostile clients: headers must arrive within the header timeout and fit in `MAX_HEADER_BYTES`, a
body must fit in its cap (refused from its Content-Length, before reading) and arrive within
`BODY_TIMEOUT`, and at most `MAX_CONNECTIONS` connections are served at once. fastapi and uvicorn
are imported only when a server starts one (they are the `http` extra).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import socket
from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import unquote

from acecoder.errors import AcecoderError, DeadlineExceeded, ResourceExhausted, Unauthenticated
from acecoder.security import Guard, client_name, peer_address

HTTP_STATUS = {"INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401, "RESOURCE_EXHAUSTED": 429,
               "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504, "INTERNAL": 500,
               "NOT_FOUND": 404, "FAILED_PRECONDITION": 400, "CANCELLED": 499}
"""The HTTP status of each error's gRPC code (an error may name its own `http_status`)."""

HEADER_TIMEOUT = 10.0
"""Default seconds a connection has to deliver a request's headers (from connecting, or from
the end of its previous response); then it is closed."""
MAX_HEADER_BYTES = 64 * 1024
"""Request line and headers, together; longer is answered 400 and the connection closed."""
BODY_TIMEOUT = 60.0
"""Seconds a request has to deliver its whole body once its headers are in."""
MAX_BODY_BYTES = 64 * 1024 * 1024
"""Default cap on a request body."""
MAX_CONNECTIONS = 1024
"""Connections served at once; more are answered 503."""


def require(extra: str = "http") -> None:
    """Raise ValueError naming the extra to install when fastapi or uvicorn is missing."""
    missing = []
    for name in ("fastapi", "uvicorn"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ValueError(f"the HTTP port needs {' and '.join(missing)}, which are not installed: "
                         f"pip install 'acecoder[{extra}]'")


class TooLarge(ResourceExhausted):
    http_status = 413


class TooSlow(DeadlineExceeded):
    http_status = 408


class CallerGone(AcecoderError):
    grpc_code = "CANCELLED"
    http_status = 499


def http_status(exc: AcecoderError) -> int:
    return getattr(exc, "http_status", None) or HTTP_STATUS.get(exc.grpc_code, 500)


def error_response(exc: AcecoderError) -> Any:
    """`{"error": message, "code": GRPC_CODE}` with the error's HTTP status (and Retry-After
    when the error knows when to retry)."""
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": str(exc), "code": exc.grpc_code}, status_code=http_status(exc),
                        headers=retry_headers(exc))


def retry_headers(exc: AcecoderError) -> dict[str, str]:
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is None:
        return {}
    return {"Retry-After": str(max(1, math.ceil(retry_after)))}


async def read_body(request: Any, cap: int, *, hint: str = "send less") -> bytes:
    """The whole body: refused from its Content-Length when over `cap` (before reading a byte),
    read within BODY_TIMEOUT and no further than `cap`."""
    from acecoder.errors import InvalidArgument

    too_large = TooLarge(f"the body is over {cap} bytes (this server's limit); {hint}")
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise InvalidArgument("Content-Length is not a number")
        if int(length) > cap:
            raise too_large
    data = bytearray()

    async def read() -> None:
        async for chunk in request.stream():
            data.extend(chunk)
            if len(data) > cap:
                raise too_large

    try:
        await asyncio.wait_for(read(), BODY_TIMEOUT)
    except TimeoutError:
        raise TooSlow(f"the body did not arrive within {BODY_TIMEOUT:g}s") from None
    return bytes(data)


async def unless_gone(request: Any, work: Any) -> Any:
    """Await `work`, cancelling it as soon as the HTTP caller disconnects (a caller that gave
    up frees what its request held: a place in a queue, a worker)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.25)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                raise CallerGone("the caller disconnected")
    finally:
        if not task.done():
            task.cancel()


class Authenticated:
    """ASGI middleware: every path but `open_paths` needs the token (`Authorization: Bearer T`,
    or `?token=T` for callers that cannot send headers), checked on the headers before the route
    reads anything; the client's name is left in the scope (`acecoder.client`) for the rate
    limit. A refusal is answered by `refuse(exc)` (an ASGI response) after `refused(path, exc)`
    (to count it)."""

    def __init__(self, app: Any, guard: Guard | None, *, open_paths: Collection[str],
                 refuse: Callable[[AcecoderError], Any] = error_response,
                 refused: Callable[[str, AcecoderError], None] | None = None) -> None:
        self.app = app
        self.guard = guard
        self.open_paths = frozenset(open_paths)
        self.refuse = refuse
        self.refused = refused

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        guard = self.guard
        if scope["type"] != "http" or guard is None or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = peer_address(client[0] if client else "")
        headers = dict(scope.get("headers") or ())
        query = scope.get("query_string", b"").decode("latin-1")
        given = ""
        for part in query.split("&"):
            if part.startswith("token="):
                given = unquote(part[6:])
        try:
            try:
                token = guard.authenticate(headers.get(b"authorization"), query_token=given)
            except Unauthenticated as exc:
                raise guard.failed(address, exc) from None
        except AcecoderError as exc:
            if self.refused is not None:
                self.refused(scope["path"], exc)
            await self.refuse(exc)(scope, receive, send)
            return
        scope["acecoder.client"] = client_name(token, None, address)
        await self.app(scope, receive, send)


class HttpServer:
    """An ASGI app served by uvicorn inside the running event loop, beside a gRPC server: the
    process's own signal handler drains both, so uvicorn never takes SIGTERM for itself."""

    def __init__(self, app: Any, *, security: Any = None,
                 header_timeout: float = HEADER_TIMEOUT) -> None:
        if not header_timeout > 0:
            raise ValueError(f"the HTTP header timeout must be > 0, got {header_timeout}s")
        self.app = app
        self.security = security
        self.header_timeout = header_timeout
        self.port: int | None = None
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> int:
        """Serve on host:port (0 picks one); returns the port. TLS (and mutual TLS) when the
        security has a certificate, the gRPC port's own."""
        import uvicorn

        class _Server(uvicorn.Server):
            def install_signal_handlers(self) -> None:
                pass

            @contextlib.contextmanager
            def capture_signals(self):  # type: ignore[no-untyped-def, override]
                yield

        class _Config(uvicorn.Config):
            acecoder_header_timeout = HEADER_TIMEOUT  # read by guarded_h11

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
        tls: dict[str, Any] = {}
        sec = self.security
        if sec is not None and sec.tls:
            import ssl

            tls = {"ssl_certfile": str(sec.tls_cert), "ssl_keyfile": str(sec.tls_key)}
            if sec.client_ca is not None:
                tls.update(ssl_ca_certs=str(sec.client_ca), ssl_cert_reqs=ssl.CERT_REQUIRED)
        config = _Config(self.app, log_level="warning", lifespan="off", access_log=False,
                         http=guarded_h11(), h11_max_incomplete_event_size=MAX_HEADER_BYTES,
                         limit_concurrency=MAX_CONNECTIONS, **tls)
        config.acecoder_header_timeout = self.header_timeout
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                await self._task
                raise RuntimeError("the HTTP server did not start")
            await asyncio.sleep(0.01)
        self.port = int(sock.getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._task, 10)


@functools.cache
def guarded_h11() -> type:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Guarded(H11Protocol):  # type: ignore[misc]
        """uvicorn's h11 protocol with a deadline on each request's headers: a client that
        connects and sends a partial request (or nothing) is closed after the header timeout,
        however slowly it trickles bytes (uvicorn's keep-alive timer restarts on every
        byte)."""

        header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            timeout = getattr(self.config, "acecoder_header_timeout", HEADER_TIMEOUT)
            self.header_timer = self.loop.call_later(timeout, self._expired)

        def _disarm(self) -> None:
            if self.header_timer is not None:
                self.header_timer.cancel()
                self.header_timer = None

        def _expired(self) -> None:
            self.header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a request's headers are in
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

    return Guarded
