"""Preference pairs from MbppBase for the CPU reward-model run: each problem's reference
solution against wrong programs a policy might write (`wrong_variants`), with pass rates
from a real executor; a pair needs the reference to pass every test and the variant to pass
at least `min_gap` less (a variant that passes as much is no worse, and is skipped)."""

from __future__ import annotations

from typing import Any

from acecoder.datasets import Problem, load_mbpp, wrong_variants


async def build(executor: Any, problems: list[Problem] | None = None, *,
                min_gap: float = 0.4) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """(AceCodePair records, counts). `executor` is an AsyncExecutorClient."""
    from acecoder.clients.executor import Program

    if problems is None:
        problems = [p for p in load_mbpp() if p.question]
    programs, owners = [], []
    for i, p in enumerate(problems):
        for k, code in enumerate([p.program, *wrong_variants(p)]):
            programs.append(Program(code, list(p.tests), setup=p.setup))
            owners.append((i, k))
    rates: dict[tuple[int, int], float] = {}
    async for r in executor.execute_batch(programs, deadline=1800):
        rates[owners[r.index]] = r.pass_rate
    pairs = []
    counts = {"problems": len(problems), "reference_fails": 0, "variants": 0, "too_close": 0}
    for i, p in enumerate(problems):
        if rates[(i, 0)] < 1.0:
            counts["reference_fails"] += 1
            continue
        for k, code in enumerate(wrong_variants(p), 1):
            counts["variants"] += 1
            if rates[(i, 0)] - rates[(i, k)] < min_gap:
                counts["too_close"] += 1
                continue
            pairs.append({"id": f"{p.task_id}/{k}", "instruction": p.question, "input": "",
                          "chosen": p.program, "rejected": code})
    counts["pairs"] = len(pairs)
    return pairs, counts
