"""A reward function for TRL's GRPOTrainer, backed by acecoder's services.

    from acecoder.clients.trl import acecoder_reward
    trainer = GRPOTrainer(model=..., reward_funcs=[acecoder_reward], train_dataset=ds, ...)

The dataset needs a "tests" (or "test_cases") column: a list of asserts, a JSON string of one,
or {"tests": [...], "setup": "..."}, or {"inputs", "outputs"} ground truth (with "fn_name":
call tests). TRL calls the function with `prompts`, `completions`
(strings, or chat messages) and every dataset column; it is a coroutine, which TRL awaits
alongside its other reward functions. It returns one float per completion, or None where no
reward could be had (TRL leaves those out of the group's statistics), never raising.

Settings: the ACECODER_* environment (see `clients.rewards`), or `make_reward(**settings)`
for a function with its own (executor, rm, kind, binary, rm_weight, deadline, ...).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from acecoder.clients.rewards import Reward, Sample, parse_tests, shared, spec_from_env


def _text(x: Any) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, list):  # conversational: the assistant's turn(s)
        return "".join(str(m.get("content", "")) for m in x
                       if isinstance(m, dict) and m.get("role", "assistant") == "assistant")
    return str(x)


def _question(x: Any) -> str:
    if isinstance(x, list):
        users = [m for m in x if isinstance(m, dict) and m.get("role") == "user"]
        return str(users[-1].get("content", "")) if users else ""
    return str(x)


def make_reward(**settings: Any) -> Callable[..., Awaitable[list[float | None]]]:
    """A reward function with these settings (None: from the environment)."""

    async def acecoder_reward(prompts: list[Any], completions: list[Any],
                              **columns: Any) -> list[float | None]:
        try:
            scorer = shared(spec_from_env(**settings))
        except ValueError:
            return [None] * len(completions)
        raw = columns.get("tests", columns.get("test_cases"))
        samples: list[Sample | None] = []
        for i, completion in enumerate(completions):
            try:
                tests, setup, fn_name = parse_tests(raw[i] if raw is not None else None)
            except ValueError:
                samples.append(None)
                continue
            samples.append(Sample(_question(prompts[i]), _text(completion), tests, setup,
                                  fn_name))
        todo = [s for s in samples if s is not None]
        rewards: list[Reward] = []
        if todo:
            future = scorer.submit(todo)
            try:
                rewards = await asyncio.wrap_future(future)
            except Exception:
                rewards = [Reward(None) for _ in todo]
        scored = iter(rewards)
        return [next(scored).value if s is not None else None for s in samples]

    return acecoder_reward


acecoder_reward = make_reward()
