"""The reward-model protocols other ecosystems speak, over `RewardService`: rerank the
Cohere/Jina/vLLM way, vLLM's /classify and /pooling for one-label reward models, and the
OpenAI-style model list. Request bodies in, JSON-ready dicts out; knows nothing of HTTP.

Rerank: ``{model?, query, documents: [str | {"text"}], top_n?, return_documents?}`` plus
acecoder's optional ``tests``, ``setup``, ``budget`` and ``test_timeout``. The query is the
question, each document a candidate response; they are ranked by `RewardService.rerank`
(pass rate first when tests ran, then RM score) and answered best first with
``relevance_score`` = the model's calibrated p(correct) of each (sigmoid(raw score) when the
model carries no calibration; meta.warnings then says so).

Classify/pooling: each ``input`` string is a whole chat-templated conversation (question and
response recovered as the /get_reward gateway does), or ``messages`` is one conversation; the
one label's value is the calibrated p(correct) (vLLM's sigmoid activation) or, with
``use_activation: false``, the raw score.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from acecoder.errors import InvalidArgument, NotFound
from acecoder.models import templates
from acecoder.ranking import Reranking

from .service import RewardService

LABEL = "LABEL_0"
"""The one label of the reward head (as `rm convert` writes id2label)."""

OWNER = "acecoder"

POOLING_TASKS = (None, "classify")
"""/pooling tasks a one-label reward head answers (vLLM's 'classify'; None is the default)."""


def _field(body: dict[str, Any], name: str, kinds: type | tuple[type, ...], what: str,
           default: Any = None) -> Any:
    """body[name] when it has one of `kinds` (bool is no int here), `default` when absent or
    null; else InvalidArgument naming the field and the type to send."""
    value = body.get(name)
    if value is None:
        return default
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise InvalidArgument(f"'{name}' must be {what}, got {type(value).__name__}")
    return value


def check_model(service: RewardService, body: dict[str, Any]) -> str:
    """The served model's name; a request that names another model is NOT_FOUND."""
    name = service.description.model_id
    asked = _field(body, "model", str, "a string (the served model's id; see GET /v1/models)")
    if asked and asked not in (name, service.description.path):
        raise NotFound(f"the model {asked!r} is not served here: this server serves {name!r} "
                       "(GET /v1/models); send that name, or leave 'model' out")
    return name


def model_list(service: RewardService) -> dict[str, Any]:
    """GET /v1/models: the served model, as vLLM's ModelList."""
    d = service.description
    return {"object": "list", "data": [{
        "id": d.model_id, "object": "model", "created": int(time.time()), "owned_by": OWNER,
        "root": d.path, "parent": None, "max_model_len": d.max_length, "permission": []}]}


# -- rerank -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RerankRequest:
    model: str
    query: str
    documents: list[str]
    top_n: int | None
    return_documents: bool
    tests: list[str]
    setup: str
    budget: float | None
    test_timeout: float | None


def parse_rerank(service: RewardService, body: Any, *,
                 return_documents: bool) -> RerankRequest:
    """A rerank body, checked; `return_documents` is the route's default."""
    if not isinstance(body, dict):
        raise InvalidArgument('the body must be a JSON object: {"query": "...", '
                              '"documents": ["...", ...]}')
    model = check_model(service, body)
    query = _field(body, "query", str, "a string (the question the documents answer)")
    if query is None or not query.strip():
        raise InvalidArgument("'query' is missing or empty: send the question the documents "
                              "(candidate responses) answer")
    docs = body.get("documents")
    if not isinstance(docs, list) or not docs:
        raise InvalidArgument("'documents' must be a non-empty list of strings or "
                              '{"text": "..."} objects (the candidate responses)')
    documents = []
    for i, doc in enumerate(docs):
        if isinstance(doc, dict) and isinstance(doc.get("text"), str):
            doc = doc["text"]
        if not isinstance(doc, str):
            raise InvalidArgument(f"documents[{i}] must be a string or {{\"text\": \"...\"}}, "
                                  f"got {type(doc).__name__}")
        if not doc.strip():
            raise InvalidArgument(f"documents[{i}] is empty: send the candidate response")
        documents.append(doc)
    top_n = _field(body, "top_n", int, "an integer >= 0 (0 or left out for all)")
    if top_n is not None and top_n < 0:
        raise InvalidArgument(f"'top_n' must be >= 0, got {top_n}: 0 or leaving it out gets "
                              "every document back")
    if top_n == 0:  # as vLLM's rerank reads it: every document
        top_n = None
    tests = _field(body, "tests", list, "a list of strings (test code, e.g. asserts)", [])
    for i, t in enumerate(tests):
        if not isinstance(t, str):
            raise InvalidArgument(f"tests[{i}] must be a string, got {type(t).__name__}")
    budget = _field(body, "budget", (int, float), "a number of seconds > 0")
    timeout = _field(body, "test_timeout", (int, float), "a number of seconds > 0")
    for name, value in (("budget", budget), ("test_timeout", timeout)):
        if value is not None and not value > 0:
            raise InvalidArgument(f"'{name}' must be > 0 seconds, got {value}")
    return RerankRequest(
        model=model, query=query, documents=documents, top_n=top_n,
        return_documents=_field(body, "return_documents", bool, "true or false",
                                return_documents),
        tests=tests, setup=_field(body, "setup", str, "a string (code run before the tests)", ""),
        budget=None if budget is None else float(budget),
        test_timeout=None if timeout is None else float(timeout))


async def rerank(service: RewardService, req: RerankRequest) -> dict[str, Any]:
    got = await service.rerank(req.query, req.documents, tests=req.tests, setup=req.setup,
                               test_timeout=req.test_timeout, budget=req.budget)
    return rerank_response(service, req, got)


def rerank_response(service: RewardService, req: RerankRequest,
                    got: Reranking) -> dict[str, Any]:
    """Cohere's and vLLM's rerank response (both read `results`; Cohere `meta`, vLLM
    `usage`), with acecoder's fields on each result: the raw `score`, `pass_rate` and
    `verdicts` (null and empty when no tests ran for it)."""
    results = []
    for r in got.ranked[:req.top_n]:
        item: dict[str, Any] = {
            "index": r.index,
            "relevance_score": 0.0 if r.score is None else service.probability(r.score),
            "score": r.score, "pass_rate": r.pass_rate, "verdicts": list(r.verdicts)}
        if req.return_documents:
            item["document"] = {"text": req.documents[r.index]}
        results.append(item)
    tokens = sum(r.tokens for r in got.ranked)
    warnings = [w for w in (service.warning,) if w]
    if not got.complete:
        warnings.append("the budget ran out before every candidate was scored and tested: "
                        "the ranking is of what had arrived (a candidate without a score has "
                        "relevance_score 0 and score null)")
    meta: dict[str, Any] = {"api_version": {"version": "2"},
                            "billed_units": {"search_units": 1},
                            "tokens": {"input_tokens": tokens, "output_tokens": 0}}
    if warnings:
        meta["warnings"] = warnings
    return {"id": f"rerank-{uuid.uuid4().hex}", "model": req.model, "results": results,
            "meta": meta, "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "complete": got.complete, "rule": got.rule}


# -- classify and pooling -----------------------------------------------------------------------


@dataclass(frozen=True)
class ClassifyRequest:
    model: str
    pairs: list[tuple[str, str]]
    use_activation: bool


def parse_classify(service: RewardService, body: Any,
                   formats: Sequence[templates.ChatFormat], *,
                   pooling: bool = False) -> ClassifyRequest:
    """vLLM's classification (or pooling) request: `input` (a conversation's templated text,
    or a list of them) or `messages` (one conversation)."""
    if not isinstance(body, dict):
        raise InvalidArgument('the body must be a JSON object: {"input": ["<chat-templated '
                              'question and response>", ...]} or {"messages": [...]}')
    model = check_model(service, body)
    if pooling:
        task = body.get("task")
        if task not in POOLING_TASKS:
            raise InvalidArgument(f"'task' {task!r} is not served: this is a one-label reward "
                                  "model; send task 'classify' or leave it out")
    activation = _field(body, "use_activation", bool, "true or false", True)
    if "messages" in body and body.get("input") is None:
        pairs = [conversation(body["messages"])]
    else:
        pairs = [_split(q, i, formats) for i, q in enumerate(_inputs(body.get("input")))]
    return ClassifyRequest(model, pairs, activation)


def _inputs(raw: Any) -> list[str]:
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
        return raw
    if isinstance(raw, list) and raw and all(isinstance(x, (int, list)) for x in raw):
        raise InvalidArgument("'input' holds token ids: send text (this server tokenizes with "
                              "the reward model's own template)")
    raise InvalidArgument("'input' must be a string or a non-empty list of strings, each a "
                          "chat-templated question and response (or send 'messages')")


def _split(query: str, i: int, formats: Sequence[templates.ChatFormat]) -> tuple[str, str]:
    try:
        return templates.split_query(query, None, formats)
    except ValueError as exc:
        raise InvalidArgument(f"input[{i}]: {exc}") from None


def _content(message: dict[str, Any], i: int) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        if parts and all(isinstance(p, str) for p in parts) and len(parts) == len(content):
            return "".join(str(p) for p in parts)
    raise InvalidArgument(f"messages[{i}].content must be a string or a list of "
                          '{"type": "text", "text": "..."} parts')


def conversation(messages: Any) -> tuple[str, str]:
    """(question, response) of a chat: the last assistant message and the user message
    before it."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise InvalidArgument("'messages' must be a list of {\"role\", \"content\"} objects")
    roles = [m.get("role") for m in messages]
    if "assistant" not in roles:
        raise InvalidArgument("'messages' has no assistant message: end it with the response "
                              "to score")
    last = len(roles) - 1 - roles[::-1].index("assistant")
    users = [i for i in range(last) if roles[i] == "user"]
    if not users:
        raise InvalidArgument("'messages' has no user message before the last assistant one: "
                              "send the question as a user message")
    return _content(messages[users[-1]], users[-1]), _content(messages[last], last)


async def classify(service: RewardService, req: ClassifyRequest, *,
                   pooling: bool = False) -> dict[str, Any]:
    """vLLM's ClassificationResponse (or PoolingResponse) for the request's items."""
    scored = await service.score(req.pairs)
    values = [s.probability if req.use_activation else s.score for s in scored]
    tokens = sum(s.tokens for s in scored)
    if pooling:
        data = [{"index": i, "object": "pooling", "data": [v]} for i, v in enumerate(values)]
    else:
        data = [{"index": i, "label": LABEL, "probs": [v], "num_classes": 1}
                for i, v in enumerate(values)]
    kind = "pool" if pooling else "classify"
    return {"id": f"{kind}-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()),
            "model": req.model, "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}}
