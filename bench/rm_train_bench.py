#!/usr/bin/env python3
"""Reward-model training benchmark: the CPU run that matters.

Builds preference pairs from MbppBase (each reference solution against wrong programs a
policy might write, pass rates from a real executor server), holds out 20% of the questions,
and trains the embedded SmolLM2-135M AceCode-RM (its head starts untrained) with
`acecoder train rm`'s recipe on DeepSpeed. Prints held-out pairwise accuracy before and after
training, against chance (0.5), and the training time.

    python bench/rm_train_bench.py [--problems 120] [--epochs 1] [--out bench-rm-train]

With --head-only the backbone stays frozen and only the value head learns (minutes, not
hours, on a CPU). That is how the embedded model's shipped head was made:

    python bench/rm_train_bench.py --problems 400 --head-only --epochs 4 --lr 1e-3 \
        --export-head acecoder/models/heads/smollm2-135m.safetensors
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

from acecoder import log
from acecoder.clients import AsyncExecutorClient
from acecoder.datasets import load_mbpp
from acecoder.serving import spawn_server


def held_out_accuracy(model: str, pairs_path: Path, fraction: float) -> tuple[float, int]:
    from acecoder.models import reward as models
    from acecoder.trainer import rm_data

    rm = models.load(model)
    _, held = rm_data.split(rm_data.read_pairs(pairs_path), fraction)
    right = 0
    for k in range(0, len(held), 8):
        batch = held[k:k + 8]
        chosen = rm.forward_full([rm.encode(p.question, p.chosen) for p in batch])
        rejected = rm.forward_full([rm.encode(p.question, p.rejected) for p in batch])
        right += sum(c > r for c, r in zip(chosen, rejected, strict=True))
    return right / max(1, len(held)), len(held)


def _without_out(argv: list[str]) -> list[str]:
    """The command line minus --out DIR (a scratch directory says nothing about the head)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--out":
            skip = True
        elif not a.startswith("--out="):
            out.append(a)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=120, help="MbppBase problems (default 120)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--eval-fraction", type=float, default=0.2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="bench-rm-train", metavar="DIR")
    ap.add_argument("--head-only", action="store_true",
                    help="train the value head alone on the frozen backbone")
    ap.add_argument("--export-head", default=None, metavar="FILE.safetensors",
                    help="write the trained v_head (and a JSON card next to it) here")
    args = ap.parse_args()
    log.configure()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from acecoder.trainer import mbpp_pairs
    from acecoder.trainer.recipes import rm_bt

    problems = [p for p in load_mbpp() if p.question][:args.problems]
    proc, m = spawn_server([sys.executable, "-m", "acecoder.cli", "serve", "executor", "--port",
                            "0", "--workers", str(args.workers), "--max-queue", "4096"],
                           r"listening on (\S+)", "the executor")
    try:
        async def build() -> tuple[list[dict[str, str]], dict[str, int]]:
            async with AsyncExecutorClient(m.group(1), timeout=1800) as ex:
                return await mbpp_pairs.build(ex, problems)

        pairs, counts = asyncio.run(build())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    pairs_path = out / "pairs.jsonl"
    pairs_path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    print(f"pairs from {counts['problems']} problems: {counts['pairs']} (variants "
          f"{counts['variants']}, too close to the reference {counts['too_close']}, "
          f"reference failing {counts['reference_fails']})", flush=True)

    before, n_held = held_out_accuracy("embedded:smollm2-135m", pairs_path, args.eval_fraction)
    started = time.perf_counter()
    result = rm_bt.run(rm_bt.RMTrainConfig(
        data=pairs_path, output=out / "model", model="embedded:smollm2-135m",
        eval_fraction=args.eval_fraction, epochs=args.epochs, lr=args.lr, global_batch=16,
        micro_batch=4, max_length=args.max_length, head_only=args.head_only, progress=False))
    seconds = time.perf_counter() - started
    after, _ = held_out_accuracy(str(out / "model"), pairs_path, args.eval_fraction)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(f"\nmachine: {platform.machine()}, {platform.processor() or '?'}; commit {commit}")
    print(f"{'model':<34} {'held-out pairs':>14} {'accuracy':>9} {'vs chance':>10}")
    from acecoder.models import reward as models

    start = ("shipped head" if models.load("embedded:smollm2-135m").description.head_trained
             else "untrained head")
    print(f"{'SmolLM2-135M, ' + start:<34} {n_held:>14} {before:>9.3f} {before / 0.5:>9.2f}x")
    label = "SmolLM2-135M, head trained (BT)" if args.head_only else "SmolLM2-135M, trained (BT)"
    print(f"{label:<34} {n_held:>14} {after:>9.3f} {after / 0.5:>9.2f}x")
    print(f"trained {result['steps']} steps on {len(pairs) - n_held} pairs in {seconds:.0f} s "
          f"({seconds / max(1, result['steps']):.1f} s/step); accuracy ratio trained/untrained "
          f"{after / max(before, 1e-9):.2f}x; model in {out / 'model'}")
    if args.export_head:
        from safetensors.torch import load_file, save_file

        from acecoder.models.files import HEAD_PREFIX

        weights = load_file(str(out / "model" / "model.safetensors"))
        head = {k: v.contiguous() for k, v in weights.items() if k.startswith(HEAD_PREFIX)}
        target = Path(args.export_head)
        target.parent.mkdir(parents=True, exist_ok=True)
        save_file(head, str(target), metadata={"format": "pt"})
        card = {"trained": "v_head only, backbone frozen" if args.head_only else "all weights",
                "data": f"MbppBase pairs: {len(pairs)} from {counts['problems']} problems "
                        "(reference solution vs wrong variants, pass rates from the executor)",
                "held-out pairs": n_held, f"held-out accuracy ({start})": round(before, 4),
                "held-out accuracy (trained)": round(after, 4), "epochs": args.epochs,
                "lr": args.lr, "optimizer steps": result["steps"], "commit": commit,
                "made by": " ".join(["python bench/rm_train_bench.py",
                                     *_without_out(sys.argv[1:])])}
        target.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
        print(f"head written to {target} (card: {target.with_suffix('.json')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
