"""The HTTP port's rerank, classify, pooling and model-list routes, in process over ASGI with
a backend whose scores are known: shapes, order, and a 4xx saying what to change for every
kind of bad request (never a 500)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from acecoder.models.reward import BatchStats, Encoded, ModelDescription
from acecoder.server.rm import gateway
from acecoder.server.rm.config import RewardConfig
from acecoder.server.rm.service import RewardService


class LengthBackend:
    """Scores a response by its length, minus 10: longer is better, known in advance."""

    description = ModelDescription(model_id="tiny-rm", path="/models/tiny-rm",
                                   format="seq-cls", architecture="-", dtype="float32",
                                   device="cpu", max_length=512, head_trained=True,
                                   decoder=True)

    def encode(self, question: str, response: str) -> Encoded:
        ids = tuple(range(len(question) + len(response)))
        return Encoded(ids, len(question), False)

    def score(self, items: Sequence[Encoded], stats: BatchStats) -> list[float]:
        return [float(len(e.ids) - e.prefix_len) - 10.0 for e in items]

    def close(self) -> None:
        pass


def chatml(question: str, response: str) -> str:
    return (f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n{response}"
            "<|im_end|>")


def call(requests: list[tuple[str, str, Any]]) -> tuple[list[httpx.Response], Any]:
    """Answers to (method, path, json body) requests, and the service's metrics registry."""
    async def main() -> tuple[list[httpx.Response], Any]:
        service = RewardService(RewardConfig(max_items=8), backend=LengthBackend())
        await service.start()
        gw = gateway.Gateway(service)
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw.app),
                                         base_url="http://gw") as http:
                out = [await http.request(m, p, json=b) for m, p, b in requests]
        finally:
            await service.close()
        return out, service.metrics.registry

    return asyncio.run(main())


def one(method: str, path: str, body: Any = None) -> httpx.Response:
    return call([(method, path, body)])[0][0]


DOCS = ["x" * 12, "x" * 30, {"text": "x" * 5}]  # scores 2, 20, -5


def test_rerank_orders_by_score_and_keeps_indexes() -> None:
    (v1, v2, top, every), registry = call([
        ("POST", "/v1/rerank", {"query": "q", "documents": DOCS}),
        ("POST", "/v2/rerank", {"model": "tiny-rm", "query": "q", "documents": DOCS}),
        ("POST", "/rerank", {"query": "q", "documents": DOCS, "top_n": 2,
                             "return_documents": False}),
        ("POST", "/v1/rerank", {"query": "q", "documents": DOCS, "top_n": 0})])
    assert v1.status_code == 200, v1.text
    body = v1.json()
    assert [r["index"] for r in body["results"]] == [1, 0, 2]
    assert [r["score"] for r in body["results"]] == [20.0, 2.0, -5.0]
    scores = [r["relevance_score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
    assert body["results"][2]["document"] == {"text": "x" * 5}  # v1: documents come back
    assert body["results"][0]["pass_rate"] is None and body["results"][0]["verdicts"] == []
    assert body["model"] == "tiny-rm" and body["id"].startswith("rerank-")
    assert body["usage"]["prompt_tokens"] == 1 + 12 + 1 + 30 + 1 + 5
    assert body["meta"]["tokens"]["input_tokens"] == body["usage"]["total_tokens"]
    # no calibration for this model: the caller is told what relevance_score is then
    assert "sigmoid(raw score)" in " ".join(body["meta"]["warnings"])
    assert v2.status_code == 200 and "document" not in v2.json()["results"][0]  # v2: none
    assert [r["index"] for r in top.json()["results"]] == [1, 0]
    assert [r["index"] for r in every.json()["results"]] == [1, 0, 2]  # 0: all, as vLLM
    count = registry.get_sample_value
    assert count("acecoder_rm_requests_total", {"method": "rerank", "code": "OK"}) == 4


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"documents": ["a"]}, 400, "'query' is missing"),
    ({"query": "  ", "documents": ["a"]}, 400, "'query' is missing or empty"),
    ({"query": 3, "documents": ["a"]}, 400, "'query' must be a string"),
    ({"query": "q", "documents": []}, 400, "'documents' must be a non-empty list"),
    ({"query": "q"}, 400, "'documents' must be a non-empty list"),
    ({"query": "q", "documents": "abc"}, 400, "'documents' must be a non-empty list"),
    ({"query": "q", "documents": ["a", 7]}, 400, "documents[1] must be a string"),
    ({"query": "q", "documents": ["a", {"txt": "b"}]}, 400, "documents[1] must be a string"),
    ({"query": "q", "documents": ["a", ""]}, 400, "documents[1] is empty"),
    ({"query": "q", "documents": ["a"], "top_n": -2}, 400, "'top_n' must be >= 0"),
    ({"query": "q", "documents": ["a"], "top_n": "2"}, 400, "'top_n' must be an integer"),
    ({"query": "q", "documents": ["a"], "top_n": True}, 400, "'top_n' must be an integer"),
    ({"query": "q", "documents": ["a"], "return_documents": "yes"}, 400, "true or false"),
    ({"query": "q", "documents": ["a"], "model": "rerank-v3.5"}, 404, "is not served here"),
    ({"query": "q", "documents": ["a"], "model": 5}, 400, "'model' must be a string"),
    ({"query": "q", "documents": ["a"], "tests": "assert f()"}, 400, "'tests' must be a list"),
    ({"query": "q", "documents": ["a"], "tests": [1]}, 400, "tests[0] must be a string"),
    ({"query": "q", "documents": ["a"], "tests": ["assert f()"]}, 400, "knows no executor"),
    ({"query": "q", "documents": ["a"], "budget": 0}, 400, "'budget' must be > 0"),
    ({"query": "q", "documents": ["a"], "test_timeout": "1"}, 400, "a number of seconds"),
    ({"query": "q", "documents": ["a"] * 9}, 400, "the limit is 8"),
    (["q", "a"], 400, "must be a JSON object"),
])
def test_bad_rerank_requests_are_4xx_saying_what_to_change(body: Any, status: int,
                                                          says: str) -> None:
    r = one("POST", "/v2/rerank", body)
    assert r.status_code == status, r.text
    assert says in r.json()["error"]


def test_a_body_that_is_not_json_says_what_to_send() -> None:
    async def main() -> httpx.Response:
        service = RewardService(RewardConfig(), backend=LengthBackend())
        await service.start()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(
                app=gateway.Gateway(service).app), base_url="http://gw") as http:
            r = await http.post("/v1/rerank", content=b"{")
        await service.close()
        return r

    r = asyncio.run(main())
    assert r.status_code == 400 and '"documents"' in r.json()["error"]


def test_classify_and_pooling_score_each_conversation() -> None:
    (cls, raw, pool, chat, models), _ = call([
        ("POST", "/classify", {"input": [chatml("q", "x" * 30), chatml("q", "x" * 12)]}),
        ("POST", "/classify", {"input": chatml("q", "x" * 30), "use_activation": False}),
        ("POST", "/pooling", {"model": "tiny-rm", "input": [chatml("q", "x" * 30)],
                              "task": "classify"}),
        ("POST", "/classify", {"messages": [
            {"role": "system", "content": "be brief"}, {"role": "user", "content": "q"},
            {"role": "assistant", "content": [{"type": "text", "text": "x" * 30}]}]}),
        ("GET", "/v1/models", None)])
    assert cls.status_code == 200, cls.text
    data = cls.json()["data"]
    assert [d["index"] for d in data] == [0, 1]
    assert data[0]["probs"][0] > data[1]["probs"][0] and data[0]["num_classes"] == 1
    assert raw.json()["data"][0]["probs"] == [20.0]  # no activation: the raw score
    assert pool.json()["data"] == [{"index": 0, "object": "pooling",
                                    "data": data[0]["probs"]}]
    assert chat.json()["data"][0]["probs"] == data[0]["probs"]
    assert models.json()["data"][0]["id"] == "tiny-rm"
    assert models.json()["data"][0]["max_model_len"] == 512


@pytest.mark.parametrize(("path", "body", "status", "says"), [
    ("/classify", ["x"], 400, "must be a JSON object"),
    ("/classify", {}, 400, "'input' must be a string or a non-empty list"),
    ("/classify", {"input": []}, 400, "'input' must be a string or a non-empty list"),
    ("/classify", {"input": [1, 2, 3]}, 400, "token ids"),
    ("/classify", {"input": ["no template here"]}, 400, "input[0]"),
    ("/classify", {"input": "x", "model": "other"}, 404, "is not served here"),
    ("/classify", {"input": chatml("q", "r"), "use_activation": 1}, 400, "true or false"),
    ("/classify", {"messages": [{"role": "user", "content": "q"}]}, 400, "no assistant"),
    ("/classify", {"messages": [{"role": "assistant", "content": "r"}]}, 400,
     "no user message"),
    ("/classify", {"messages": "q"}, 400, "'messages' must be a list"),
    ("/classify", {"messages": [{"role": "user", "content": 5},
                                {"role": "assistant", "content": "r"}]}, 400,
     "messages[0].content"),
    ("/pooling", {"input": chatml("q", "r"), "task": "embed"}, 400, "task 'classify'"),
])
def test_bad_classify_requests_are_4xx_saying_what_to_change(path: str, body: Any,
                                                             status: int, says: str) -> None:
    r = one("POST", path, body)
    assert r.status_code == status, r.text
    assert says in r.json()["error"]
