"""Prompts for the RL trainer, and which of them each step takes.

A prompt is a conversation for the policy's chat template plus the tests its answer is run
on. Sources: AceCode-87K records (`context_messages`, else `question`; `test_cases`; with
`fn_name`, call tests: `test_cases` [{"input": [args...], "output": value}, ...] or
{"inputs", "outputs"} ground truth, as APPS and TACO have them),
`embedded:mbpp` (MbppBase's problems, with the first test shown in the prompt so that the
policy knows the function's name, as MBPP's own prompts do), or `embedded:warmup` (a dozen
one-line functions in AceCode-87K's format: a 135M policy solves some of them, so short CPU
runs see rewards that vary).

The data position is a pure function of (seed, step): step k takes positions
[k * R, (k + 1) * R) of an endless stream that walks a fresh seeded permutation of the
prompts each epoch. So a resumed run only needs the step number to continue exactly where
the killed one stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from acecoder.jsonl import read_records, text_field, text_list

EMBEDDED_MBPP = "embedded:mbpp"
EMBEDDED_WARMUP = "embedded:warmup"


@dataclass(frozen=True)
class Prompt:
    id: str
    messages: tuple[dict[str, str], ...]
    question: str
    tests: tuple[Any, ...]
    """Test statements, or call tests (CallTest records) of `fn_name`."""
    setup: str = ""
    fn_name: str = ""


def mbpp_prompts() -> list[Prompt]:
    from acecoder.datasets import load_mbpp

    out = []
    for p in load_mbpp():
        question = p.question.strip().strip("'\"").strip()
        content = (f"{question}\nWrite it in Python. Your code should pass this test:\n\n"
                   f"{p.tests[0]}")
        out.append(Prompt(p.task_id, ({"role": "user", "content": content},), question,
                          p.tests, p.setup))
    return out


def _record(rid: str, row: dict[str, Any]) -> Prompt:
    question = text_field(row, "question")
    fn_name = ""
    tests: tuple[Any, ...]
    if row.get("fn_name"):
        from acecoder.clients.rewards import parse_tests

        tests, _, fn_name = parse_tests({"test_cases": row.get("test_cases"),
                                         "fn_name": row["fn_name"]})
    else:
        tests = tuple(text_list(row, "test_cases"))
    if not tests:
        raise ValueError("\"test_cases\" is empty: nothing to reward the answer with")
    raw = row.get("context_messages") or [{"role": "user", "content": question}]
    if not isinstance(raw, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str) for m in raw):
        raise ValueError("\"context_messages\" must be a list of {role, content} strings")
    messages = tuple({"role": m["role"], "content": m["content"]} for m in raw)
    return Prompt(rid, messages, question, tests, str(row.get("setup") or ""), fn_name)


def read_prompts(source: str | Path, limit: int | None = None) -> list[Prompt]:
    """The prompts of `source` (a JSONL path, `embedded:mbpp` or `embedded:warmup`), the
    first `limit` of them."""
    if str(source) == EMBEDDED_MBPP:
        prompts = mbpp_prompts()
    elif str(source) == EMBEDDED_WARMUP:
        from importlib import resources

        with resources.as_file(resources.files("acecoder").joinpath("data/rl_warmup.jsonl")) as f:
            prompts = read_records(f, _record)
    else:
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"no such prompts file: {path}")
        prompts = read_records(path, _record)
    if limit is not None:
        prompts = prompts[:limit]
    if not prompts:
        raise ValueError(f"no prompts in {source}")
    return prompts


def step_indices(n: int, step: int, per_step: int, seed: int) -> list[int]:
    """The prompt indices step `step` (from 0) takes: positions [step * per_step, ...) of the
    stream of per-epoch permutations of range(n)."""
    out = []
    cache: dict[int, list[int]] = {}
    for pos in range(step * per_step, (step + 1) * per_step):
        epoch, k = divmod(pos, n)
        if epoch not in cache:
            gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            cache[epoch] = torch.randperm(n, generator=gen).tolist()
        out.append(cache[epoch][k])
    return out


def epoch_of(step: int, per_step: int, n: int) -> float:
    """How many passes over the prompts the first `step` steps made."""
    return step * per_step / n
