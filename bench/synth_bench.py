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
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import signal
import subprocess
import sys
import time

from acecoder.clients import AsyncExecutorClient, Program
from acecoder.executor.datasets import broken, load_mbpp
from acecoder.server.synth import decontam
from acecoder.server.synth import filter as stage2
from acecoder.server.synth.pairs import hard_subset, make_pairs


def start_executor(workers: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "acecoder.cli", "serve", "executor", "--port",
                             "0", "--workers", str(workers), "--max-queue", "4096"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    m = re.search(r"listening on (\S+)", proc.stdout.readline())
    if not m:
        proc.kill()
        raise SystemExit("the executor did not start")
    return proc, m.group(1)


def samples(p) -> list[str]:  # type: ignore[no-untyped-def]
    wrong = next((p.program.replace(a, b, 1) for a, b in ((" + ", " - "), (" < ", " > "),
                                                          (" == ", " != ")) if a in p.program),
                 p.program + "\n    return None\n")
    return [p.program, broken(p), wrong, f"def {p.entry_point}(*args):\n    return None\n"]


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
    args = ap.parse_args()
    proc, target = start_executor(args.workers)
    try:
        rows = asyncio.run(run(target))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    print(f"{'stage':<26} {'in':>5} {'out':>5} {'seconds':>8} {'questions/s':>12}  notes")
    for name, n_in, n_out, secs, notes in rows:
        print(f"{name:<26} {n_in:>5} {n_out:>5} {secs:>8.2f} {n_in / max(secs, 1e-9):>12.1f}  "
              f"{notes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
