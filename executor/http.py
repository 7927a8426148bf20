"""The executor's HTTP front (`--http-port`): SandboxFusion's `POST /run_code` and `GET /v1/ping`,
the batched `POST /acecoder/v1/run_tests`, and `GET /health`, over the same ExecutorService as
the gRPC port (one queue, one drain), with its tokens, rate limit, TLS and metrics.

Errors are FastAPI's `{"detail": ...}` (what SandboxFusion answers), with the gRPC code added:
a /run_code body that does not fit SandboxFusion's model is 422 with pydantic's error list;
limits of this executor are 400, a missing or wrong token 401, a full queue or rate limit 429
(with Retry-After), draining 503. A language this executor has no toolchain for, or a failure
of the sandbox itself, is a 200 `SandboxError`, as SandboxFusion reports its own failures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from acecoder.errors import AcecoderError, FailedPrecondition, InvalidArgument
from acecoder.http_server import (
    HEADER_TIMEOUT,
    MAX_BODY_BYTES,
    Authenticated,
    HttpServer,
    http_status,
    read_body,
    retry_headers,
    unless_gone,
)
from acecoder.security import Guard

from . import fusion
from .service import ExecutorService

logger = logging.getLogger(__name__)

OPEN_PATHS = ("/v1/ping", "/health")
"""Routes that need no token: probes carry none."""


def _detail(exc: AcecoderError) -> JSONResponse:
    if isinstance(exc, fusion.RequestInvalid):
        return JSONResponse({"detail": exc.errors}, status_code=422)
    return JSONResponse({"detail": str(exc), "code": exc.grpc_code},
                        status_code=http_status(exc), headers=retry_headers(exc))


class ExecutorHttp:
    """The FastAPI app and its server. `await start(host, port)`, then `await stop()`."""

    def __init__(self, service: ExecutorService, *, guard: Guard | None = None,
                 security: Any = None, max_body_bytes: int = MAX_BODY_BYTES,
                 header_timeout: float = HEADER_TIMEOUT,
                 serving: Callable[[], bool] | None = None) -> None:
        if not max_body_bytes > 0:
            raise ValueError(f"the HTTP body cap must be > 0, got {max_body_bytes} bytes")
        self.service = service
        self.metrics = service.metrics
        self.guard = guard
        self.max_body_bytes = max_body_bytes
        self.serving = serving or (lambda: not service.draining)
        self.app = self._build_app()
        self._http = HttpServer(self.app, security=security, header_timeout=header_timeout)

    @property
    def port(self) -> int | None:
        return self._http.port

    async def start(self, host: str, port: int) -> int:
        return await self._http.start(host, port)

    async def stop(self) -> None:
        await self._http.stop()

    def _count(self, method: str, code: str, started: float | None = None) -> None:
        self.metrics.requests.labels(method=method, code=code).inc()
        if started is not None:
            self.metrics.rpc_latency.labels(method=method).observe(time.monotonic() - started)

    async def _body(self, request: Request) -> bytes:
        return await read_body(request, self.max_body_bytes,
                               hint="send a smaller program or fewer tests")

    def _validate(self, fields: dict[str, Any], run_code: bool) -> Any:
        try:
            return self.service.validate(**fields)
        except InvalidArgument as exc:
            raise InvalidArgument(fusion.in_request_terms(str(exc), run_code=run_code)) from None

    def _charge(self, request: Request) -> None:
        if self.guard is not None:
            self.guard.charge(request.scope.get("acecoder.client", ""), 1)

    def _build_app(self) -> Any:
        app = FastAPI(title="acecoder executor", docs_url=None, redoc_url=None,
                      openapi_url=None)

        @app.post("/run_code")
        async def run_code(request: Request) -> JSONResponse:
            started = time.monotonic()
            code = "OK"
            try:
                body = fusion.decode_body(await self._body(request),
                                          request.headers.get("content-type"))
                run = fusion.parse_run_code(body)
                self._charge(request)
                req = self._validate(fusion.run_code_fields(run, self.service.config), True)
                result = await unless_gone(request, self.service.execute(req))
                return JSONResponse(fusion.run_code_response(result, run.language))
            except FailedPrecondition as exc:  # no toolchain here: the sandbox cannot run it
                code = exc.grpc_code
                return JSONResponse(fusion.sandbox_error(str(exc)))
            except AcecoderError as exc:
                code = exc.grpc_code
                return _detail(exc)
            except Exception:
                code = "INTERNAL"
                logger.exception("run_code failed")
                return JSONResponse(fusion.sandbox_error(
                    "internal error of the sandbox; its log has the details"))
            finally:
                self._count("run_code", code, started)

        @app.post("/acecoder/v1/run_tests")
        async def run_tests(request: Request) -> JSONResponse:
            started = time.monotonic()
            code = "OK"
            try:
                fields = fusion.run_tests_fields(fusion.json_body(await self._body(request)))
                self._charge(request)
                req = self._validate(fields, False)
                result = await unless_gone(request, self.service.execute(req))
                return JSONResponse(fusion.run_tests_response(result))
            except AcecoderError as exc:
                code = exc.grpc_code
                return _detail(exc)
            except Exception:
                code = "INTERNAL"
                logger.exception("run_tests failed")
                return _detail(AcecoderError("internal error; the server's log has the details"))
            finally:
                self._count("run_tests", code, started)

        @app.get("/v1/ping")
        async def ping() -> JSONResponse:
            return JSONResponse("pong")

        @app.get("/health")
        async def health() -> JSONResponse:
            ok = self.serving()
            return JSONResponse({"status": "SERVING" if ok else "NOT_SERVING"},
                                status_code=200 if ok else 503)

        routes = {"/run_code": "run_code", "/acecoder/v1/run_tests": "run_tests"}

        def refused(path: str, exc: AcecoderError) -> None:
            self._count(routes.get(path, "http"), exc.grpc_code)

        return Authenticated(app, self.guard, open_paths=OPEN_PATHS, refuse=_detail,
                             refused=refused)
