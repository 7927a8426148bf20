"""`acecoder exec`: run a JSONL file of programs through a local worker pool.

Input records:  {"id": str, "program": str, "tests": [str, ...]}  ("setup" optional)
Output records: {"id": ..., "pass_rate": float, "verdicts": [...], "status": str}, one per input,
in completion order. Rerunning with the same output file skips ids already written, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from acecoder.errors import InvalidArgument

from .config import ExecutorConfig
from .pool import WorkerPool
from .service import validate
from .types import ExecutionResult

logger = logging.getLogger(__name__)


class InputError(Exception):
    """The input file cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Record:
    id: str
    program: str
    tests: list[str]
    setup: str
    line: int


def read_input(path: Path) -> list[Record]:
    records: list[Record] = []
    seen: set[str] = set()
    problems: list[str] = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{path}:{n}: not valid JSON ({exc.msg})")
                continue
            if not isinstance(row, dict):
                problems.append(f"{path}:{n}: expected a JSON object")
                continue
            rid, program, tests = row.get("id"), row.get("program"), row.get("tests")
            if not isinstance(rid, str) or not rid:
                problems.append(f"{path}:{n}: \"id\" must be a non-empty string")
                continue
            if rid in seen:
                problems.append(f"{path}:{n}: duplicate id {rid!r}")
                continue
            if not isinstance(program, str):
                problems.append(f"{path}:{n}: \"program\" must be a string")
                continue
            if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
                problems.append(f"{path}:{n}: \"tests\" must be a list of strings")
                continue
            setup = row.get("setup", "")
            if not isinstance(setup, str):
                problems.append(f"{path}:{n}: \"setup\" must be a string")
                continue
            seen.add(rid)
            records.append(Record(rid, program, tests, setup, n))
    if problems:
        shown = problems[:20]
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise InputError("\n".join(shown) + more)
    return records


def done_ids(path: Path) -> set[str]:
    """Ids already in the output. A last line cut short by a crash is dropped from the file."""
    if not path.exists():
        return set()
    ids: set[str] = set()
    good_bytes = 0
    with path.open("rb") as f:
        for raw in f:
            try:
                row = json.loads(raw)
                ids.add(row["id"])
            except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
                break
            if not raw.endswith(b"\n"):
                break
            good_bytes += len(raw)
    if good_bytes != path.stat().st_size:
        with path.open("r+b") as f:
            f.truncate(good_bytes)
    return ids


def output_record(rid: str, result: ExecutionResult) -> dict[str, Any]:
    return {
        "id": rid, "pass_rate": result.pass_rate,
        "verdicts": [v.value for v in result.verdicts], "status": result.status.value,
    }


class _Progress:
    """tqdm on a terminal; a log line every few seconds otherwise."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self.last_log = self.started
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="prog", file=sys.stderr)

    def update(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif time.monotonic() - self.last_log > 10:
            self.last_log = time.monotonic()
            rate = self.done / (self.last_log - self.started)
            logger.info("%d/%d programs (%.1f/s)", self.done, self.total, rate)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


async def run(input_path: Path, output_path: Path, config: ExecutorConfig,
              timeout: float | None = None, progress: bool = True) -> dict[str, int]:
    """Run every input record not yet in the output. Returns counts."""
    records = read_input(input_path)
    done = done_ids(output_path)
    todo = [r for r in records if r.id not in done]
    counts = {"total": len(records), "skipped": len(records) - len(todo), "ran": 0, "invalid": 0}
    if not todo:
        return counts
    output_path.parent.mkdir(parents=True, exist_ok=True)
    bar = _Progress(len(todo), progress)
    out: TextIO
    with output_path.open("a", encoding="utf-8") as out:

        def write(row: dict[str, Any]) -> None:
            out.write(json.dumps(row) + "\n")
            out.flush()

        async with WorkerPool(config) as pool:
            limit = asyncio.Semaphore(config.workers * 2)

            async def one(rec: Record) -> None:
                try:
                    req = validate(config, program=rec.program, tests=rec.tests, setup=rec.setup,
                                   timeout=timeout, request_id=rec.id)
                except InvalidArgument as exc:
                    counts["invalid"] += 1
                    write({"id": rec.id, "pass_rate": 0.0, "verdicts": [],
                           "status": "INVALID_INPUT", "error": str(exc)})
                    bar.update()
                    return
                async with limit:
                    result = await pool.execute(req)
                write(output_record(rec.id, result))
                counts["ran"] += 1
                bar.update()

            try:
                await asyncio.gather(*(one(r) for r in todo))
            finally:
                bar.close()
                os.fsync(out.fileno())
    return counts
