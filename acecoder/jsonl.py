"""Offline JSONL jobs' shared parts: resuming from a partial output, and progress."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


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


def pace(done: int, seconds: float) -> str:
    """How fast work goes, in words a log reader takes in at a glance."""
    if seconds <= 0:
        return "just started"
    if done <= 0:
        return f"none done in {seconds:.0f} s"
    rate = done / seconds
    return f"{rate:.1f}/s" if rate >= 1 else f"{1 / rate:.1f} s each"


class Progress:
    """tqdm on a terminal; a log line every few seconds otherwise."""

    def __init__(self, total: int, enabled: bool, *, unit: str = "it", what: str = "items",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.total = total
        self.done = 0
        self.clock = clock
        self.started = clock()
        self.last_log = self.started
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=unit, file=sys.stderr)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif (now := self.clock()) - self.last_log > 10:
            self.last_log = now
            logger.info("%d/%d %s (%s)", self.done, self.total, self.what,
                        pace(self.done, self.last_log - self.started))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


async def run_pool(items: Iterable[T], work: Callable[[T], Awaitable[None]],
                   concurrency: int) -> None:
    """`await work(item)` for every item, `concurrency` at a time: a fixed pool of tasks
    pulling from the iterator (a million records are not a million coroutines). The first
    failure cancels the rest and is raised as itself."""
    queue = iter(items)

    async def worker() -> None:
        for item in queue:
            await work(item)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, concurrency)):
                group.create_task(worker())
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None


class InputError(Exception):
    """The input file cannot be used; the message says where and why."""


def text_field(row: dict[str, Any], name: str, default: str | None = None) -> str:
    """row[name] as a string, or ValueError naming the field."""
    value = row.get(name, default)
    if not isinstance(value, str):
        raise ValueError(f"\"{name}\" must be a string")
    return value


def text_list(row: dict[str, Any], name: str, default: list[str] | None = None) -> list[str]:
    """row[name] as a list of strings, or ValueError naming the field."""
    value = row.get(name, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"\"{name}\" must be a list of strings")
    return value


def read_records(path: Path, parse: Callable[[str, dict[str, Any]], T]) -> list[T]:
    """Every record of a JSONL file, each with a non-empty unique string "id", built by
    `parse(id, row)` (which raises ValueError for a bad field). All problems are reported at
    once (the first 20) in one InputError, each with its file and line."""
    records: list[T] = []
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
            rid = row.get("id")
            if not isinstance(rid, str) or not rid:
                problems.append(f"{path}:{n}: \"id\" must be a non-empty string")
                continue
            if rid in seen:
                problems.append(f"{path}:{n}: duplicate id {rid!r}")
                continue
            try:
                records.append(parse(rid, row))
            except ValueError as exc:
                problems.append(f"{path}:{n}: {exc}")
                continue
            seen.add(rid)
    if problems:
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise InputError("\n".join(problems[:20]) + more)
    return records


def staging_path(output: Path) -> Path:
    """Where a job writes its JSONL while it runs: the output itself, or, for a `.parquet`
    output (which cannot be appended to), a `.partial.jsonl` beside it."""
    if output.suffix == ".parquet":
        return output.with_name(output.name + ".partial.jsonl")
    return output


def finish(output: Path) -> None:
    """For a `.parquet` output: write it from the staged JSONL, atomically (a temporary file
    renamed into place), then drop the staging file. Nothing to do for JSONL outputs."""
    staged = staging_path(output)
    if staged == output or not staged.exists():
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in staged.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    tmp = output.with_name(output.name + ".tmp")
    pq.write_table(pa.Table.from_pylist(rows), str(tmp))
    tmp.replace(output)
    staged.unlink()
