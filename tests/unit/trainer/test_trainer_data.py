"""Preference pairs for the RM trainer: both input formats, a split by question, batches
dealt to processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from acecoder.jsonl import InputError
from acecoder.trainer import rm_data


def test_pairs_from_both_formats(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    record = {"id": "q1", "question": "Write add.", "test_cases": [], "context_messages": [],
              "inferences": [
                  {"model_name": "m", "completion_id": 0, "completion": "good", "pass_rate": 1.0},
                  {"model_name": "m", "completion_id": 1, "completion": "bad", "pass_rate": 0.2}]}
    pair = {"id": "p1", "instruction": "Write sub.", "input": "Use ints.", "chosen": "a",
            "rejected": "b"}
    path.write_text(json.dumps(record) + "\n" + json.dumps(pair) + "\n")
    pairs = rm_data.read_pairs(path)
    assert [(p.question, p.chosen, p.rejected) for p in pairs] == [
        ("Write add.", "good", "bad"), ("Write sub.\n\nUse ints.", "a", "b")]
    path.write_text(json.dumps({"id": "x", "instruction": "q", "chosen": 1,
                                "rejected": "b"}) + "\n")
    with pytest.raises(InputError, match='"chosen" must be a string'):
        rm_data.read_pairs(path)


def test_the_split_keeps_each_question_on_one_side() -> None:
    pairs = [rm_data.Pair(f"{q}/{k}", f"question {q}", f"c{k}", f"r{k}")
             for q in range(200) for k in range(3)]
    train, held = rm_data.split(pairs, 0.25)
    assert {p.question for p in train}.isdisjoint({p.question for p in held})
    assert 0.15 < len(held) / len(pairs) < 0.35
    assert rm_data.split(pairs, 0.25) == (train, held)  # deterministic
    assert rm_data.split(pairs, 0.0) == (pairs, [])
    with pytest.raises(ValueError, match="eval_fraction"):
        rm_data.split(pairs, 1.0)


def test_batches_deal_disjoint_equal_shares() -> None:
    items = list(range(23))
    mine = [list(rm_data.batches(items, 2, seed=1, epoch=0, rank=r, world=2))  # type: ignore[arg-type]
            for r in range(2)]
    assert len(mine[0]) == len(mine[1]) == rm_data.steps_per_epoch(23, 2, 2) == 5
    seen = [i for r in mine for b in r for i in b]
    assert len(seen) == len(set(seen)) == 20  # the short last round is dropped
    again = list(rm_data.batches(items, 2, seed=1, epoch=0, rank=0, world=2))  # type: ignore[arg-type]
    other = list(rm_data.batches(items, 2, seed=1, epoch=1, rank=0, world=2))  # type: ignore[arg-type]
    assert again == mine[0] and other != again  # the order depends on (seed, epoch) only
