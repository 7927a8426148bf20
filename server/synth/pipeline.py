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

import collections
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acecoder.jsonl import (
    Progress,
    done_ids,
    read_records,
    run_pool,
    staging_path,
    text_field,
    text_list,
)

from . import decontam
from .filter import FilterRule, filter_tests, proxy_chat
from .llm import Chat, ChatResult, LLMError
from .parse import check_test
from .rewrite import rewrite
from .safefs import FilePath, finish

STAGES = ("rewrite", "decontaminate", "filter")


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
    stages: tuple[str, ...] = STAGES
    """Which of stages 1-3 run. Without 'rewrite' each seed brings its question and "tests"
    (checked like imagined ones); without 'filter' the tests are kept as they are."""
    proxy_reference: bool = False
    """Use each seed's own program as the proxy solution instead of asking the proxy model."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.stages) - set(STAGES))
        if unknown or not self.stages:
            raise ValueError(f"stages must be some of {', '.join(STAGES)}; got "
                             f"{', '.join(self.stages) or 'none'}")
        if self.n_tests < 1:
            raise ValueError(f"n_tests must be >= 1, got {self.n_tests}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")


@dataclass(frozen=True)
class Seed:
    id: str
    question: str
    program: str
    source: str
    tests: tuple[str, ...] = ()
    """The seed's own tests (used when the rewrite stage is off)."""


def read_seeds(path: FilePath) -> list[Seed]:
    def parse(rid: str, row: dict[str, Any]) -> Seed:
        q, p = text_field(row, "question", ""), text_field(row, "program", "")
        if not q.strip() and not p.strip():
            raise ValueError("a seed needs a \"question\", a \"program\", or both")
        tests = text_list(row, "tests" if "tests" in row else "test_cases", [])
        return Seed(rid, q, p, text_field(row, "source", "seed"), tuple(tests))

    return read_records(path, parse)  # type: ignore[arg-type]


@dataclass(frozen=True)
class RewriteDone:
    """Stage 1 finished: the rewritten question (None when unreadable) and its tests."""
    question: str | None
    tests: list[str]
    rejected: list[tuple[str, str]]
    """(test, why) for each imagined test the parser refused."""
    seconds: float
    chat: ChatResult | None
    error: str | None


@dataclass(frozen=True)
class DecontamDone:
    match: decontam.Match | None
    """The benchmark item the question overlaps too much, or None when clean."""
    seconds: float


@dataclass(frozen=True)
class ProxyDone:
    program: str | None
    seconds: float
    chat: ChatResult | None


@dataclass(frozen=True)
class FilterDone:
    kept: list[str]
    dropped: list[tuple[str, str]]
    """(test, the proxies' verdicts)."""
    seconds: float


@dataclass
class Outcome:
    """The last event of a seed: its AceCode-87K record, or why it was dropped."""
    record: dict[str, Any] | None
    reason: str | None
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    tests_in: int = 0
    tests_kept: int = 0


Event = RewriteDone | DecontamDone | ProxyDone | FilterDone | Outcome


def given_tests(seed: Seed) -> RewriteDone:
    """Stage 1 skipped: the seed's own question and tests, checked like imagined ones."""
    seen: set[str] = set()
    tests, rejected = [], []
    for t in seed.tests:
        reason = check_test(t, seen)
        if reason is None:
            tests.append(t.strip())
        else:
            rejected.append((t, reason))
    question = seed.question.strip() or None
    return RewriteDone(question, tests, rejected, 0.0, None,
                       None if question else "the seed has no question (the rewrite stage is off)")


async def stages(seed: Seed, *, llm: Chat, proxy: Chat, executor: Any,
                 index: decontam.BenchmarkIndex, config: SynthConfig) -> AsyncIterator[Event]:
    """One seed through stages 1-3, an event as each finishes; the last event is the Outcome."""
    started = time.monotonic()
    if "rewrite" in config.stages:
        stage1 = await rewrite(llm, question=seed.question or None,
                               program=seed.program or None, n_tests=config.n_tests)
        parsed = stage1.parsed
        rewritten = RewriteDone(parsed.question, list(parsed.tests),
                                [(r.test, r.reason) for r in parsed.rejected],
                                time.monotonic() - started, stage1.chat,
                                stage1.error or parsed.error)
    else:
        rewritten = given_tests(seed)
    yield rewritten
    question, tests = rewritten.question, rewritten.tests
    out = Outcome(None, None, collections.Counter(r for _, r in rewritten.rejected),
                  len(tests) + len(rewritten.rejected))
    if question is None:
        out.reason = f"rewrite_failed: {rewritten.error or 'no question'}"
        yield out
        return
    if not tests:
        out.reason = "no_usable_tests"
        yield out
        return
    if "decontaminate" in config.stages:
        started = time.monotonic()
        match = decontam.check(question, index, config.decontam_threshold)
        yield DecontamDone(match, time.monotonic() - started)
        if match is not None:
            out.reason = f"contaminated:{match.benchmark}:{match.item_id}"
            yield out
            return
    kept = tests
    if "filter" in config.stages:
        started = time.monotonic()
        if config.proxy_reference:
            program, chat = seed.program.strip() or None, None
        else:
            try:
                program, chat = await proxy_chat(proxy, question, tests)
            except LLMError as exc:
                yield ProxyDone(None, time.monotonic() - started, None)
                out.reason = "proxy_failed" if not exc.transient else "proxy_unavailable"
                yield out
                return
        yield ProxyDone(program, time.monotonic() - started, chat)
        started = time.monotonic()
        filtered = await filter_tests(executor, tests, [program] if program else [],
                                      rule=config.rule)
        yield FilterDone(list(filtered.kept), list(filtered.dropped),
                         time.monotonic() - started)
        out.rejected["proxy_failed"] += len(filtered.dropped)
        out.tests_kept = len(filtered.kept)
        if not filtered.keep_question:
            out.reason = filtered.drop_reason
            yield out
            return
        kept = filtered.kept
    out.tests_kept = len(kept)
    out.record = {
        "id": seed.id, "source": seed.source, "question": question,
        "test_cases": kept, "inferences": [],
        "context_messages": [{"role": "user", "content": question}],
    }
    yield out


async def synthesize(seed: Seed, *, llm: Chat, proxy: Chat, executor: Any,
                     index: decontam.BenchmarkIndex, config: SynthConfig,
                     on_event: Callable[[Event], None] | None = None) -> Outcome:
    """One seed through stages 1-3; `on_event` sees every stage's event."""
    async for event in stages(seed, llm=llm, proxy=proxy, executor=executor, index=index,
                              config=config):
        if on_event is not None:
            on_event(event)
        if isinstance(event, Outcome):
            return event
    raise AssertionError("stages() ends with an Outcome")


def new_report(seeds: int = 0) -> dict[str, Any]:
    """The counts a run keeps: seeds, done (before this run: skipped), kept, dropped by
    reason, tests imagined / kept / rejected by reason. Kept, dropped and tests kept (the tests
    of kept records) are read back from the outputs on a resume, so they count every run;
    tests imagined and rejected are in no output, so they count this run's seeds only."""
    return {"seeds": seeds, "skipped": 0, "done": 0, "kept": 0,
            "dropped": collections.Counter(), "tests_in": 0, "tests_kept": 0,
            "tests_rejected": collections.Counter()}


def count_done(output_path: FilePath, dropped_path: FilePath, report: dict[str, Any]) -> None:
    """Count what a previous run wrote: kept questions and their tests, dropped by reason."""
    if output_path.exists():
        for line in output_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                report["kept"] += 1
                report["tests_kept"] += len(json.loads(line).get("test_cases") or [])
    if dropped_path.exists():
        for line in dropped_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                report["dropped"][(json.loads(line).get("reason") or "?").split(":")[0]] += 1


def dropped_path_of(output_path: FilePath) -> FilePath:
    return output_path.with_name(output_path.name + ".dropped.jsonl")


async def run(input_path: FilePath, output_path: FilePath, *, llm: Chat, proxy: Chat,
              executor: Any, config: SynthConfig = SynthConfig(), progress: bool = True,
              report: dict[str, Any] | None = None,
              on_event: Callable[[Event], None] | None = None,
              index: decontam.BenchmarkIndex | None = None) -> dict[str, Any]:
    """Synthesize every seed of `input_path` not yet in the outputs. `report` (see
    `new_report`), when given, is updated as seeds finish, so a caller can watch it; kept,
    dropped and tests kept count earlier runs' outcomes too, `skipped` says how many. The
    paths are `Path`s, or, in the server, `safefs.JobPath`s: then every file is opened below
    its data directory and through no link."""
    seeds = read_seeds(input_path)
    final_path, output_path = output_path, staging_path(output_path)  # type: ignore[arg-type]
    dropped_path = dropped_path_of(final_path)
    done = done_ids(output_path) | done_ids(dropped_path)  # type: ignore[arg-type]
    todo = [s for s in seeds if s.id not in done]
    if report is None:
        report = new_report()
    report.update(seeds=len(seeds), skipped=len(seeds) - len(todo), done=len(seeds) - len(todo))
    count_done(output_path, dropped_path, report)
    if not todo:
        finish(final_path)
        return report
    if index is None:
        index = decontam.default_index(config.decontam_n, config.benchmark_files)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    bar = Progress(len(todo), progress, unit="q", what="questions")
    with output_path.open("a", encoding="utf-8") as out, \
            dropped_path.open("a", encoding="utf-8") as dropped:
        async def one(seed: Seed) -> None:
            outcome = await synthesize(seed, llm=llm, proxy=proxy, executor=executor,
                                       index=index, config=config, on_event=on_event)
            report["tests_in"] += outcome.tests_in
            report["tests_rejected"].update(outcome.rejected)
            if outcome.record is not None:
                report["kept"] += 1
                # the kept records' tests only, as `count_done` reads them back on a resume
                # (a dropped question's surviving tests are not in any output)
                report["tests_kept"] += outcome.tests_kept
                out.write(json.dumps(outcome.record) + "\n")
                out.flush()
            else:
                report["dropped"][(outcome.reason or "?").split(":")[0]] += 1
                dropped.write(json.dumps({"id": seed.id, "reason": outcome.reason}) + "\n")
                dropped.flush()
            report["done"] += 1
            bar.update()

        try:
            await run_pool(todo, one, config.concurrency)
        finally:
            bar.close()
            os.fsync(out.fileno())
            os.fsync(dropped.fileno())
    finish(final_path)
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"seeds {report['seeds']} (done before this run {report['skipped']}), "
             f"kept {report['kept']}"]
    for reason, n in sorted(report["dropped"].items()):
        lines.append(f"  dropped {n:>6}  {reason}")
    lines.append(f"tests imagined {report['tests_in']} (this run), kept "
                 f"{report['tests_kept']} (in the kept records, every run)")
    for reason, n in sorted(report["tests_rejected"].items()):
        lines.append(f"  rejected {n:>5}  {reason}")
    return "\n".join(lines)
