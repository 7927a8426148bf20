"""The OpenAI-compatible client against a real local server with scripted answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from acecoder.server.synth.llm import ChatClient, LLMConfig, LLMError
from acecoder.server.synth.rewrite import rewrite
from tests.fake_openai import GOOD_ANSWER, FakeOpenAI


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


def client(fake: FakeOpenAI, **kw: object) -> ChatClient:
    cfg = {"base_url": fake.url, "model": "fake", "backoff": 0.01, "max_backoff": 0.2, **kw}
    return ChatClient(LLMConfig(**cfg))  # type: ignore[arg-type]


def ask(c: ChatClient, script: str) -> object:
    async def main() -> object:
        try:
            return await c.chat([{"role": "user", "content": f"SCRIPT:{script} please"}])
        finally:
            await c.close()

    return asyncio.run(main())


def test_a_good_answer_in_json_mode(fake: FakeOpenAI) -> None:
    result = ask(client(fake), "ok")
    assert '"tests"' in result.text and result.finish_reason == "stop"  # type: ignore[attr-defined]
    assert result.prompt_tokens == 11 and result.attempts == 1  # type: ignore[attr-defined]
    assert fake.bodies[-1]["response_format"] == {"type": "json_object"}
    assert fake.bodies[-1]["model"] == "fake" and fake.bodies[-1]["temperature"] == 0.7


def test_transient_failures_are_retried(fake: FakeOpenAI) -> None:
    assert ask(client(fake), "fail-twice").attempts == 3  # type: ignore[attr-defined]
    assert ask(client(fake), "rate-limited").attempts == 2  # type: ignore[attr-defined]
    before = fake.calls["always-500"]
    with pytest.raises(LLMError) as err:
        ask(client(fake, attempts=3), "always-500")
    assert err.value.transient and err.value.status == 500
    assert fake.calls["always-500"] - before == 3


def test_permanent_failures_are_not_retried(fake: FakeOpenAI) -> None:
    before = fake.calls["bad-request"]
    with pytest.raises(LLMError, match="HTTP 400") as err:
        ask(client(fake), "bad-request")
    assert not err.value.transient and fake.calls["bad-request"] - before == 1
    with pytest.raises(LLMError, match="malformed completion"):
        ask(client(fake), "malformed")


def test_timeouts_are_transient_and_bounded(fake: FakeOpenAI) -> None:
    before = fake.calls["slow"]
    with pytest.raises(LLMError, match="Timeout") as err:
        ask(client(fake, timeout=0.3, attempts=2), "slow")
    assert err.value.transient and fake.calls["slow"] - before == 2


def test_a_server_without_json_mode_is_asked_without_it(fake: FakeOpenAI) -> None:
    c = client(fake)

    async def main() -> None:
        try:
            for _ in range(2):
                r = await c.chat([{"role": "user", "content": "SCRIPT:no-json-mode"}])
                assert "assert add" in r.text
        finally:
            await c.close()

    asyncio.run(main())
    assert not c.json_mode
    assert "response_format" not in fake.bodies[-1]
    assert fake.calls["no-json-mode"] == 3  # refused once, then two plain calls


def test_concurrency_is_bounded(fake: FakeOpenAI) -> None:
    c = client(fake, concurrency=3)

    async def main() -> None:
        try:
            await asyncio.gather(*(c.chat([{"role": "user", "content": "SCRIPT:wait"}])
                                   for _ in range(9)))
        finally:
            await c.close()

    deadline = time.monotonic() + 10
    while fake.inflight and time.monotonic() < deadline:  # abandoned slow calls finish first
        time.sleep(0.05)
    fake.max_inflight = 0
    asyncio.run(main())
    assert fake.max_inflight == 3


def test_rewrite_stage_parses_and_repairs(fake: FakeOpenAI) -> None:
    async def run(question: str, program: str | None = "def add(a, b): return a + b"):  # type: ignore[no-untyped-def]
        c = client(fake, attempts=2)
        try:
            return await rewrite(c, question=question, program=program)
        finally:
            await c.close()

    ok = asyncio.run(run("Add two numbers. SCRIPT:prose"))
    assert ok.error is None and ok.parsed.tests == GOOD_ANSWER["tests"]
    assert "Program:" in fake.bodies[-1]["messages"][-1]["content"]
    cut = asyncio.run(run("Add. SCRIPT:truncated"))
    assert cut.parsed.repaired and cut.chat.finish_reason == "length"  # type: ignore[union-attr]
    assert cut.parsed.tests == ["assert add(1, 2) == 3"]
    assert [r.reason for r in cut.parsed.rejected] == ["truncated"]
    failed = asyncio.run(run("Add. SCRIPT:bad-request"))
    assert failed.error is not None and failed.error.startswith("llm:")
    only = asyncio.run(run("", "def add(a, b): return a + b  # SCRIPT:ok"))
    assert "Work out what its main function does" in fake.bodies[-1]["messages"][-1]["content"]
    assert only.parsed.question == GOOD_ANSWER["question"]
    with pytest.raises(ValueError, match="needs a question"):
        asyncio.run(run("", None))
    with pytest.raises(ValueError, match="base_url"):
        LLMConfig(base_url="localhost:8000", model="m")


def test_chat_backends_by_name() -> None:
    from acecoder.server.synth.backends import make_chat
    from acecoder.server.synth.llm import ChatClient
    from acecoder.server.synth.local_llm import TransformersChat
    from acecoder.server.synth.vllm_llm import VllmChat

    assert isinstance(make_chat("local", None, max_tokens=8), TransformersChat)
    v = make_chat("vllm", None, max_tokens=8)
    assert isinstance(v, VllmChat) and v._llm is None  # the engine starts on load(), not here
    assert isinstance(make_chat("http://127.0.0.1:1/v1", "m", max_tokens=8), ChatClient)
    with pytest.raises(ValueError, match="needs a model name"):
        make_chat("http://127.0.0.1:1/v1", None, max_tokens=8)
    with pytest.raises(ValueError, match="'local', 'vllm' or an http"):
        make_chat("ftp://x", "m", max_tokens=8)
