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
