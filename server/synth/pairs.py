"""Stages 5 and 6: preference pairs for the RM trainer, and the hard subset for RL.

Input records are AceCode-87K's: ``{id, source, question, test_cases, inferences:
[{model_name, completion_id, completion, pass_rate}], context_messages}``.

Pairs follow AceCoder's rule by default: within one model's samples of a question, a chosen
program passes at least 80% of the tests, a rejected one more than 0%, and the chosen beats
the rejected by at least 0.4; samples with the same program text count once. Output records
are AceCodePair's: ``{id, instruction, input, chosen, rejected}``.

The hard subset is AceCoder's RL subset: questions whose mean pass rate is at most the
median, and, among those, whose pass-rate standard deviation is at least their median.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class PairRule:
    min_chosen: float = 0.8
    """A chosen program passes at least this share of the tests."""
    min_rejected: float = 0.0
    """A rejected program passes MORE than this share (0: it must pass something)."""
    min_gap: float = 0.4
    """Chosen pass rate minus rejected pass rate, at least."""
    same_model: bool = True
    """Pair only samples of the same model."""
    max_per_question: int | None = None
    """Keep at most this many pairs per question (the widest gaps first)."""

    def __post_init__(self) -> None:
        for name in ("min_chosen", "min_rejected", "min_gap"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.max_per_question is not None and self.max_per_question < 1:
            raise ValueError(f"max_per_question must be >= 1, got {self.max_per_question}")


def inferences(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The samples of an AceCode-87K record (its "inferences"), checked: each has a string
    "completion" and a numeric "pass_rate"; ValueError names the first that does not."""
    rows = record.get("inferences")
    if not isinstance(rows, list):
        raise ValueError("\"inferences\" must be a list")
    out = []
    for k, inf in enumerate(rows):
        if not isinstance(inf, dict) or not isinstance(inf.get("completion"), str) or \
                not isinstance(inf.get("pass_rate"), (int, float)):
            raise ValueError(f"inferences[{k}] needs a string \"completion\" and a numeric "
                             "\"pass_rate\"")
        out.append(inf)
    return out


def make_pairs(record: dict[str, Any], rule: PairRule = PairRule()) -> list[dict[str, Any]]:
    """The preference pairs of one AceCode-87K record, in a deterministic order."""
    question = record.get("question")
    if not isinstance(question, str):
        raise ValueError("\"question\" must be a string")
    groups: dict[str, dict[str, float]] = {}
    for inf in inferences(record):
        model = str(inf.get("model_name", "")) if rule.same_model else ""
        groups.setdefault(model, {}).setdefault(inf["completion"], float(inf["pass_rate"]))
    candidates = []
    for model in sorted(groups):
        samples = sorted(groups[model].items(), key=lambda kv: (-kv[1], kv[0]))
        for chosen, c_rate in samples:
            if c_rate < rule.min_chosen:
                break
            for rejected, r_rate in samples:
                if r_rate > rule.min_rejected and c_rate - r_rate >= rule.min_gap:
                    candidates.append((c_rate - r_rate, model, chosen, rejected))
    candidates.sort(key=lambda c: (-c[0], c[1], c[2], c[3]))
    if rule.max_per_question is not None:
        candidates = candidates[:rule.max_per_question]
    rid = record["id"]
    return [{"id": f"{rid}/{k}", "instruction": question, "input": "", "chosen": chosen,
             "rejected": rejected} for k, (_, _, chosen, rejected) in enumerate(candidates)]


def hard_subset(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """AceCoder's hard subset: mean pass rate <= the median, then, among those, pass-rate
    standard deviation >= their median. Records without inferences are left out."""
    stats = []
    for r in records:
        rates = [float(inf["pass_rate"]) for inf in inferences(r)]
        if rates:
            stats.append((r, statistics.fmean(rates), statistics.pstdev(rates)))
    if not stats:
        return []
    mean_median = statistics.median(m for _, m, _ in stats)
    low = [(r, s) for r, m, s in stats if m <= mean_median]
    std_median = statistics.median(s for _, s in low)
    return [r for r, s in low if s >= std_median]
