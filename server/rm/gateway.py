"""The RM server's HTTP port: OpenRLHF's POST /get_reward, Cohere/Jina/vLLM rerank
(/rerank, /v1/rerank, /v2/rerank), vLLM's /classify, /pooling and GET /v1/models (see
`protocols`), all over the same batching core and behind the same guard.

OpenRLHF's remote reward model posts ``{"query": [...], "prompts": [...], "labels": [...]}``,
where each query is the policy's whole chat-templated prompt and response, and reads
``rewards`` (used for advantages), ``scores`` (0-1, for filtering) and ``extra_logs``. The
gateway recovers (question, response) from the policy's template, scores them through
`RewardService.score` (so its items batch with gRPC traffic), and answers with the raw RM
score as the reward and its calibrated probability of being correct (see ModelInfo) as the
score.

With `reward="rule"` (or "mix") the labels carry each sample's tests (a list of asserts, a
JSON string of one, {"tests", "setup"}, or {"inputs", "outputs"} ground truth, call tests with
"fn_name"; see clients.rewards.parse_tests), or a record id looked up in a tests file
(AceCode-87K records): the program in the response runs in the executor, and the reward is
its pass rate (1.0 only when all pass, with `binary`), or the weighted mix with the RM score.
A sample that cannot be scored gets reward 0.0 and `extra_logs["failed"] = 1` with the
reason in `extra_logs["error"]`; the request as a whole still succeeds.

Hostile clients: every route but /health needs the token (checked on the headers, before the
body is read); the gRPC port's Guard is shared, so a client has one rate bucket (charged per
query, document or input) across both ports, and 429 carries Retry-After. The HTTP server
itself bounds what a client can hold: headers must arrive within `HEADER_TIMEOUT` and fit
in `MAX_HEADER_BYTES`, a body must fit in `max_body_bytes` (refused from its Content-Length,
before reading) and arrive within `BODY_TIMEOUT`, and at most `MAX_CONNECTIONS` connections
are served at once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from acecoder.errors import AcecoderError, InvalidArgument
from acecoder.http_server import (
    HEADER_TIMEOUT,
    MAX_BODY_BYTES,
    Authenticated,
    HttpServer,
    error_response,
    read_body,
    unless_gone,
)
from acecoder.models import templates
from acecoder.security import Guard

from . import protocols
from .metrics import RewardMetrics
from .service import RewardService

logger = logging.getLogger(__name__)

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

ROUTE_METHODS = {"/get_reward": "get_reward", "/rerank": "rerank", "/v1/rerank": "rerank",
                 "/v2/rerank": "rerank", "/classify": "classify", "/pooling": "pooling",
                 "/v1/models": "models"}
"""The metrics' method label of each route."""
BODY_SHAPES = {
    "get_reward": '{"query": [...], "prompts": [...], "labels": [...]}',
    "rerank": '{"query": "...", "documents": ["...", ...], "top_n": N}',
    "classify": '{"input": ["<chat-templated question and response>", ...]}',
    "pooling": '{"input": ["<chat-templated question and response>", ...]}',
}


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
        self._http: HttpServer | None = None
        self.app = self._build_app()

    def _build_app(self) -> Any:
        app = FastAPI(title="acecoder reward gateway", docs_url=None, redoc_url=None)

        @app.post("/get_reward")
        async def get_reward(request: Request) -> JSONResponse:
            async def work(body: Any) -> dict[str, Any]:
                if not isinstance(body, dict) or "query" not in body:
                    raise InvalidArgument("the body must be a JSON object with a 'query' list")
                queries = body.get("query")
                self._charge(request, len(queries) if isinstance(queries, list) else 1)
                return await self.get_reward(queries, body.get("prompts"), body.get("labels"))

            return await self._serve(request, "get_reward", work)

        def rerank_route(path: str, return_documents: bool) -> None:
            async def route(request: Request) -> JSONResponse:
                async def work(body: Any) -> dict[str, Any]:
                    req = protocols.parse_rerank(self.service, body,
                                                 return_documents=return_documents)
                    self._charge(request, len(req.documents))
                    return await protocols.rerank(self.service, req)

                return await self._serve(request, "rerank", work)

            app.add_api_route(path, route, methods=["POST"])

        # vLLM and Jina answer with the documents unless told not to; Cohere's v2 never does
        rerank_route("/rerank", True)
        rerank_route("/v1/rerank", True)
        rerank_route("/v2/rerank", False)

        def classify_route(path: str, method: str, pooling: bool) -> None:
            async def route(request: Request) -> JSONResponse:
                async def work(body: Any) -> dict[str, Any]:
                    req = protocols.parse_classify(self.service, body, self.formats,
                                                   pooling=pooling)
                    self._charge(request, len(req.pairs))
                    return await protocols.classify(self.service, req, pooling=pooling)

                return await self._serve(request, method, work)

            app.add_api_route(path, route, methods=["POST"])

        classify_route("/classify", "classify", False)
        classify_route("/pooling", "pooling", True)

        @app.get("/v1/models")
        async def models(request: Request) -> JSONResponse:
            async def work(body: Any) -> dict[str, Any]:
                self._charge(request, 1)
                return protocols.model_list(self.service)

            return await self._serve(request, "models", work, read=False)

        @app.get("/health")
        async def health() -> JSONResponse:
            ok = self.service.ready
            return JSONResponse({"status": "SERVING" if ok else "NOT_SERVING"},
                                status_code=200 if ok else 503)

        def refused(path: str, exc: AcecoderError) -> None:
            method = ROUTE_METHODS.get(path, "http")
            self.metrics.requests.labels(method=method, code=exc.grpc_code).inc()

        return Authenticated(app, self.guard, open_paths=("/health",), refused=refused)

    def _charge(self, request: Request, items: int) -> None:
        """One rate bucket per client, shared with the gRPC port, charged per item."""
        if self.guard is not None:
            self.guard.charge(request.scope.get("acecoder.client", ""), items)

    async def _serve(self, request: Request, method: str,
                     work: Callable[[Any], Awaitable[dict[str, Any]]], *,
                     read: bool = True) -> JSONResponse:
        """Every route's frame: the body read within bounds, the work cancelled when the
        caller hangs up, errors as JSON saying what to change (a bug as a bare 500), and the
        call counted and timed under `method`."""
        started = time.monotonic()
        code = "OK"
        try:
            body = await self._read_json(request, method) if read else None
            return JSONResponse(await unless_gone(request, work(body)))
        except AcecoderError as exc:
            code = exc.grpc_code
            return error_response(exc)
        except Exception:
            code = "INTERNAL"
            logger.exception("%s failed", method)
            return error_response(AcecoderError(
                "internal error; the server's log has the details"))
        finally:
            self.metrics.requests.labels(method=method, code=code).inc()
            self.metrics.rpc_latency.labels(method=method).observe(time.monotonic() - started)

    async def _read_json(self, request: Request, method: str = "get_reward") -> Any:
        """The body as JSON: refused from its Content-Length when too large (before reading a
        byte), read within the body timeout and no further than `max_body_bytes`."""
        data = await read_body(request, self.max_body_bytes, hint="send fewer items per request")
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            raise InvalidArgument(f"the body is not JSON: send {BODY_SHAPES[method]}") from None

    async def get_reward(self, queries: Any, prompts: Any = None,
                         labels: Any = None) -> dict[str, Any]:
        pairs = split_all(queries, prompts, self.formats)
        if self.reward == "rm":
            scored = await self.service.score(pairs)
            rewards = [s.score for s in scored]
            return {
                "rewards": rewards,
                "scores": [s.probability for s in scored],
                "extra_logs": {"rm_score": rewards,
                               "truncated": [float(s.truncated) for s in scored]},
            }
        return await self._rule_reward(pairs, labels)

    def _tests_of(self, label: Any) -> tuple[tuple[Any, ...], str, str]:
        """(tests, setup, fn_name) of a label (see clients.rewards.parse_tests)."""
        from acecoder.clients.rewards import parse_tests

        if isinstance(label, str) and label in self.tests:
            entry = self.tests[label]
            return tuple(entry["tests"]), entry["setup"], ""
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
                tests, setup, fn_name = self._tests_of(label)
            except ValueError as exc:
                problems[i] = f"labels[{i}]: {exc}"
                samples.append(None)
                continue
            samples.append(Sample(question, response, tests, setup, fn_name))
        todo = [s for s in samples if s is not None]
        rules = iter(await rule_results(self.service.executor_client(), todo, deadline=120.0))
        scores: Any = iter([None] * len(todo))
        if self.reward == "mix" and todo:
            scores = iter([(s.score, s.probability) for s in await self.service.score(
                [(s.question, s.response) for s in todo])])
        rewards: list[Reward] = []
        for i, s in enumerate(samples):
            if s is None:
                rewards.append(Reward(None, error=problems[i]))
            else:
                score, probability = next(scores) or (None, None)
                rewards.append(combine(self.reward, next(rules), score, binary=self.binary,
                                       rm_weight=self.rm_weight, probability=probability))
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
        self._http = HttpServer(self.app, security=self.security,
                                header_timeout=self.header_timeout)
        return await self._http.start(host, port)

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.stop()
