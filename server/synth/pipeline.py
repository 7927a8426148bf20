"""`acecoder synth`: seeds -> AceCode-87K records, stages 1-3, resumable.

Per seed ({"id", "question"?, "program"?, "source"?}): rewrite and imagine tests (stage 1),
keep what a proxy solution passes (stage 2), drop benchmark look-alikes (stage 3). Kept
questions go to the output as AceCode-87K records (``inferences`` empty until `sample`;
JSONL, or Parquet for a ``.parquet`` output, written when the run completes); dropped ones
go, with their reason, to ``OUTPUT.dropped.jsonl``. Both files are append-only
and keyed by seed id, so a run killed at any point and started again writes every seed's
outcome exactly once.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acecoder.jsonl import Progress, done_ids, finish, read_records, staging_path, text_field

from . import decontam
from .filter import FilterRule, filter_tests, proxy_solution
from .llm import Chat, LLMError
from .rewrite import rewrite


@dataclass(frozen=True, kw_only=True)
class SynthConfig:
    n_tests: int = 20
    """Tests to ask the LLM for, per question."""
    rule: FilterRule = field(default_factory=FilterRule)
    decontam_threshold: float = 0.5
    """Drop a question whose n-gram overlap with a benchmark prompt exceeds this."""
    decontam_n: int = 10
    benchmark_files: tuple[Path, ...] = ()
    """Extra benchmark prompts (JSONL) to decontaminate against."""
    concurrency: int = 8
    """Seeds in flight at once."""


@dataclass(frozen=True)
class Seed:
    id: str
    question: str
    program: str
    source: str


def read_seeds(path: Path) -> list[Seed]:
    def parse(rid: str, row: dict[str, Any]) -> Seed:
        q, p = text_field(row, "question", ""), text_field(row, "program", "")
        if not q.strip() and not p.strip():
            raise ValueError("a seed needs a \"question\", a \"program\", or both")
        return Seed(rid, q, p, text_field(row, "source", "seed"))

    return read_records(path, parse)


@dataclass
class Outcome:
    record: dict[str, Any] | None
    reason: str | None
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    tests_in: int = 0
    tests_kept: int = 0


async def synthesize(seed: Seed, *, llm: Chat, proxy: Chat, executor: Any,
                     index: decontam.BenchmarkIndex, config: SynthConfig) -> Outcome:
    stage1 = await rewrite(llm, question=seed.question or None, program=seed.program or None,
                           n_tests=config.n_tests)
    parsed = stage1.parsed
    out = Outcome(None, None, collections.Counter(r.reason for r in parsed.rejected),
                  len(parsed.tests) + len(parsed.rejected))
    if parsed.question is None:
        out.reason = f"rewrite_failed: {stage1.error or parsed.error or 'no question'}"
        return out
    if not parsed.tests:
        out.reason = "no_usable_tests"
        return out
    match = decontam.check(parsed.question, index, config.decontam_threshold)
    if match is not None:
        out.reason = f"contaminated:{match.benchmark}:{match.item_id}"
        return out
    try:
        program = await proxy_solution(proxy, parsed.question, parsed.tests)
    except LLMError as exc:
        out.reason = "proxy_failed" if not exc.transient else "proxy_unavailable"
        return out
    filtered = await filter_tests(executor, parsed.tests, [program] if program else [],
                                  rule=config.rule)
    out.rejected["proxy_failed"] += len(filtered.dropped)
    out.tests_kept = len(filtered.kept)
    if not filtered.keep_question:
        out.reason = filtered.drop_reason
        return out
    out.record = {
        "id": seed.id, "source": seed.source, "question": parsed.question,
        "test_cases": filtered.kept, "inferences": [],
        "context_messages": [{"role": "user", "content": parsed.question}],
    }
    return out


async def run(input_path: Path, output_path: Path, *, llm: Chat, proxy: Chat, executor: Any,
              config: SynthConfig = SynthConfig(), progress: bool = True) -> dict[str, Any]:
    seeds = read_seeds(input_path)
    final_path, output_path = output_path, staging_path(output_path)
    dropped_path = final_path.with_name(final_path.name + ".dropped.jsonl")
    done = done_ids(output_path) | done_ids(dropped_path)
    todo = [s for s in seeds if s.id not in done]
    report: dict[str, Any] = {"seeds": len(seeds), "skipped": len(seeds) - len(todo),
                              "kept": 0, "dropped": collections.Counter(),
                              "tests_in": 0, "tests_kept": 0, "tests_rejected": collections.Counter()}
    if not todo:
        finish(final_path)
        return report
    index = decontam.default_index(config.decontam_n, config.benchmark_files)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    bar = Progress(len(todo), progress, unit="q", what="questions")
    limit = asyncio.Semaphore(config.concurrency)
    with output_path.open("a", encoding="utf-8") as out, \
            dropped_path.open("a", encoding="utf-8") as dropped:
        async def one(seed: Seed) -> None:
            async with limit:
                outcome = await synthesize(seed, llm=llm, proxy=proxy, executor=executor,
                                           index=index, config=config)
            report["tests_in"] += outcome.tests_in
            report["tests_kept"] += outcome.tests_kept
            report["tests_rejected"].update(outcome.rejected)
            if outcome.record is not None:
                report["kept"] += 1
                out.write(json.dumps(outcome.record) + "\n")
                out.flush()
            else:
                report["dropped"][(outcome.reason or "?").split(":")[0]] += 1
                dropped.write(json.dumps({"id": seed.id, "reason": outcome.reason}) + "\n")
                dropped.flush()
            bar.update()

        try:
            await asyncio.gather(*(one(s) for s in todo))
        finally:
            bar.close()
            os.fsync(out.fileno())
            os.fsync(dropped.fileno())
    finish(final_path)
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"seeds {report['seeds']} (already done {report['skipped']}), "
             f"kept {report['kept']}"]
    for reason, n in sorted(report["dropped"].items()):
        lines.append(f"  dropped {n:>6}  {reason}")
    lines.append(f"tests imagined {report['tests_in']}, kept {report['tests_kept']}")
    for reason, n in sorted(report["tests_rejected"].items()):
        lines.append(f"  rejected {n:>5}  {reason}")
    return "\n".join(lines)
