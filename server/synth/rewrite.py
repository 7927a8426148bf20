"""Stage 1: one seed -> (rewritten question, imagined tests) through an LLM."""

from __future__ import annotations

from dataclasses import dataclass

from . import prompts
from .llm import Chat, ChatResult, LLMError
from .parse import Parsed, parse_answer


@dataclass
class Rewritten:
    parsed: Parsed
    chat: ChatResult | None
    error: str | None = None
    """Why the seed produced nothing: the LLM call failed, or its answer was unreadable."""


async def rewrite(client: Chat, *, question: str | None, program: str | None,
                  n_tests: int = 20) -> Rewritten:
    """Ask for the rewrite and tests; never raises for the LLM's failures (they are results)."""
    if question and program:
        messages = prompts.with_reference(question, program, n_tests)
    elif program:
        messages = prompts.program_only(program, n_tests)
    elif question:
        messages = prompts.with_reference(question, "# (no reference program)", n_tests)
    else:
        raise ValueError("a seed needs a question, a program, or both")
    try:
        chat = await client.chat(messages)
    except LLMError as exc:
        return Rewritten(Parsed(None, error=str(exc)), None, f"llm: {exc}")
    parsed = parse_answer(chat.text)
    return Rewritten(parsed, chat, parsed.error)
