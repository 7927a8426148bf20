"""Stage 2 against the real executor server: tests the proxy fails are dropped, and so are
questions with too few left. The proxy model is the local protocol server."""

from __future__ import annotations

import asyncio

import pytest

from acecoder.clients import AsyncExecutorClient
from acecoder.datasets import load_mbpp
from acecoder.server.synth import filter as stage2
from acecoder.server.synth.llm import ChatClient, LLMConfig
from tests.fake_openai import FakeOpenAI


def run_filter(target: str, tests: list[str], proxies: list[str], **kw: object) -> stage2.Filtered:
    async def main() -> stage2.Filtered:
        async with AsyncExecutorClient(target) as ex:
            return await stage2.filter_tests(ex, tests, proxies, **kw)  # type: ignore[arg-type]

    return asyncio.run(main())


def test_mbpp_reference_as_proxy(server) -> None:  # type: ignore[no-untyped-def]
    p = next(p for p in load_mbpp() if p.task_id == "Mbpp/2")
    wrong = ["assert similar_elements((1, 2), (2, 3)) == (5,)", "assert 1 == 2"]
    tests = list(p.tests) + wrong
    got = run_filter(server.target, tests, [p.program], rule=stage2.FilterRule(min_passed=1,
                                                                                min_kept=1),
                     setup=p.setup)
    assert got.kept == list(p.tests) and got.keep_question
    assert [t for t, _ in got.dropped] == wrong and got.dropped[0][1] == "FAILED"


def test_questions_with_too_few_tests_are_dropped(server) -> None:  # type: ignore[no-untyped-def]
    program = "def f(x):\n    return x + 1\n"
    good = [f"assert f({k}) == {k + 1}" for k in range(4)]
    bad = [f"assert f({k}) == {k}" for k in range(3)]
    few = run_filter(server.target, good[:3] + bad, [program])
    assert few.drop_reason == stage2.FEW_PASSED and len(few.kept) == 3
    left = run_filter(server.target, good + bad, [program])
    assert left.drop_reason == stage2.FEW_LEFT  # passes 4 (enough) but only 4 < 5 remain
    fine = run_filter(server.target, good + ["assert f(9) == 10"] + bad, [program])
    assert fine.keep_question and len(fine.kept) == 5
    strict = run_filter(server.target, good + bad, [program, "def f(x):\n    return 1\n"],
                        rule=stage2.FilterRule(min_kept=1, agreement="all"))
    assert strict.kept == ["assert f(0) == 1"]
    assert run_filter(server.target, good, []).drop_reason == stage2.NO_PROXY
    with pytest.raises(ValueError, match="agreement"):
        stage2.FilterRule(agreement="most")


def test_proxy_solution_from_the_llm() -> None:
    fake = FakeOpenAI().start()
    try:
        async def main() -> str | None:
            c = ChatClient(LLMConfig(base_url=fake.url, model="proxy"))
            try:
                return await stage2.proxy_solution(c, "Write add. SCRIPT:prose",
                                                   ["assert add(1, 2) == 3", "assert add(0, 0) == 0",
                                                    "assert add(5, 5) == 10"])
            finally:
                await c.close()

        program = asyncio.run(main())
        body = fake.bodies[-1]
        assert body["temperature"] == 0.0 and "response_format" not in body
        shown = body["messages"][-1]["content"]
        assert "assert add(0, 0) == 0" in shown and "assert add(5, 5)" not in shown
        assert program == "def add(a, b):\n    return a + b"  # the code block, prose dropped
    finally:
        fake.stop()
