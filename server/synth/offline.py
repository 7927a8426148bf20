"""`acecoder pairs` and `acecoder hard`: offline stages over AceCode-87K JSONL files.

Both follow `acecoder exec`'s convention: `--input IN.jsonl --output OUT.jsonl` (or `OUT.parquet`,
written when the job completes), a progress bar on a terminal, and resumable: the stages are deterministic, so a rerun writes exactly the
output records that are not there yet (a line cut short by a crash is dropped first).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from acecoder.jsonl import Progress, done_ids, finish, read_records, staging_path

from .pairs import PairRule, _inferences, hard_subset, make_pairs


def read_acecode(path: Path) -> list[dict[str, Any]]:
    def parse(rid: str, row: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(row.get("question"), str):
            raise ValueError("\"question\" must be a string")
        _inferences(row)
        return row

    return read_records(path, parse)


def _write_missing(output: Path, rows: list[dict[str, Any]], progress: Progress,
                   per_record: list[int]) -> int:
    done = done_ids(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with output.open("a", encoding="utf-8") as out:
        i = 0
        for n in per_record:
            for row in rows[i:i + n]:
                if row["id"] not in done:
                    out.write(json.dumps(row) + "\n")
                    written += 1
            i += n
            out.flush()
            progress.update()
        os.fsync(out.fileno())
    return written


def run_pairs(input_path: Path, output_path: Path, rule: PairRule = PairRule(), *,
              progress: bool = True) -> dict[str, int]:
    records = read_acecode(input_path)
    rows: list[dict[str, Any]] = []
    per_record = []
    for r in records:
        pairs = make_pairs(r, rule)
        rows += pairs
        per_record.append(len(pairs))
    bar = Progress(len(records), progress, unit="q", what="questions")
    try:
        written = _write_missing(staging_path(output_path), rows, bar, per_record)
    finally:
        bar.close()
    finish(output_path)
    return {"questions": len(records), "pairs": len(rows), "written": written,
            "without_pairs": sum(1 for n in per_record if n == 0)}


def run_hard(input_path: Path, output_path: Path, *, progress: bool = True) -> dict[str, int]:
    records = read_acecode(input_path)
    kept = hard_subset(records)
    bar = Progress(len(kept), progress, unit="q", what="questions")
    try:
        written = _write_missing(staging_path(output_path), kept, bar, [1] * len(kept))
    finally:
        bar.close()
    finish(output_path)
    return {"questions": len(records), "kept": len(kept), "written": written}
