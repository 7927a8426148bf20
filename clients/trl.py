"""A reward function for TRL's GRPOTrainer, backed by acecoder's services.

    from acecoder.clients.trl import make_reward
    reward = make_reward(executor="localhost:50051")           # reward="rule" by default
    trainer = GRPOTrainer(model=..., reward_funcs=[reward], train_dataset=ds, ...)

The dataset needs a "tests" (or "test_cases") column: a list of asserts, a JSON string of one,
or {"tests": [...], "setup": "..."}, or {"inputs", "outputs"} ground truth (with "fn_name":
call tests). TRL calls the function with `prompts`, `completions` (strings, or chat messages)
and every dataset column; it is a coroutine, which TRL awaits alongside its other reward
functions. It returns one float per completion, or None where no reward could be had (TRL
leaves those out of the group's statistics; each is logged, with its reason, at WARNING).

A configuration error raises ValueError saying what to set: `make_reward` raises for a
missing address, an unknown reward kind or an unknown argument, and the first call raises when
the dataset has no tests column. `acecoder_reward` is `make_reward()` read from the ACECODER_*
environment at each call (so it can be imported before the environment is set).

Settings: the names of `clients.rewards.SETTINGS` (reward, executor, rm, binary, rm_weight,
deadline, test_timeout, concurrency, per_call, wait_ready; `kind` is an old name of reward),
the same in every adapter, each also an ACECODER_* variable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from acecoder.clients.rewards import (
    Reward,
    RewardSpec,
    Sample,
    parse_tests,
    shared,
    spec_from_settings,
)

logger = logging.getLogger(__name__)

TESTS_COLUMNS = ("tests", "test_cases")


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


def _tests_column(columns: dict[str, Any]) -> Any:
    for name in TESTS_COLUMNS:
        if name in columns:
            return columns[name]
    raise ValueError("the dataset has no tests column: TRL hands the reward function every "
                     "column of the dataset, and acecoder reads the tests from one named "
                     f"'tests' (or 'test_cases'); the columns here are "
                     f"{', '.join(sorted(columns)) or 'none'}")


async def _score(spec: RewardSpec, prompts: list[Any], completions: list[Any],
                 columns: dict[str, Any]) -> list[float | None]:
    raw = _tests_column(columns)
    scorer = shared(spec)
    samples: list[Sample | None] = []
    rewards: list[Reward | None] = []
    for i, completion in enumerate(completions):
        try:
            tests, setup, fn_name = parse_tests(raw[i])
        except ValueError as exc:
            samples.append(None)
            rewards.append(Reward(None, error=f"tests: {exc}"))
            continue
        samples.append(Sample(_question(prompts[i]), _text(completion), tests, setup,
                              fn_name))
        rewards.append(None)
    todo = [s for s in samples if s is not None]
    if todo:
        try:
            got = await asyncio.wrap_future(scorer.submit(todo))
        except Exception as exc:  # the scorer itself failed: no reward, for each
            got = [Reward(None, error=f"scoring failed: {exc}") for _ in todo]
        scored = iter(got)
        rewards = [next(scored) if s is not None else r for s, r in zip(samples, rewards,
                                                                         strict=True)]
    out: list[float | None] = []
    for i, r in enumerate(rewards):
        assert r is not None
        if r.value is None:
            logger.warning("acecoder reward: completion %d of %d got no reward: %s", i,
                           len(rewards), r.error)
        out.append(r.value)
    return out


def make_reward(**settings: Any) -> Callable[..., Awaitable[list[float | None]]]:
    """A reward function with these settings over the ACECODER_* environment; ValueError,
    saying what to set, for a missing address, an unknown kind or an unknown argument."""
    spec = spec_from_settings(settings)

    async def acecoder_reward(prompts: list[Any], completions: list[Any],
                              **columns: Any) -> list[float | None]:
        return await _score(spec, prompts, completions, columns)

    return acecoder_reward


async def acecoder_reward(prompts: list[Any], completions: list[Any],
                          **columns: Any) -> list[float | None]:
    """The reward function of the ACECODER_* environment, read at each call."""
    return await _score(spec_from_settings({}), prompts, completions, columns)
