"""`acecoder pairs` and `acecoder hard`: offline stages over AceCode-87K JSONL files.

Both follow `acecoder exec`'s convention: `--input IN.jsonl --output OUT.jsonl` (or
`OUT.parquet`, written when the job completes), a progress bar on a terminal, and resumable: the
stages are deterministic, so a rerun writes exactly the output records that are not there yet
(a line cut short by a crash is dropped first).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from acecoder.jsonl import Progress, done_ids, read_records, staging_path

from .pairs import PairRule, hard_subset, inferences, make_pairs
from .safefs import FilePath, finish


class Stopped(Exception):
    """The caller asked the work to stop (its job was cancelled, or the server is shutting
    down); the output holds whole records only, and a rerun resumes it."""


def _never() -> bool:
    return False


def read_acecode(path: FilePath) -> list[dict[str, Any]]:
    def parse(rid: str, row: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(row.get("question"), str):
            raise ValueError("\"question\" must be a string")
        inferences(row)
        return row

    return read_records(path, parse)  # type: ignore[arg-type]


def _write_missing(output: FilePath, groups: Iterable[list[dict[str, Any]]], progress: Progress,
                   stopped: Callable[[], bool]) -> int:
    """Append the rows of each group (one input record's) that the output lacks, a group at a
    time; `stopped` is asked before each, so a stop leaves no group half written."""
    done = done_ids(output)  # type: ignore[arg-type]
    output.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with output.open("a", encoding="utf-8") as out:
        try:
            for group in groups:
                if stopped():
                    raise Stopped(f"stopped after {progress.done} of {progress.total} records")
                for row in group:
                    if row["id"] not in done:
                        out.write(json.dumps(row) + "\n")
                        written += 1
                out.flush()
                progress.update()
        finally:
            os.fsync(out.fileno())
    return written


def run_pairs(input_path: FilePath, output_path: FilePath, rule: PairRule = PairRule(), *,
              progress: bool = True, stopped: Callable[[], bool] = _never) -> dict[str, int]:
    """Write the pairs of every record not yet in the output, record by record. `stopped` is
    asked between records; when it says so, Stopped is raised."""
    records = read_acecode(input_path)
    counts = {"questions": len(records), "pairs": 0, "without_pairs": 0}

    def groups() -> Iterable[list[dict[str, Any]]]:
        for r in records:
            pairs = make_pairs(r, rule)
            counts["pairs"] += len(pairs)
            counts["without_pairs"] += int(not pairs)
            yield pairs

    bar = Progress(len(records), progress, unit="q", what="questions")
    try:
        written = _write_missing(staging_path(output_path), groups(), bar,  # type: ignore[arg-type]
                                 stopped)
    finally:
        bar.close()
    finish(output_path)
    return {**counts, "written": written}


def run_hard(input_path: FilePath, output_path: FilePath, *, progress: bool = True,
             stopped: Callable[[], bool] = _never) -> dict[str, int]:
    """Write the hard subset's records not yet in the output; `stopped` is asked between
    records, as in `run_pairs`."""
    records = read_acecode(input_path)
    kept = hard_subset(records)
    bar = Progress(len(kept), progress, unit="q", what="questions")
    try:
        written = _write_missing(staging_path(output_path),  # type: ignore[arg-type]
                                 ([r] for r in kept), bar, stopped)
    finally:
        bar.close()
    finish(output_path)
    return {"questions": len(records), "kept": len(kept), "written": written}
