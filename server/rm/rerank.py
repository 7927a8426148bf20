"""`acecoder rerank`: best-of-N over a JSONL file.

Input records:  {"id": str, "question": str, "candidates": [str, ...], "tests": [str, ...]?,
                 "setup": str?}
Output records: {"id", "best": int, "ranked": [{"index", "score", "pass_rate"}, ...]} (best
first; pass_rate is null when no tests ran), or {"id", "best": null, "error"} for a record the
server refuses. Resumable like `acecoder score`.
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

from .config import RewardConfig
from .service import Ranked


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


def output_record(rid: str, ranked: list[Ranked]) -> dict[str, Any]:
    return {"id": rid, "best": ranked[0].index,
            "ranked": [{"index": r.index, "score": r.score, "pass_rate": r.pass_rate}
                       for r in ranked]}


async def run(input_path: Path, output_path: Path, config: RewardConfig, *,
              server: str | None = None, progress: bool = True) -> dict[str, int]:
    records = read_input(input_path)
    done = done_ids(output_path)
    todo = [r for r in records if r.id not in done]
    counts = {"total": len(records), "skipped": len(records) - len(todo), "ranked": 0,
              "invalid": 0}
    if not todo:
        return counts
    output_path.parent.mkdir(parents=True, exist_ok=True)
    rank = await _ranker(config, server)
    bar = Progress(len(todo), progress, unit="q", what="questions")
    limit = asyncio.Semaphore(8)
    with output_path.open("a", encoding="utf-8") as out:
        async def one(rec: Record) -> None:
            async with limit:
                try:
                    row = output_record(rec.id, await rank.rank(rec))
                    counts["ranked"] += 1
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
            await rank.close()
            os.fsync(out.fileno())
    return counts


class _InProcess:
    def __init__(self, service: Any) -> None:
        self.service = service

    async def rank(self, rec: Record) -> list[Ranked]:
        return await self.service.rerank(rec.question, rec.candidates, tests=rec.tests,
                                         setup=rec.setup)

    async def close(self) -> None:
        await self.service.close()


class _Remote:
    def __init__(self, target: str) -> None:
        from acecoder.clients.reward import AsyncRewardClient

        self.client = AsyncRewardClient(target)

    async def rank(self, rec: Record) -> list[Ranked]:
        import grpc

        try:
            got = await self.client.rerank(rec.question, rec.candidates, tests=rec.tests,
                                           setup=rec.setup)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument(exc.details() or "invalid") from None
            raise
        return [Ranked(c.index, c.score, c.truncated, c.pass_rate, c.rank) for c in got]

    async def close(self) -> None:
        await self.client.close()


async def _ranker(config: RewardConfig, server: str | None) -> _InProcess | _Remote:
    if server:
        return _Remote(server)
    from .service import RewardService

    service = RewardService(config)
    await service.start()
    return _InProcess(service)
