"""Preference pairs for the reward-model trainer: read, split by question, encode, batch."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acecoder.jsonl import read_records, text_field
from acecoder.models.reward import Encoded, RewardModel
from acecoder.server.synth.pairs import PairRule, inferences, make_pairs


@dataclass(frozen=True)
class Pair:
    id: str
    question: str
    chosen: str
    rejected: str


def read_pairs(path: Path, rule: PairRule = PairRule()) -> list[Pair]:
    """AceCodePair records ({id, instruction, input?, chosen, rejected}), or AceCode-87K
    records ({id, question, inferences}) made into pairs with `rule` on the fly."""
    def parse(rid: str, row: dict[str, Any]) -> list[Pair]:
        if "inferences" in row:
            text_field(row, "question")
            inferences(row)
            return [Pair(p["id"], p["instruction"], p["chosen"], p["rejected"])
                    for p in make_pairs(row, rule)]
        question = text_field(row, "instruction")
        extra = text_field(row, "input", "")
        if extra:
            question = f"{question}\n\n{extra}"
        return [Pair(rid, question, text_field(row, "chosen"), text_field(row, "rejected"))]

    return [p for group in read_records(path, parse) for p in group]


def split(pairs: list[Pair], eval_fraction: float) -> tuple[list[Pair], list[Pair]]:
    """(train, held out), by question: every pair of a question lands on the same side, so
    held-out accuracy is measured on questions the model never trained on. Deterministic."""
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    train: list[Pair] = []
    held: list[Pair] = []
    for p in pairs:
        (held if held_out(p.question, eval_fraction) else train).append(p)
    return train, held


def held_out(question: str, eval_fraction: float) -> bool:
    """Whether `split` holds out the pairs of this question."""
    h = int.from_bytes(hashlib.sha256(question.encode()).digest()[:8], "big")
    return h / 2**64 < eval_fraction


@dataclass(frozen=True)
class EncodedPair:
    chosen: Encoded
    rejected: Encoded


def encode(rm: RewardModel, pairs: list[Pair]) -> list[EncodedPair]:
    return [EncodedPair(rm.encode(p.question, p.chosen), rm.encode(p.question, p.rejected))
            for p in pairs]


def batches(pairs: list[EncodedPair], size: int, *, seed: int, epoch: int,
            rank: int = 0, world: int = 1, shuffle: bool = True) -> Iterator[list[EncodedPair]]:
    """This process's micro-batches of one epoch: shuffled with (seed, epoch), dealt
    round-robin to the `world` processes; a last short round is dropped so that every
    process takes the same number of steps."""
    order = list(range(len(pairs)))
    if shuffle:
        random.Random(seed * 100_003 + epoch).shuffle(order)
    step = size * world
    for start in range(0, len(order) - step + 1, step):
        mine = order[start + rank * size:start + (rank + 1) * size]
        yield [pairs[i] for i in mine]


def steps_per_epoch(n: int, size: int, world: int) -> int:
    return n // (size * world)
