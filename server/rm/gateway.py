"""The OpenRLHF-compatible HTTP gateway: POST /get_reward over the same batching core.

OpenRLHF's remote reward model posts ``{"query": [...], "prompts": [...], "labels": [...]}``,
where each query is the policy's whole chat-templated prompt and response, and reads
``rewards`` (used for advantages), ``scores`` (0-1, for filtering) and ``extra_logs``. The
gateway recovers (question, response) from the policy's template, scores them through
`RewardService.score` (so its items batch with gRPC traffic), and answers with the raw RM
score as the reward and its logistic as the score.

With `reward="rule"` (or "mix") the labels carry each sample's tests (a list of asserts, a
JSON string of one, or {"tests", "setup"}), or a record id looked up in a tests file
(AceCode-87K records): the program in the response runs in the executor, and the reward is
its pass rate (1.0 only when all pass, with `binary`), or the weighted mix with the RM score.
A sample that cannot be scored gets reward 0.0 and `extra_logs["failed"] = 1` with the
reason in `extra_logs["error"]`; the request as a whole still succeeds.

Hostile clients: every route but /health needs the token (checked on the headers, before the
body is read); the gRPC port's Guard is shared, so a client has one rate bucket (charged per
query) across both ports, and 429 carries Retry-After. The HTTP server itself bounds what a
client can hold: headers must arrive within `HEADER_TIMEOUT` and fit in `MAX_HEADER_BYTES`, a
body must fit in `max_body_bytes` (refused from its Content-Length, before reading) and arrive
within `BODY_TIMEOUT`, and at most `MAX_CONNECTIONS` connections are served at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import socket
import time
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from acecoder.clients.rewards import sigmoid
from acecoder.errors import (
    AcecoderError,
    DeadlineExceeded,
    InvalidArgument,
    ResourceExhausted,
    Unauthenticated,
)
from acecoder.models import templates
from acecoder.security import Guard, client_name, peer_address

from .metrics import RewardMetrics
from .service import RewardService

logger = logging.getLogger(__name__)

_HTTP_STATUS = {"INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401, "RESOURCE_EXHAUSTED": 429,
                "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504, "INTERNAL": 500,
                "NOT_FOUND": 404, "FAILED_PRECONDITION": 400}

HEADER_TIMEOUT = 10.0
"""Default seconds a connection has to deliver a request's headers (from connecting, or from
the end of its previous response); then it is closed."""
MAX_HEADER_BYTES = 64 * 1024
"""Request line and headers, together; longer is answered 400 and the connection closed."""
BODY_TIMEOUT = 60.0
"""Seconds a request has to deliver its whole body once its headers are in."""
MAX_BODY_BYTES = 64 * 1024 * 1024
"""Default cap on a request body (`max_body_bytes`)."""
MAX_CONNECTIONS = 1024
"""Connections served at once; more are answered 503."""


class _TooLarge(ResourceExhausted):
    http_status = 413


class _TooSlow(DeadlineExceeded):
    http_status = 408


def _error_response(exc: AcecoderError) -> JSONResponse:
    code = exc.grpc_code
    status = getattr(exc, "http_status", None) or _HTTP_STATUS.get(code, 500)
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return JSONResponse({"error": str(exc), "code": code}, status_code=status, headers=headers)


def policy_formats(spec: str) -> tuple[templates.ChatFormat, ...]:
    """The chat formats to try on queries: 'auto', 'chatml', 'llama3', or a tokenizer dir."""
    if spec == "auto":
        return (templates.CHATML, templates.LLAMA3)
    if spec == "chatml":
        return (templates.CHATML,)
    if spec == "llama3":
        return (templates.LLAMA3,)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(spec)
    except Exception as exc:
        raise ValueError(f"policy template {spec!r} is not auto, chatml, llama3 or a tokenizer "
                         f"directory ({type(exc).__name__}: {exc})") from None
    return (templates.format_from_tokenizer(tokenizer), templates.CHATML, templates.LLAMA3)


def split_all(queries: Sequence[Any], prompts: Sequence[Any] | None,
              formats: Sequence[templates.ChatFormat]) -> list[tuple[str, str]]:
    if not isinstance(queries, list) or not queries:
        raise InvalidArgument("'query' must be a non-empty list of strings")
    if prompts is not None and (not isinstance(prompts, list) or len(prompts) != len(queries)):
        raise InvalidArgument(f"'prompts' must be a list as long as 'query' ({len(queries)})")
    pairs = []
    for i, q in enumerate(queries):
        if not isinstance(q, str):
            raise InvalidArgument(f"query[{i}] must be a string, got {type(q).__name__}")
        p = prompts[i] if prompts is not None else None
        if p is not None and not isinstance(p, str):
            raise InvalidArgument(f"prompts[{i}] must be a string, got {type(p).__name__}")
        try:
            pairs.append(templates.split_query(q, p, formats))
        except ValueError as exc:
            raise InvalidArgument(f"query[{i}]: {exc}") from None
    return pairs


REWARDS = ("rm", "rule", "mix")


def read_tests_file(path: Any) -> dict[str, Any]:
    """{id: {"tests": [...], "setup": ...}} from AceCode-87K records (id, test_cases)."""
    from pathlib import Path

    from acecoder.jsonl import read_records, text_list

    def parse(rid: str, row: dict[str, Any]) -> dict[str, Any]:
        return {"tests": text_list(row, "test_cases"), "setup": str(row.get("setup") or "")}

    return dict(read_records(Path(path), lambda rid, row: (rid, parse(rid, row))))


class Gateway:
    def __init__(self, service: RewardService, *, policy_template: str = "auto",
                 metrics: RewardMetrics | None = None, reward: str = "rm",
                 binary: bool = False, rm_weight: float = 0.5,
                 tests: dict[str, Any] | None = None, security: Any = None,
                 guard: Guard | None = None, max_body_bytes: int = MAX_BODY_BYTES,
                 header_timeout: float = HEADER_TIMEOUT) -> None:
        if not max_body_bytes > 0 or not header_timeout > 0:
            raise ValueError(f"the gateway's body cap and header timeout must be > 0, got "
                             f"{max_body_bytes} bytes and {header_timeout}s")
        if reward not in REWARDS:
            raise ValueError(f"gateway reward must be one of {', '.join(REWARDS)}, got "
                             f"{reward!r}")
        if reward != "rm" and service.config.executor is None:
            raise ValueError(f"a {reward} gateway reward needs --executor HOST:PORT")
        self.service = service
        self.reward = reward
        self.binary = binary
        self.rm_weight = rm_weight
        self.tests = tests or {}
        self.formats = policy_formats(policy_template)
        self.metrics = metrics or service.metrics
        self.security = security
        self.guard = guard if guard is not None else (
            security.guard() if security is not None else None)
        """The gRPC port's Guard when both run in one server: one bucket per client."""
        self.max_body_bytes = max_body_bytes
        self.header_timeout = header_timeout
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None
        self.app = self._build_app()

    def _build_app(self) -> Any:
        app = FastAPI(title="acecoder reward gateway", docs_url=None, redoc_url=None)

        @app.post("/get_reward")
        async def get_reward(request: Request) -> JSONResponse:
            started = time.monotonic()
            code = "OK"
            try:
                body = await self._read_json(request)
                if not isinstance(body, dict) or "query" not in body:
                    raise InvalidArgument("the body must be a JSON object with a 'query' list")
                queries = body.get("query")
                if self.guard is not None:
                    self.guard.charge(request.scope.get("acecoder.client", ""),
                                      len(queries) if isinstance(queries, list) else 1)
                result = await _unless_gone(
                    request, self.get_reward(queries, body.get("prompts"), body.get("labels")))
                return JSONResponse(result)
            except AcecoderError as exc:
                code = exc.grpc_code
                return _error_response(exc)
            except Exception:
                code = "INTERNAL"
                logger.exception("get_reward failed")
                return _error_response(AcecoderError(
                    "internal error; the server's log has the details"))
            finally:
                self.metrics.requests.labels(method="get_reward", code=code).inc()
                self.metrics.rpc_latency.labels(method="get_reward").observe(
                    time.monotonic() - started)

        @app.get("/health")
        async def health() -> JSONResponse:
            ok = self.service.ready
            return JSONResponse({"status": "SERVING" if ok else "NOT_SERVING"},
                                status_code=200 if ok else 503)

        return _Authenticated(app, self)

    async def _read_json(self, request: Request) -> Any:
        """The body as JSON: refused from its Content-Length when too large (before reading a
        byte), read within BODY_TIMEOUT and no further than `max_body_bytes`."""
        cap = self.max_body_bytes
        too_large = _TooLarge(f"the body is over {cap} bytes (the gateway's limit); send fewer "
                              "queries per request")
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
            raise _TooSlow(f"the body did not arrive within {BODY_TIMEOUT:g}s") from None
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            raise InvalidArgument("the body is not JSON: send "
                                  '{"query": [...], "prompts": [...], "labels": [...]}') from None

    async def get_reward(self, queries: Any, prompts: Any = None,
                         labels: Any = None) -> dict[str, Any]:
        pairs = split_all(queries, prompts, self.formats)
        if self.reward == "rm":
            scored = await self.service.score(pairs)
            rewards = [s.score for s in scored]
            return {
                "rewards": rewards,
                "scores": [sigmoid(r) for r in rewards],
                "extra_logs": {"rm_score": rewards,
                               "truncated": [float(s.truncated) for s in scored]},
            }
        return await self._rule_reward(pairs, labels)

    def _tests_of(self, label: Any) -> tuple[tuple[str, ...], str]:
        from acecoder.clients.rewards import parse_tests

        if isinstance(label, str) and label in self.tests:
            entry = self.tests[label]
            return tuple(entry["tests"]), entry["setup"]
        if isinstance(label, str) and not label.lstrip().startswith(("[", "{")) \
                and "assert" not in label:  # an id, not test code
            raise ValueError(f"no record {label[:100]!r} in the tests file"
                             if self.tests else f"{label[:100]!r} is neither tests nor the id "
                             "of a record (start the server with --tests-file)")
        return parse_tests(label)

    async def _rule_reward(self, pairs: list[tuple[str, str]], labels: Any) -> dict[str, Any]:
        from acecoder.clients.rewards import Reward, Sample, combine, rule_results

        if not isinstance(labels, list) or len(labels) != len(pairs):
            raise InvalidArgument(f"'labels' must be a list as long as 'query' ({len(pairs)}): "
                                  "each sample's tests, or the id of a record in --tests-file")
        samples: list[Sample | None] = []
        problems: dict[int, str] = {}
        for i, ((question, response), label) in enumerate(zip(pairs, labels, strict=True)):
            try:
                tests, setup = self._tests_of(label)
            except ValueError as exc:
                problems[i] = f"labels[{i}]: {exc}"
                samples.append(None)
                continue
            samples.append(Sample(question, response, tests, setup))
        todo = [s for s in samples if s is not None]
        rules = iter(await rule_results(self.service.executor_client(), todo, deadline=120.0))
        scores: Any = iter([None] * len(todo))
        if self.reward == "mix" and todo:
            scores = iter([s.score for s in await self.service.score(
                [(s.question, s.response) for s in todo])])
        rewards: list[Reward] = []
        for i, s in enumerate(samples):
            if s is None:
                rewards.append(Reward(None, error=problems[i]))
            else:
                rewards.append(combine(self.reward, next(rules), next(scores),
                                       binary=self.binary, rm_weight=self.rm_weight))
        values = [0.0 if r.value is None else float(r.value) for r in rewards]
        filter_scores = values  # rule and mix rewards lie in [0, 1] already
        return {
            "rewards": values,
            "scores": [min(1.0, max(0.0, v)) for v in filter_scores],
            "extra_logs": {
                "pass_rate": [-1.0 if r.pass_rate is None else r.pass_rate for r in rewards],
                "failed": [float(r.value is None) for r in rewards],
                "hacked": [float(r.hacked) for r in rewards],
                "error": [r.error or "" for r in rewards],
            },
        }

    async def start(self, host: str, port: int) -> int:
        """Serve on host:port (0 picks one) inside the running event loop; returns the port."""
        import uvicorn

        class _Server(uvicorn.Server):
            # The process's own handler drains gRPC and HTTP together; uvicorn must not
            # take SIGTERM for itself.
            def install_signal_handlers(self) -> None:
                pass

            @contextlib.contextmanager
            def capture_signals(self):  # type: ignore[no-untyped-def, override]
                yield

        class _Config(uvicorn.Config):
            acecoder_header_timeout = HEADER_TIMEOUT  # read by _guarded_h11

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
        tls: dict[str, Any] = {}
        sec = self.security
        if sec is not None and sec.tls:  # the gRPC port's certificate, and its client CA
            import ssl

            tls = {"ssl_certfile": str(sec.tls_cert), "ssl_keyfile": str(sec.tls_key)}
            if sec.client_ca is not None:
                tls.update(ssl_ca_certs=str(sec.client_ca), ssl_cert_reqs=ssl.CERT_REQUIRED)
        config = _Config(self.app, log_level="warning", lifespan="off", access_log=False,
                         http=_guarded_h11(), h11_max_incomplete_event_size=MAX_HEADER_BYTES,
                         limit_concurrency=MAX_CONNECTIONS, **tls)
        config.acecoder_header_timeout = self.header_timeout
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                await self._task
                raise RuntimeError("the HTTP gateway did not start")
            await asyncio.sleep(0.01)
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._task, 10)


class _CallerGone(AcecoderError):
    grpc_code = "CANCELLED"
    http_status = 499


async def _unless_gone(request: Request, work: Any) -> Any:
    """Await `work`, cancelling it as soon as the HTTP caller disconnects: the RM service
    then takes the request's items out of its queue (a caller that gave up costs nothing
    more than the batch in flight)."""
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
                raise _CallerGone("the caller disconnected")
    finally:
        if not task.done():
            task.cancel()


class _Authenticated:
    """ASGI middleware: every route but /health needs the token, checked on the headers before
    the route reads anything; the client's name is left in the scope for the rate limit."""

    def __init__(self, app: Any, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        guard = self.gateway.guard
        if scope["type"] != "http" or guard is None or scope["path"] == "/health":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = peer_address(client[0] if client else "")
        headers = dict(scope.get("headers") or ())
        query = scope.get("query_string", b"").decode("latin-1")
        given = ""
        for part in query.split("&"):
            if part.startswith("token="):
                from urllib.parse import unquote

                given = unquote(part[6:])
        try:
            try:
                token = guard.authenticate(headers.get(b"authorization"), query_token=given)
            except Unauthenticated as exc:
                raise guard.failed(address, exc) from None
        except AcecoderError as exc:
            method = "get_reward" if scope["path"] == "/get_reward" else "http"
            self.gateway.metrics.requests.labels(method=method, code=exc.grpc_code).inc()
            await _error_response(exc)(scope, receive, send)
            return
        scope["acecoder.client"] = client_name(token, None, address)
        await self.app(scope, receive, send)


@functools.cache
def _guarded_h11() -> type:
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

