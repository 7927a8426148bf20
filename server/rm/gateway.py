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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from acecoder.clients.rewards import sigmoid
from acecoder.errors import AcecoderError, InvalidArgument

from . import templates
from .metrics import RewardMetrics
from .service import RewardService

logger = logging.getLogger(__name__)

_HTTP_STATUS = {"INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401, "RESOURCE_EXHAUSTED": 429,
                "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504, "INTERNAL": 500}


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
                 tests: dict[str, Any] | None = None, security: Any = None) -> None:
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
        self.limiter = None
        if security is not None and security.rate_limit is not None:
            from acecoder.security import RateLimiter

            self.limiter = RateLimiter(security.rate_limit,
                                       security.rate_burst or max(1, int(2 * security.rate_limit)))
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
                self.guard(request)
                try:
                    body = await request.json()
                except Exception:
                    raise InvalidArgument("the body is not JSON: send "
                                          '{"query": [...], "prompts": [...], "labels": [...]}')
                if not isinstance(body, dict) or "query" not in body:
                    raise InvalidArgument("the body must be a JSON object with a 'query' list")
                result = await self.get_reward(body.get("query"), body.get("prompts"),
                                               body.get("labels"))
                return JSONResponse(result)
            except AcecoderError as exc:
                code = exc.grpc_code
                return JSONResponse({"error": str(exc), "code": code},
                                    status_code=_HTTP_STATUS.get(code, 500))
            finally:
                self.metrics.requests.labels(method="get_reward", code=code).inc()
                self.metrics.rpc_latency.labels(method="get_reward").observe(
                    time.monotonic() - started)

        @app.get("/health")
        async def health() -> JSONResponse:
            ok = self.service.ready
            return JSONResponse({"status": "SERVING" if ok else "NOT_SERVING"},
                                status_code=200 if ok else 503)

        return app

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

    def guard(self, request: Request) -> None:
        """The gRPC server's rules over HTTP: with bearer tokens, a request carries one in
        `Authorization: Bearer T`, or (for OpenRLHF, which sends no headers) in the URL as
        `?token=T`; then the per-client rate limit."""
        from acecoder.errors import ResourceExhausted, Unauthenticated
        from acecoder.security import match_token

        token = None
        if self.security is not None and self.security.tokens:
            header = request.headers.get("authorization", "")
            given = header[7:].strip() if header.lower().startswith("bearer ") else \
                request.query_params.get("token", "")
            if not given:
                raise Unauthenticated("this gateway needs a bearer token: send "
                                      "'Authorization: Bearer TOKEN' or add ?token=TOKEN to the "
                                      "URL")
            token = match_token(given.encode(), self.security.tokens)
            if token is None:
                raise Unauthenticated("the bearer token is not one this server accepts")
        if self.limiter is not None:
            client = token.name if token is not None else (
                request.client.host if request.client else "?")
            if not self.limiter.allow(client):
                raise ResourceExhausted(f"rate limit: client {client} is over "
                                        f"{self.limiter.rate:g} calls/s; retry with backoff")

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
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off",
                                access_log=False, **tls)
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
