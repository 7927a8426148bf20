"""The RM server's HTTP port speaks the reward protocols the ecosystem already calls: rerank
through Cohere's own SDK, vLLM's /classify, /pooling and /v1/models checked with vLLM's own
protocol classes, on a real server (the embedded model, the session's executor for tests);
and each route behind the same TLS, tokens, rate limit and metrics as /get_reward."""

from __future__ import annotations

import re
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cohere
import httpx
import pytest

from acecoder.clients import RewardClient
from acecoder.serving import spawn_server
from tests.integration.test_rm_server import BAD, GOOD, QUESTION, RMServer, start_rm, stop
from tests.pki import CA, Issued

MODEL = "embedded:smollm2-135m"
TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(0, 0) == 0"]
TIMES = "def add(a, b):\n    return a * b\n"
FENCED = "Sure!\n```python\n" + GOOD + "```\n"


@pytest.fixture(scope="module")
def rm(server) -> Iterator[RMServer]:  # type: ignore[no-untyped-def]
    s = start_rm("--executor", server.target)
    yield s
    assert stop(s) == 0


@pytest.fixture(scope="module")
def rm_client(rm: RMServer) -> Iterator[RewardClient]:
    with RewardClient(rm.target, timeout=120) as c:
        yield c


def chatml(question: str, response: str) -> str:
    return (f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n{response}"
            "<|im_end|>")


def metric(rm: RMServer, method: str, code: str) -> float:
    text = httpx.get(rm.metrics, timeout=10).text
    m = re.search(rf'^acecoder_rm_requests_total\{{code="{code}",method="{method}"\}} (\S+)$',
                  text, re.M)
    return float(m.group(1)) if m else 0.0


def test_cohere_sdk_reranks_by_calibrated_probability(rm: RMServer,
                                                      rm_client: RewardClient) -> None:
    """Cohere's ClientV2.rerank pointed at the server: candidates best first, each
    relevance_score the model's calibrated p(correct) of that candidate."""
    before = metric(rm, "rerank", "OK")
    co = cohere.ClientV2(base_url=rm.http, api_key="not-checked-here", max_retries=0)
    candidates = [BAD, GOOD, TIMES]
    got = co.rerank(model=MODEL, query=QUESTION, documents=candidates)
    probabilities = [s.probability for s in rm_client.score([(QUESTION, c) for c in candidates])]
    assert [r.index for r in got.results] == sorted(range(3), key=lambda i: -probabilities[i])
    assert got.results[0].index == 1  # the correct program
    assert [r.relevance_score for r in got.results] == pytest.approx(
        [probabilities[r.index] for r in got.results], abs=1e-4)
    assert got.id and got.id.startswith("rerank-")
    assert got.meta is not None and got.meta.tokens is not None
    assert got.meta.tokens.input_tokens and got.meta.tokens.input_tokens > 0
    assert not got.meta.warnings  # the embedded model is calibrated and its head trained
    top = co.rerank(model=MODEL, query=QUESTION, documents=candidates, top_n=1)
    assert [r.index for r in top.results] == [1]
    every = co.rerank(model=MODEL, query=QUESTION, documents=candidates, top_n=0)
    assert sorted(r.index for r in every.results) == [0, 1, 2]  # 0 is all, as vLLM reads it
    assert metric(rm, "rerank", "OK") - before == 3


def test_cohere_sdk_sees_4xx_errors(rm: RMServer) -> None:
    co = cohere.ClientV2(base_url=rm.http, api_key="x", max_retries=0)
    with pytest.raises(cohere.errors.NotFoundError) as missing:
        co.rerank(model="rerank-v3.5", query=QUESTION, documents=[GOOD])
    assert "is not served here" in missing.value.body["error"]
    with pytest.raises(cohere.errors.BadRequestError) as bad:
        co.rerank(model=MODEL, query=QUESTION, documents=[GOOD], top_n=-1)
    assert "'top_n' must be >= 0" in bad.value.body["error"]
    with pytest.raises(cohere.errors.BadRequestError) as empty:
        co.rerank(model=MODEL, query=QUESTION, documents=[])
    assert "'documents' must be a non-empty list" in empty.value.body["error"]


def test_rerank_with_tests_ranks_by_pass_rate_then_score(rm: RMServer) -> None:
    """acecoder's extensions: tests (and setup) run in the executor; the pass rate ranks
    first, the RM score breaks ties."""
    r = httpx.post(rm.http + "/v1/rerank", json={
        "query": QUESTION, "documents": [BAD, {"text": FENCED}, TIMES], "tests": TESTS,
        "setup": "import math"}, timeout=120)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results[0]["index"] == 1 and results[0]["pass_rate"] == 1.0
    assert results[0]["verdicts"] == ["PASSED"] * 3
    assert results[0]["document"] == {"text": FENCED}
    assert [x["pass_rate"] for x in results[1:]] == pytest.approx([1 / 3, 1 / 3])
    assert results[1]["score"] >= results[2]["score"]
    assert r.json()["complete"] is True


def test_vllm_protocol_classes_accept_our_answers(rm: RMServer,
                                                  rm_client: RewardClient) -> None:
    """Requests built with vLLM's own request classes (as a vLLM client sends them, every
    default included) are served, and every answer parses as vLLM's response class with no
    field vLLM does not know."""
    from vllm.entrypoints.pooling.classify.protocol import (
        ClassificationChatRequest,
        ClassificationCompletionRequest,
        ClassificationResponse,
    )
    from vllm.entrypoints.pooling.pooling.protocol import PoolingCompletionRequest, PoolingResponse
    from vllm.entrypoints.pooling.scoring.protocol import RerankRequest, RerankResponse
    from vllm.entrypoints.serve.engine.protocol import ModelList

    def strict(cls, data):  # type: ignore[no-untyped-def]
        parsed = cls.model_validate(data)
        assert not parsed.model_extra, f"{cls.__name__} does not know {parsed.model_extra}"
        return parsed

    want = rm_client.score([(QUESTION, GOOD), (QUESTION, BAD)])
    models = strict(ModelList, httpx.get(rm.http + "/v1/models", timeout=30).json())
    assert [m.id for m in models.data] == [MODEL]
    name = models.data[0].id

    body = ClassificationCompletionRequest(
        model=name, input=[chatml(QUESTION, GOOD), chatml(QUESTION, BAD)]).model_dump()
    got = strict(ClassificationResponse,
                 httpx.post(rm.http + "/classify", json=body, timeout=120).json())
    assert got.model == name and [d.index for d in got.data] == [0, 1]
    assert [d.probs[0] for d in got.data] == pytest.approx([s.probability for s in want],
                                                           abs=1e-4)
    assert all(d.num_classes == 1 and d.label == "LABEL_0" for d in got.data)
    assert got.usage.prompt_tokens == sum(s.tokens for s in want)

    body = ClassificationChatRequest(model=name, use_activation=False, messages=[
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": GOOD}]).model_dump()
    raw = strict(ClassificationResponse,
                 httpx.post(rm.http + "/classify", json=body, timeout=120).json())
    # a raw score, scored in another batch: within the scoring rule's 1e-3 of the gRPC one
    assert raw.data[0].probs[0] == pytest.approx(want[0].score, abs=1e-3)

    body = PoolingCompletionRequest(model=name, input=chatml(QUESTION, BAD),
                                    task="classify").model_dump()
    pooled = strict(PoolingResponse,
                    httpx.post(rm.http + "/pooling", json=body, timeout=120).json())
    assert pooled.data[0].data == pytest.approx([want[1].probability], abs=1e-4)

    body = RerankRequest(model=name, query=QUESTION, documents=[BAD, GOOD]).model_dump()
    assert body["top_n"] == 0  # what a vLLM client sends by default: every document
    ranked = RerankResponse.model_validate(
        httpx.post(rm.http + "/rerank", json=body, timeout=120).json())
    assert [r.index for r in ranked.results] == [1, 0]
    assert ranked.results[0].document.text == GOOD
    assert ranked.usage.total_tokens == sum(s.tokens for s in want)


def test_bad_requests_on_a_real_server_are_4xx_and_counted(rm: RMServer) -> None:
    before = metric(rm, "classify", "INVALID_ARGUMENT")
    for path, body, status in (
            ("/v2/rerank", {"documents": [GOOD]}, 400),
            ("/v2/rerank", {"query": QUESTION, "documents": [GOOD], "top_n": -1}, 400),
            ("/v2/rerank", {"query": QUESTION, "documents": [GOOD, 1]}, 400),
            ("/v2/rerank", {"query": QUESTION, "documents": [GOOD], "model": "gpt"}, 404),
            ("/classify", {"input": "plain text, no chat template"}, 400),
            ("/classify", {"input": [[1, 2, 3]]}, 400),
            ("/pooling", {"input": chatml(QUESTION, GOOD), "task": "token_embed"}, 400)):
        r = httpx.post(rm.http + path, json=body, timeout=30)
        assert r.status_code == status, (path, body, r.text)
        assert r.json()["error"] and r.json()["code"] in ("INVALID_ARGUMENT", "NOT_FOUND")
    assert metric(rm, "classify", "INVALID_ARGUMENT") - before == 2


# -- the same guard as /get_reward ----------------------------------------------------------

TOKEN = "product-token-0123456789abcdef"


@dataclass
class Guarded:
    proc: subprocess.Popen[str]
    http: str
    metrics: str
    model: str
    ca: Path
    rogue: Path


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory,
            tiny_acecode_rm) -> Iterator[Guarded]:  # type: ignore[no-untyped-def]
    """The tiny AceCode-RM over TLS, one bearer token, 1 item/s per client in bursts of 6."""
    out = tmp_path_factory.mktemp("protocols-pki")
    ca, rogue = CA(out, "protocols-ca"), CA(out, "rogue-ca")
    cert: Issued = ca.issue("rm", server=True)
    tokens = out / "tokens"
    tokens.write_text(f"product {TOKEN}\n")
    model = str(tiny_acecode_rm[0])
    proc, m = spawn_server(
        [sys.executable, "-m", "acecoder.cli", "serve", "rm", "--port", "0", "--http-port", "0",
         "--metrics-port", "0", "--model", model, "--tls-cert", str(cert.cert), "--tls-key",
         str(cert.key), "--auth-tokens", str(tokens), "--rate-limit", "1", "--rate-burst", "6"],
        r"listening on (\S+) .*http on :(\d+), metrics on :(\d+)", "the RM server")
    assert proc.stdout is not None and "ready" in proc.stdout.readline()
    yield Guarded(proc, f"https://127.0.0.1:{m.group(2)}",
                  f"http://127.0.0.1:{m.group(3)}/metrics", model, ca.files.cert,
                  rogue.files.cert)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def test_every_new_route_needs_the_token_over_tls(guarded: Guarded) -> None:
    trust = ssl.create_default_context(cafile=str(guarded.ca))
    body = {"query": QUESTION, "documents": [GOOD], "input": chatml(QUESTION, GOOD)}
    with httpx.Client(verify=trust, timeout=30) as http:
        for method, path in (("POST", "/rerank"), ("POST", "/v1/rerank"), ("POST", "/v2/rerank"),
                             ("POST", "/classify"), ("POST", "/pooling"), ("GET", "/v1/models")):
            r = http.request(method, guarded.http + path,
                             json=body if method == "POST" else None)
            assert r.status_code == 401, (path, r.status_code)
            assert r.json()["code"] == "UNAUTHENTICATED"
        models = http.get(guarded.http + "/v1/models?token=" + TOKEN)
        assert models.status_code == 200 and models.json()["data"][0]["id"] == guarded.model
    text = httpx.get(guarded.metrics, timeout=10).text
    for method in ("rerank", "classify", "pooling", "models"):
        assert f'acecoder_rm_requests_total{{code="UNAUTHENTICATED",method="{method}"}}' in text
    with pytest.raises(httpx.ConnectError):  # a CA the client does not trust
        httpx.get(guarded.http + "/v1/models", timeout=30,
                  verify=ssl.create_default_context(cafile=str(guarded.rogue)))


def test_cohere_sdk_over_tls_with_the_token_and_the_rate_limit(guarded: Guarded) -> None:
    """Cohere's api_key is the bearer token; documents charge the client's bucket (burst 6,
    1/s) as /get_reward's queries do, and a 429 carries Retry-After."""
    trust = ssl.create_default_context(cafile=str(guarded.ca))

    def client(key: str) -> cohere.ClientV2:
        return cohere.ClientV2(base_url=guarded.http, api_key=key, max_retries=0,
                               httpx_client=httpx.Client(verify=trust, timeout=60))

    with pytest.raises(cohere.errors.UnauthorizedError):
        client("wrong-token-0123456789abcdef").rerank(model=guarded.model, query=QUESTION,
                                                      documents=[GOOD])
    co = client(TOKEN)
    with pytest.raises(cohere.errors.TooManyRequestsError) as big:
        co.rerank(model=guarded.model, query=QUESTION, documents=[GOOD] * 7)
    assert "more than the 6 a client may send at once" in big.value.body["error"]
    got = co.rerank(model=guarded.model, query=QUESTION, documents=[BAD, GOOD, TIMES, FENCED])
    assert sorted(r.index for r in got.results) == [0, 1, 2, 3]
    assert all(0.0 < r.relevance_score < 1.0 for r in got.results)
    # a model without calibration: the answer says relevance_score is sigmoid(raw score)
    assert got.meta is not None and got.meta.warnings
    assert any("sigmoid(raw score)" in w for w in got.meta.warnings)
    with pytest.raises(cohere.errors.TooManyRequestsError) as limited:
        co.rerank(model=guarded.model, query=QUESTION, documents=[GOOD] * 6)
    assert "rate limit: client product" in limited.value.body["error"]
    assert int(limited.value.headers["retry-after"]) >= 1
