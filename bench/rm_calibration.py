#!/usr/bin/env python3
"""Calibration of the embedded reward model on MbppBase problems its head never trained on.

The shipped head trained on pairs from the first 400 MbppBase problems with a question, minus
the 20% of questions `trainer.rm_data.held_out` keeps back; those held-back questions and the
problems after the first 400 are unseen. They are split in two by task id: one half fits the
Platt calibration, the other is where this prints the reliability table (predicted vs
observed fraction correct per bin) and the Brier score of sigmoid(raw) and of the calibrated
probability. Items: each reference solution (correct) and two wrong programs, `broken(p)` (the
result perturbed) and a stub returning None.

    python bench/rm_calibration.py [--write acecoder/models/heads/smollm2-135m.calibration.json]

Without --write the calibration the model already carries (if any) is evaluated too.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine  # noqa: E402

from acecoder.datasets import Problem, broken, load_mbpp  # noqa: E402
from acecoder.models import calibration as cal  # noqa: E402
from acecoder.server.rm.config import RewardConfig  # noqa: E402
from acecoder.server.rm.service import RewardService  # noqa: E402
from acecoder.trainer.rm_data import held_out  # noqa: E402

TRAINED_PROBLEMS = 400  # bench/rm_train_bench.py --problems 400 made the shipped head
TRAINED_EVAL_FRACTION = 0.2


def unseen_problems() -> list[Problem]:
    problems = [p for p in load_mbpp() if p.question]
    return [p for i, p in enumerate(problems)
            if i >= TRAINED_PROBLEMS or held_out(p.question, TRAINED_EVAL_FRACTION)]


def fit_half(task_id: str) -> bool:
    return hashlib.sha256(f"calibration:{task_id}".encode()).digest()[0] % 2 == 0


def items(problems: list[Problem]) -> tuple[list[tuple[str, str]], list[int]]:
    pairs: list[tuple[str, str]] = []
    labels: list[int] = []
    for p in problems:
        stub = f"def {p.entry_point}(*args):\n    return None\n"
        for program, label in ((p.program, 1), (broken(p), 0), (stub, 0)):
            pairs.append((p.question, program))
            labels.append(label)
    return pairs, labels


def table(title: str, probabilities: list[float], labels: list[int]) -> None:
    print(f"\n{title}: Brier {cal.brier(probabilities, labels):.4f}")
    print(f"{'bin':<11} {'items':>6} {'predicted':>10} {'observed':>9}")
    for low, high, n, predicted, observed in cal.reliability(probabilities, labels):
        print(f"[{low:.1f}, {high:.1f}) {n:>6} {predicted:>10.3f} {observed:>9.3f}")


async def score(model: str,
                pairs: list[tuple[str, str]]) -> tuple[list[float], cal.Calibration | None]:
    """Raw scores of `pairs`, and the calibration the model carries."""
    service = RewardService(RewardConfig(model=model))
    await service.start()
    out: list[float] = []
    try:
        for k in range(0, len(pairs), 32):
            out += [s.score for s in await service.score(pairs[k:k + 32])]
    finally:
        await service.close()
    return out, service.calibration


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded:smollm2-135m")
    ap.add_argument("--write", default=None, metavar="FILE.json",
                    help="write the fitted calibration here")
    args = ap.parse_args()
    problems = unseen_problems()
    fit_p = [p for p in problems if fit_half(p.task_id)]
    eval_p = [p for p in problems if not fit_half(p.task_id)]
    fit_items, fit_labels = items(fit_p)
    eval_items, eval_labels = items(eval_p)
    started = time.monotonic()
    raw, carried = asyncio.run(score(args.model, fit_items + eval_items))
    fit_raw, eval_raw = raw[:len(fit_items)], raw[len(fit_items):]
    print(machine())
    print(f"{args.model}: {len(problems)} unseen MbppBase problems, {len(fit_p)} to fit "
          f"({len(fit_items)} items), {len(eval_p)} to evaluate ({len(eval_items)} items); "
          f"scored in {time.monotonic() - started:.0f} s; raw scores {min(raw):.2f} .. "
          f"{max(raw):.2f}")
    fitted = cal.fit_calibration(
        fit_raw, fit_labels, eval_raw=eval_raw, eval_labels=eval_labels,
        method=(f"Platt scaling (logistic regression) on {len(fit_p)} MbppBase problems the "
                f"head never trained on (the rest of the unseen ones evaluate it): each "
                f"reference solution (1), broken(p) (0) and a stub returning None (0); "
                f"bench/rm_calibration.py"),
        extra={"evaluation_problems": len(eval_p)})
    print(f"fitted: scale {fitted.scale:.4f}, shift {fitted.shift:.4f}")
    table("before: sigmoid(raw)", [cal.sigmoid(x) for x in eval_raw], eval_labels)
    table("after: sigmoid(scale * raw + shift), fitted here",
          [fitted.probability(x) for x in eval_raw], eval_labels)
    if carried is not None and not args.write:
        table("the calibration the model carries",
              [carried.probability(x) for x in eval_raw], eval_labels)
    if args.write:
        Path(args.write).write_text(fitted.to_json())
        print(f"\nwrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
