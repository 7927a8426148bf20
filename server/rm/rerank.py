"""`acecoder rerank`: best-of-N over a JSONL file.

Input records:  {"id": str, "question": str, "candidates": [str, ...], "tests": [str, ...]?,
                 "setup": str?}
Output records: {"id", "best": int, "ranked": [{"index", "score", "pass_rate", "verdicts"},
...], "complete": bool, "tests_source": "given"|"synthesized"|"none", "seconds": float} (best
first; pass_rate is null and verdicts empty when no tests ran, score is null when a --budget ran
out before the candidate was scored; complete is false then), or {"id", "best": null, "error"}
for a record the server refuses. Resumable like `acecoder score`.

With --synth, a record without tests gets tests imagined by the synthesis service first (within
its share of the budget; without them it is ranked by RM alone, and "note" says why).
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acecoder.errors import InvalidArgument
from acecoder.jsonl import Progress, done_ids, read_records, text_field, text_list
from acecoder.ranking import Reranking

from .config import RewardConfig
from .offline import open_model


@dataclass(frozen=True)
class Record:
    id: str
    question: str
    candidates: list[str]
    tests: list[str]
    setup: str


def read_input(path: Path) -> list[Record]:
    return read_records(path, lambda rid, row: Record(
        rid, text_field(row, "question"), text_list(row, "candidates"),
        text_list(row, "tests", []), text_field(row, "setup", "")))


def output_record(rid: str, got: Reranking, tests_source: str,
                  note: str = "") -> dict[str, Any]:
    row = {"id": rid, "best": got.ranked[0].index,
           "ranked": [{"index": r.index, "score": r.score, "pass_rate": r.pass_rate,
                       "verdicts": list(r.verdicts)} for r in got.ranked],
           "complete": got.complete, "tests_source": tests_source,
           "seconds": round(got.seconds, 4)}
    if note:
        row["note"] = note
    return row


async def run(input_path: Path, output_path: Path, config: RewardConfig, *,
              server: str | None = None, progress: bool = True, budget: float | None = None,
              synth: str | None = None, concurrency: int = 8) -> dict[str, int]:
    """Rank every record of `input_path` into `output_path`. `budget`: seconds per question
    (the best so far is written when it runs out); `synth`: HOST:PORT of the synthesis
    service, to imagine tests for records that bring none."""
    if budget is not None and not budget > 0:
        raise ValueError(f"--budget must be > 0 seconds, got {budget}")
    if concurrency < 1:
        raise ValueError(f"--concurrency must be >= 1, got {concurrency}")
    records = read_input(input_path)
    done = done_ids(output_path)
    todo = [r for r in records if r.id not in done]
    counts = {"total": len(records), "skipped": len(records) - len(todo), "ranked": 0,
              "invalid": 0, "partial": 0}
    if not todo:
        return counts
    output_path.parent.mkdir(parents=True, exist_ok=True)
    model = await open_model(config, server)
    imagine = _Imagine(synth) if synth else None
    bar = Progress(len(todo), progress, unit="q", what="questions")
    limit = asyncio.Semaphore(concurrency)
    with output_path.open("a", encoding="utf-8") as out:
        async def one(rec: Record) -> None:
            async with limit:
                started = asyncio.get_running_loop().time()
                tests, source, note = rec.tests, ("given" if rec.tests else "none"), ""
                if not tests and imagine is not None:
                    tests, note = await imagine(rec.question, budget)
                    source = "synthesized" if tests else "none"
                left = None if budget is None else max(
                    0.05, budget - (asyncio.get_running_loop().time() - started))
                try:
                    got = await model.rerank(rec.question, rec.candidates, tests=tests,
                                             setup=rec.setup, budget=left)
                    row = output_record(rec.id, got, source, note)
                    counts["ranked"] += 1
                    counts["partial"] += not got.complete
                except InvalidArgument as exc:
                    row = {"id": rec.id, "best": None, "error": str(exc)}
                    counts["invalid"] += 1
            out.write(json.dumps(row) + "\n")
            out.flush()
            bar.update()

        try:
            await asyncio.gather(*(one(r) for r in todo))
        finally:
            bar.close()
            await model.close()
            if imagine is not None:
                imagine.close()
            os.fsync(out.fileno())
    return counts


class _Imagine:
    """Tests from the synthesis service for a question that brings none."""

    def __init__(self, target: str) -> None:
        from acecoder.clients import SynthesisClient

        self.client = SynthesisClient(target, timeout=600)

    async def __call__(self, question: str, budget: float | None) -> tuple[list[str], str]:
        from acecoder.clients.bestofn import imagine_tests
        from acecoder.ranking import SYNTH_SHARE

        got = await asyncio.to_thread(imagine_tests, self.client, question, deadline=600.0
                                      if budget is None else budget * SYNTH_SHARE)
        return list(got.tests), got.reason

    def close(self) -> None:
        self.client.close()
