"""What best-of-N picking gains, on MbppBase: the table `make demo` prints and
`bench/bestofn_bench.py` measures over every problem.

For each problem, N candidates: the reference solution shuffled in among wrong programs a
policy might write (`wrong_variants`: an operator flipped, the result perturbed, a stub). The
pick's pass@1 is judged on all of the problem's tests. Picks:

- random: the expected pass@1 of a uniformly random candidate;
- RM: the reward model's best (no tests);
- first test: the candidates run the problem's first test only (the example a prompt shows),
  ties broken at random (expected value); first test + RM: ties broken by the RM score;
- first test + RM within a latency budget (the best so far when it runs out);
- oracle: the best candidate's pass@1.

The embedded RM's head was trained on pairs of these kinds from 80% of the questions;
`held_out` marks the other 20% (the same split by question hash), the honest figure.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from acecoder.datasets import Problem, wrong_variants
from acecoder.jsonl import Progress

PICKS = ("random", "RM", "first test", "first test + RM", "first test + RM, budget", "oracle")
TIMED = {"RM", "first test + RM", "first test + RM, budget"}


@dataclass
class GainReport:
    n_candidates: int
    budget: float
    passed: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in PICKS})
    """pass@1 of each pick, per problem."""
    latency: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in TIMED})
    held_out: list[bool] = field(default_factory=list)
    complete: list[bool] = field(default_factory=list)
    """Per problem: whether the budgeted ranking was complete."""
    seconds: float = 0.0


def candidates(p: Problem, rng: random.Random) -> list[str]:
    cands = [p.program, *wrong_variants(p)]
    rng.shuffle(cands)
    return cands


def best_of_n_gain(bon: Any, problems: Sequence[Problem], *, budget: float = 0.1,
                   eval_fraction: float = 0.2, seed: int = 0,
                   progress: bool = True) -> GainReport:
    """Rank each problem's candidates with `bon` (a `BestOfN` whose RM server has an
    executor) every way in PICKS."""
    from acecoder.trainer.rm_data import held_out

    rng = random.Random(seed)
    report = GainReport(n_candidates=4, budget=budget)
    bar = Progress(len(problems), progress, unit="problem", what="problems ranked")
    started = time.perf_counter()
    try:
        for p in problems:
            cands = candidates(p, rng)
            report.n_candidates = len(cands)
            truth = bon.rank(p.question, cands, tests=list(p.tests), setup=p.setup)
            passed = {r.index: float(r.pass_rate == 1.0) for r in truth}

            def timed(key: str, **kw: Any) -> Any:
                t0 = time.perf_counter()
                got = bon.rank(p.question, cands, setup=p.setup, **kw)
                report.latency[key].append(time.perf_counter() - t0)
                return got

            by_rm = timed("RM")
            by_first = timed("first test + RM", tests=[p.tests[0]])
            budgeted = timed("first test + RM, budget", tests=[p.tests[0]], budget=budget)
            top = max(r.pass_rate or 0.0 for r in by_first)
            tied = [r.index for r in by_first if (r.pass_rate or 0.0) == top]
            got = {"random": statistics.mean(passed.values()),
                   "RM": passed[by_rm.best.index],
                   "first test": statistics.mean(passed[i] for i in tied),
                   "first test + RM": passed[by_first.best.index],
                   "first test + RM, budget": passed[budgeted.best.index],
                   "oracle": max(passed.values())}
            for k, v in got.items():
                report.passed[k].append(v)
            report.complete.append(budgeted.complete)
            report.held_out.append(held_out(p.question, eval_fraction))
            bar.update()
    finally:
        bar.close()
    report.seconds = time.perf_counter() - started
    return report


def _quantile(values: list[float], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]:.0f}"


def format_gain(r: GainReport) -> str:
    n = len(r.held_out)
    n_held = sum(r.held_out)
    lines = [f"best-of-{r.n_candidates} on MbppBase: {n} problems ({n_held} held out from the "
             "RM head's training); pass@1 of the pick, judged on all tests",
             f"{'pick':<26} {'pass@1':>7} {'held-out':>9} {'vs random':>10} {'p50 ms':>7} "
             f"{'p95 ms':>7}"]
    base = statistics.mean(r.passed["random"]) if n else float("nan")
    for key in PICKS:
        values = r.passed[key]
        if not values:
            continue
        mean = statistics.mean(values)
        held = [v for v, h in zip(values, r.held_out, strict=True) if h]
        on_held = f"{statistics.mean(held):.3f}" if held else "-"
        times = r.latency.get(key, [])
        ratio = f"{mean / base:.2f}x" if base > 0 else "-"
        lines.append(f"{key:<26} {mean:>7.3f} {on_held:>9} {ratio:>10} "
                     f"{_quantile(times, 0.5):>7} {_quantile(times, 0.95):>7}")
    lines.append(f"budget {1000 * r.budget:.0f} ms: {sum(r.complete)}/{n} rankings complete, "
                 f"the rest the best so far; {r.seconds:.0f} s in all")
    return "\n".join(lines)
