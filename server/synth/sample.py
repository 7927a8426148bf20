"""`acecoder sample` (stage 4): K programs per question from a policy model, each run on the
question's kept tests in the executor; the results fill AceCode-87K's `inferences`.

Input and output records are AceCode-87K's; a question is written once all its K samples have
run, so the output is resumable by id like every other offline command.
"""

from __future__ import annotations

import json
import os
from typing import Any

from acecoder.codeblocks import extract_program
from acecoder.jsonl import Progress, done_ids, read_records, run_pool, staging_path, text_list

from .llm import Chat, LLMError
from .safefs import FilePath, finish


def read_questions(path: FilePath) -> list[dict[str, Any]]:
    def parse(rid: str, row: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(row.get("question"), str):
            raise ValueError("\"question\" must be a string")
        text_list(row, "test_cases")
        return row

    return read_records(path, parse)  # type: ignore[arg-type]


async def sample_one(record: dict[str, Any], *, policy: Chat, model_name: str, k: int,
                     executor: Any, temperature: float = 1.0) -> dict[str, Any]:
    """The record with `k` more inferences from `policy` (a failed generation counts as an
    empty completion with pass rate 0, and is marked with an "error")."""
    from acecoder.clients.executor import Program

    messages = record.get("context_messages") or [{"role": "user", "content": record["question"]}]
    completions: list[tuple[str, str | None]] = []
    for _ in range(k):
        try:
            chat = await policy.chat(messages, temperature=temperature, json=False)
            completions.append((chat.text, None))
        except LLMError as exc:
            completions.append(("", str(exc)))
    rates = [0.0] * k
    tests = list(record["test_cases"])
    if tests:
        programs = [Program(extract_program(text), tests) for text, _ in completions]
        async for r in executor.execute_batch(programs):
            rates[r.index] = r.pass_rate
    start = len(record.get("inferences") or [])
    inferences = list(record.get("inferences") or [])
    for j, ((text, error), rate) in enumerate(zip(completions, rates, strict=True)):
        inf: dict[str, Any] = {"model_name": model_name, "completion_id": start + j,
                               "completion": text, "pass_rate": rate}
        if error:
            inf["error"] = error
        inferences.append(inf)
    return {**record, "inferences": inferences}


async def run(input_path: FilePath, output_path: FilePath, *, policy: Chat, model_name: str,
              k: int, executor: Any, temperature: float = 1.0, concurrency: int = 4,
              progress: bool = True, counts: dict[str, int] | None = None) -> dict[str, int]:
    """Sample every question not yet in the output. `counts`, when given, is updated as
    questions finish (questions, skipped, sampled)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    records = read_questions(input_path)
    staged: FilePath = staging_path(output_path)  # type: ignore[arg-type]
    done = done_ids(staged)  # type: ignore[arg-type]
    todo = [r for r in records if r["id"] not in done]
    if counts is None:
        counts = {}
    counts.update(questions=len(records), skipped=len(records) - len(todo), sampled=0)
    staged.parent.mkdir(parents=True, exist_ok=True)
    bar = Progress(len(todo), progress, unit="q", what="questions")
    with staged.open("a", encoding="utf-8") as out:
        async def one(record: dict[str, Any]) -> None:
            row = await sample_one(record, policy=policy, model_name=model_name, k=k,
                                   executor=executor, temperature=temperature)
            out.write(json.dumps(row) + "\n")
            out.flush()
            counts["sampled"] += 1
            bar.update()

        try:
            await run_pool(todo, one, concurrency)
        finally:
            bar.close()
            os.fsync(out.fileno())
    finish(output_path)
    return counts
