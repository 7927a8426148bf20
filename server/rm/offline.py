"""`acecoder score`: score a JSONL file of (question, response) records.

Input records:  {"id": str, "question": str, "response": str}
Output records: {"id": ..., "score": float}, one per input, in completion order; a record
the model cannot take (empty text, invalid input) gets {"id", "score": null, "error"}.
Rerunning with the same output file skips ids already written. The model runs in this
process unless `server` names a running `acecoder serve rm` (`open_model`, which `acecoder
rerank` uses too).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from acecoder.errors import InvalidArgument
from acecoder.jsonl import Progress, done_ids, read_records, text_field
from acecoder.ranking import Reranking

from .config import RewardConfig

CHUNK = 64


@dataclass(frozen=True)
class Record:
    id: str
    question: str
    response: str


def read_input(path: Path) -> list[Record]:
    return read_records(path, lambda rid, row: Record(
        rid, text_field(row, "question"), text_field(row, "response")))


async def run(input_path: Path, output_path: Path, config: RewardConfig, *,
              server: str | None = None, progress: bool = True) -> dict[str, int]:
    """Score every input record not yet in the output. Returns counts."""
    records = read_input(input_path)
    done = done_ids(output_path)
    todo = [r for r in records if r.id not in done]
    counts = {"total": len(records), "skipped": len(records) - len(todo), "scored": 0,
              "invalid": 0}
    if not todo:
        return counts
    output_path.parent.mkdir(parents=True, exist_ok=True)
    chunks = [todo[i:i + CHUNK] for i in range(0, len(todo), CHUNK)]
    with output_path.open("a", encoding="utf-8") as out:
        def write(row: dict[str, Any]) -> None:
            out.write(json.dumps(row) + "\n")

        model = await open_model(config, server)
        bar = Progress(len(todo), progress, unit="item", what="items")
        limit = asyncio.Semaphore(4)

        async def many(chunk: list[Record]) -> list[float | Exception]:
            return [s.score for s in await model.score([(r.question, r.response)
                                                        for r in chunk])]

        async def one(chunk: list[Record]) -> None:
            async with limit:
                try:
                    scores = await many(chunk)
                except InvalidArgument:  # find the bad records; score the rest
                    scores = []
                    for rec in chunk:
                        try:
                            scores.extend(await many([rec]))
                        except InvalidArgument as exc:
                            scores.append(exc)
            for rec, s in zip(chunk, scores, strict=True):
                if isinstance(s, Exception):
                    counts["invalid"] += 1
                    write({"id": rec.id, "score": None, "error": str(s)})
                else:
                    counts["scored"] += 1
                    write({"id": rec.id, "score": s})
            out.flush()
            bar.update(len(chunk))

        try:
            await asyncio.gather(*(one(c) for c in chunks))
        finally:
            bar.close()
            await model.close()
            os.fsync(out.fileno())
    return counts


class RewardEndpoint(Protocol):
    """What the offline commands call: this process's `RewardService` and a running server's
    `AsyncRewardClient` alike (each raises InvalidArgument for a request it refuses)."""

    async def score(self, items: Sequence[tuple[str, str]]) -> Sequence[Any]: ...

    async def rerank(self, question: str, candidates: Sequence[str], *,
                     tests: Sequence[str] = (), setup: str = "",
                     budget: float | None = None) -> Reranking: ...

    async def close(self) -> None: ...


async def open_model(config: RewardConfig, server: str | None) -> RewardEndpoint:
    """The client of the `acecoder serve rm` at `server`, or else `config`'s model, loaded in
    this process."""
    if server:
        from acecoder.clients.rm import AsyncRewardClient

        return AsyncRewardClient(server)
    from .service import RewardService

    service = RewardService(config)
    await service.start()
    return service
