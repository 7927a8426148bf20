#!/usr/bin/env python3
"""RL trainer benchmark: step time, and the share of it spent waiting for rewards, with the
rewards scored while the policy generates (overlap) and without (generate, then wait).

The CPU setup: the embedded SmolLM2-135M-Instruct policy in one DeepSpeed process on the
warm-up prompts, rewards over gRPC from a real executor server (and, with --mix, the
embedded AceCode-RM on a real RM server as well). Each mode runs the same steps with the
same seed, so both see the same prompts. The target: under 5% of step time waiting on
rewards with overlap.

    python bench/trainer_bench.py [--steps 2] [--prompts 4] [--mix]
"""

from __future__ import annotations

import argparse
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from acecoder import log
from acecoder.services import start_executor
from acecoder.serving import spawn_server


def measure(overlap: bool, args: argparse.Namespace, executor: str, rm: str | None,
            out: Path) -> dict[str, float]:
    from acecoder.trainer.recipes.reinforce_pp import RLTrainConfig, RLTrainer

    config = RLTrainConfig(
        data="embedded:warmup", output=out, model="embedded:smollm2-135m",
        reward="mix" if rm else "rule", binary=False, executor=executor, rm=rm,
        steps=args.steps, rollout_batch=args.prompts, samples_per_prompt=args.samples,
        train_batch=args.prompts * args.samples, micro_batch=args.samples,
        generate_batch=args.generate_batch, max_new_tokens=args.max_new_tokens,
        max_prompt_length=256, lr=1e-5, overlap=overlap, save_every=0, resume=False,
        progress=False)
    trainer = RLTrainer(config)
    rows: list[dict[str, Any]] = []
    try:
        trainer.setup()
        for _ in range(args.steps):
            rows.append(trainer.train_step())
    finally:
        trainer.cleanup()

    def mean(key: str) -> float:
        return sum(r[key] for r in rows) / len(rows)

    return {"step": mean("time/step"), "generate": mean("time/generate"),
            "wait": mean("time/reward_wait"), "update": mean("time/update")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2, help="steps per mode (default 2)")
    ap.add_argument("--prompts", type=int, default=4, help="prompts per step (default 4)")
    ap.add_argument("--samples", type=int, default=2, help="samples per prompt (default 2)")
    ap.add_argument("--generate-batch", type=int, default=1,
                    help="prompts per generate call: the scoring unit (default 1)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--mix", action="store_true",
                    help="also score with the embedded AceCode-RM on an RM server")
    ap.add_argument("--workers", type=int, default=2, help="executor workers")
    args = ap.parse_args()
    log.configure()

    executor, target = start_executor(args.workers, "auto")
    rm_proc = rm = None
    try:
        if args.mix:
            rm_proc, m = spawn_server([sys.executable, "-m", "acecoder.cli", "serve", "rm",
                                       "--port", "0"], r"listening on (\S+)", "the RM server")
            rm = m.group(1)
        results = {}
        with tempfile.TemporaryDirectory() as tmp:
            for overlap in (True, False):  # overlap pays any first-run costs
                started = time.monotonic()
                results[overlap] = measure(overlap, args, target, rm, Path(tmp) / str(overlap))
                print(f"  overlap={overlap}: {time.monotonic() - started:.0f} s",
                      file=sys.stderr)
    finally:
        for proc in (rm_proc, executor):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)

    samples = args.prompts * args.samples
    print(f"\nRL step timing: {samples} samples per step ({args.prompts} prompts x "
          f"{args.samples}), {args.max_new_tokens} new tokens, reward "
          f"{'mix (executor + RM server)' if args.mix else 'rule (executor server)'}, "
          f"{args.steps} steps per mode, {platform.machine()}, 1 process\n")
    print(f"{'mode':<12} {'step s':>8} {'generate s':>11} {'update s':>9} "
          f"{'reward wait s':>14} {'wait share':>11}")
    for overlap, name in ((False, "sequential"), (True, "overlap")):
        r = results[overlap]
        print(f"{name:<12} {r['step']:>8.2f} {r['generate']:>11.2f} {r['update']:>9.2f} "
              f"{r['wait']:>14.3f} {100 * r['wait'] / r['step']:>10.2f}%")
    seq, ovl = results[False], results[True]
    print(f"\nreward wait: {seq['wait']:.3f} s -> {ovl['wait']:.3f} s per step; step time "
          f"ratio sequential/overlap {seq['step'] / ovl['step']:.2f}x; target: wait share "
          f"< 5% with overlap: {'met' if ovl['wait'] / ovl['step'] < 0.05 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
