#!/usr/bin/env python3
"""Best-of-N benchmark: what picking by the reward model gains over picking at random, and
how it stands next to picking by tests, on every MbppBase problem (`acecoder.evals` says
how the candidates are made and each pick is judged).

Starts an executor server and the RM server (embedded SmolLM2-135M AceCode-RM, its shipped
head) on loopback, ranks with `acecoder.clients.bestofn.BestOfN`, prints one table: pass@1 of
each pick, on all problems and on the questions held out from the head's training, the ratio
to random, and latency of the online calls (p50/p95, one call at a time).

    python bench/bestofn_bench.py [--limit 100] [--budget 0.1] [--workers 2]
"""

from __future__ import annotations

import argparse
import platform
import signal

from acecoder import log
from acecoder.clients.bestofn import BestOfN
from acecoder.demo import start_rm
from acecoder.evals import best_of_n_gain, format_gain
from acecoder.services import start_executor
from acecoder.datasets import load_mbpp


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="only the first N problems")
    ap.add_argument("--budget", type=float, default=0.1,
                    help="latency budget of the budgeted pick, seconds (default 0.1)")
    ap.add_argument("--workers", type=int, default=2, help="executor workers (default 2)")
    ap.add_argument("--eval-fraction", type=float, default=0.2,
                    help="share of questions the shipped head never saw (default 0.2)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    log.configure()
    problems = [p for p in load_mbpp() if p.question][:args.limit]
    ex_proc, ex_target = start_executor(args.workers, "auto")
    rm_proc, rm_target = start_rm(ex_target)
    try:
        with BestOfN(rm_target, timeout=600) as bon:
            bon.rank("warm up", ["def f(): pass"])
            report = best_of_n_gain(bon, problems, budget=args.budget,
                                    eval_fraction=args.eval_fraction, seed=args.seed)
    finally:
        for proc in (rm_proc, ex_proc):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    print(f"\nmachine: {platform.machine()}, {args.workers} executor workers")
    print(format_gain(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
