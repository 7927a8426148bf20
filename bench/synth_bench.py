#!/usr/bin/env python3
"""Synthesis benchmark, the stages after the LLM (2-6), on MbppBase.

MbppBase stands in for a synthesized dataset: its `canonical_solution` is the proxy's answer
and its `test_list` the imagined tests. Through a real executor server on loopback:

2. proxy filtering (AceCoder's thresholds: drop at <= 3 passed or < 5 left);
3. decontamination against HumanEval and MBPP (MbppBase *is* MBPP: every question should be
   caught, which is the check; later stages go on with all questions);
4. pass rates of 4 samples per question (the reference, two wrong variants, a stub);
5. preference pairs (AceCoder's rule); 6. the hard subset.

Prints one table: questions in/out and questions/s per stage, plus tests kept.
    python bench/synth_bench.py [--workers 2]

With `--embedded N`, it runs the whole pipeline (stages 1-3, LLM included) with the embedded
SmolLM2-135M-Instruct as both the rewriter and the proxy on the first N MbppBase questions
(with their reference programs) and prints what was kept and why the rest was dropped.
    python bench/synth_bench.py --embedded 20 [--max-tokens 768]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from acecoder.clients import AsyncExecutorClient, Program
from acecoder.datasets import load_mbpp, wrong_variants
from acecoder.server.synth import decontam
from acecoder.server.synth import filter as stage2
from acecoder.server.synth.pairs import hard_subset, make_pairs
from acecoder.serving import spawn_server


def start_executor(workers: int) -> tuple[subprocess.Popen[str], str]:
    proc, m = spawn_server([sys.executable, "-m", "acecoder.cli", "serve", "executor", "--port",
                            "0", "--workers", str(workers), "--max-queue", "4096"],
                           r"listening on (\S+)", "the executor")
    return proc, m.group(1)


async def embedded(target: str, n: int, max_tokens: int, out_dir: Path) -> dict:  # type: ignore[type-arg]
    """Stages 1-3 with the embedded model on the first n MbppBase questions."""
    from acecoder.server.synth import pipeline
    from acecoder.server.synth.local_llm import TransformersChat

    problems = [p for p in load_mbpp() if p.question][:n]
    seeds = out_dir / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"id": p.task_id, "question": p.question,
                                         "program": p.program, "source": "mbpp"}) + "\n"
                             for p in problems))
    out = out_dir / "acecode.jsonl"
    for stale in (out, out.with_name(out.name + ".dropped.jsonl")):
        stale.unlink(missing_ok=True)
    llm = TransformersChat(max_tokens=max_tokens)
    tokens = collections.Counter()

    def count(event: pipeline.Event) -> None:
        chat = getattr(event, "chat", None)
        if chat is not None:
            tokens["prompt"] += chat.prompt_tokens
            tokens["completion"] += chat.completion_tokens

    async with AsyncExecutorClient(target, timeout=600) as ex:
        started = time.perf_counter()
        try:
            report = await pipeline.run(seeds, out, llm=llm, proxy=llm, executor=ex,
                                        config=pipeline.SynthConfig(concurrency=1),
                                        on_event=count)
        finally:
            await llm.close()
    report["seconds"] = time.perf_counter() - started
    report["tokens"] = dict(tokens)
    report["out"] = str(out)
    return report


def samples(p) -> list[str]:  # type: ignore[no-untyped-def]
    return [p.program, *wrong_variants(p)]


async def run(target: str) -> list[tuple[str, int, int, float, str]]:
    problems = [p for p in load_mbpp() if p.question]
    rows = []
    async with AsyncExecutorClient(target, timeout=600) as ex:
        t = time.perf_counter()
        limit = asyncio.Semaphore(8)

        async def one(p):  # type: ignore[no-untyped-def]
            async with limit:
                return p, await stage2.filter_tests(ex, list(p.tests), [p.program], setup=p.setup)

        filtered = await asyncio.gather(*(one(p) for p in problems))
        dt = time.perf_counter() - t
        kept = [(p, f) for p, f in filtered if f.keep_question]
        reasons = collections.Counter(f.drop_reason for _, f in filtered if f.drop_reason)
        tests_in = sum(len(p.tests) for p in problems)
        tests_kept = sum(len(f.kept) for _, f in filtered)
        rows.append(("2 proxy filter", len(problems), len(kept), dt,
                     f"tests {tests_kept}/{tests_in} kept; dropped: "
                     + ", ".join(f"{k} {v}" for k, v in reasons.items())))

        t = time.perf_counter()
        index = decontam.default_index()
        caught = collections.Counter(
            m.benchmark for p in problems if (m := decontam.check(p.question, index)))
        rows.append(("3 decontamination", len(problems), len(problems) - sum(caught.values()),
                     time.perf_counter() - t, "caught: " + ", ".join(
                         f"{k} {v}" for k, v in caught.items()) + " (expected: all, it is MBPP)"))

        t = time.perf_counter()
        records = []
        for p in problems:
            records.append({"id": p.task_id, "question": p.question, "inferences": []})
        batch = [Program(s, list(p.tests), setup=p.setup, request_id=f"{i}/{k}")
                 for i, p in enumerate(problems) for k, s in enumerate(samples(p))]
        async for r in ex.execute_batch(batch, deadline=600):
            i, k = map(int, batch[r.index].request_id.split("/"))
            records[i]["inferences"].append({"model_name": "variants", "completion_id": k,
                                             "completion": batch[r.index].program,
                                             "pass_rate": r.pass_rate})
        rows.append(("4 pass rates (4 samples)", len(problems), len(problems),
                     time.perf_counter() - t, f"{len(batch)} programs run"))

        t = time.perf_counter()
        pairs = [pair for r in records for pair in make_pairs(r)]
        rows.append(("5 pairs", len(records), len({p['id'].rsplit('/', 1)[0] for p in pairs}),
                     time.perf_counter() - t, f"{len(pairs)} pairs"))
        t = time.perf_counter()
        hard = hard_subset(records)
        rows.append(("6 hard subset", len(records), len(hard), time.perf_counter() - t, ""))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--embedded", type=int, default=0, metavar="N",
                    help="instead: the whole pipeline with the embedded model on N questions")
    ap.add_argument("--max-tokens", type=int, default=768,
                    help="with --embedded: the LLM's answer limit (default 768)")
    ap.add_argument("--out", default="bench-synth-embedded", metavar="DIR",
                    help="with --embedded: where seeds and outputs go")
    args = ap.parse_args()
    from acecoder import log

    log.configure()  # progress lines of the long --embedded run
    proc, target = start_executor(args.workers)
    try:
        if args.embedded:
            out_dir = Path(args.out)
            out_dir.mkdir(parents=True, exist_ok=True)
            report = asyncio.run(embedded(target, args.embedded, args.max_tokens, out_dir))
        else:
            rows = asyncio.run(run(target))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    if args.embedded:
        from acecoder.server.synth.pipeline import format_report

        print(format_report(report))
        t = report["tokens"]
        print(f"{report['seeds']} questions in {report['seconds']:.0f} s "
              f"({report['seconds'] / max(report['seeds'], 1):.1f} s each); LLM tokens: "
              f"{t.get('prompt', 0)} prompt, {t.get('completion', 0)} completion; "
              f"kept records in {report['out']}")
        return 0
    print(f"{'stage':<26} {'in':>5} {'out':>5} {'seconds':>8} {'questions/s':>12}  notes")
    for name, n_in, n_out, secs, notes in rows:
        print(f"{name:<26} {n_in:>5} {n_out:>5} {secs:>8.2f} {n_in / max(secs, 1e-9):>12.1f}  "
              f"{notes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
