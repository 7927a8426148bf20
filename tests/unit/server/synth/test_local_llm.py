"""The embedded SmolLM2 as a chat model: the pipeline's first two stages run on it end to end
(its answers are poor; that is what the filter is for)."""

from __future__ import annotations

import asyncio

from acecoder.server.synth.local_llm import TransformersChat
from acecoder.server.synth.rewrite import rewrite


def test_embedded_model_chats_and_the_rewrite_stage_runs_on_it(smol_dir: str) -> None:
    chat = TransformersChat("embedded:smollm2-135m", max_tokens=48)

    async def main():  # type: ignore[no-untyped-def]
        try:
            greedy = [await chat.chat([{"role": "user", "content": "Say hello."}],
                                      temperature=0.0, max_tokens=12) for _ in range(2)]
            stage1 = await rewrite(chat, question="Write add(a, b) returning a + b.",
                                   program="def add(a, b):\n    return a + b\n", n_tests=3)
            return greedy, stage1
        finally:
            await chat.close()

    greedy, stage1 = asyncio.run(main())
    assert greedy[0].text == greedy[1].text and greedy[0].text.strip()  # greedy is repeatable
    assert greedy[0].completion_tokens <= 12 and greedy[0].prompt_tokens > 5
    assert stage1.chat is not None and stage1.chat.completion_tokens <= 48
    # Whatever the small model wrote, the stage gives a parse result, never an exception.
    assert stage1.parsed.question is not None or stage1.error is not None


def test_json_answers_are_started_for_local_models(smol_dir: str) -> None:
    from transformers import AutoTokenizer

    from acecoder.server.synth.local_llm import JSON_PREFILL, render

    tok = AutoTokenizer.from_pretrained(smol_dir)
    messages = [{"role": "user", "content": "Give me JSON."}]
    opened = str(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
    assert render(tok, messages, None) == (opened + JSON_PREFILL, JSON_PREFILL)
    assert render(tok, messages, True) == (opened + JSON_PREFILL, JSON_PREFILL)
    assert render(tok, messages, False) == (opened, "")  # code answers are left alone
    chat = TransformersChat(smol_dir, max_tokens=6, temperature=0.0)
    try:
        answer = asyncio.run(chat.chat(messages))
    finally:
        asyncio.run(chat.close())
    assert answer.text.startswith(JSON_PREFILL) and len(answer.text) > len(JSON_PREFILL)
