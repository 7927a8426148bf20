"""`acecoder exec`: run a JSONL file of programs through a local worker pool.

Input records:  {"id": str, "program": str, "tests": [str, ...]}  ("setup" optional), or stdio
tests: "tests": [{"input": str, "output": str}, ...] (or {"inputs": [...], "outputs": [...]}, as an
object or a JSON string, as verl and DeepCoder data carry it), with optional "checker" (tokens,
exact, lines, float:TOL, float_abs:TOL, float_rel:TOL, or {"custom": "<python checker source>"}:
a program that gets the paths of the input, the output and the expected output, and whose
exit status is the verdict, as testlib's); "time_limit" (seconds per test) and
"memory_limit_mb" set the limits; "language" is "python" (the default), "c", "cpp", "java",
"nodejs", "rust" or "go" (stdio tests only; a compile failure is the status "COMPILE_ERROR"; a
language this machine has no toolchain for is "INVALID_INPUT", saying what to install). With
"fn_name": str (or ground truth that carries its own "fn_name", as APPS and TACO do) the tests
are call tests: [{"input": [args...], "output": value}, ...] or {"inputs": [[args...], ...],
"outputs": [...]}, each a call of that function (or of `Solution().fn_name`) compared as plain
data (see the README's "Call tests").
Output records: {"id": ..., "pass_rate": float, "verdicts": [...], "status": str}, one per input,
in completion order. Rerunning with the same output file skips ids already written, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from acecoder.errors import FailedPrecondition, InvalidArgument
from acecoder.jsonl import Progress, done_ids, read_records, text_field

from . import languages
from .config import ExecutorConfig
from .pool import WorkerPool
from .service import validate
from .types import CallTests, ExecutionResult, StdioTest, call_json, parse_ground_truth


@dataclass(frozen=True)
class Record:
    id: str
    program: str
    tests: list[str] | list[StdioTest]
    setup: str
    checker: str = ""
    time_limit: float | None = None
    memory_mb: int | None = None
    language: str = "python"
    checker_source: str = ""
    fn_name: str = ""
    calls: tuple[tuple[str, str], ...] = ()
    """Call tests of `fn_name`: (JSON arguments, JSON output) pairs (`tests` is empty)."""


def _number(row: dict[str, Any], name: str) -> Any:
    value = row.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValueError(f"\"{name}\" must be a number")
    return value


def _record(rid: str, row: dict[str, Any]) -> Record:
    language = row.get("language", "python")
    if language not in languages.LANGUAGES:
        raise ValueError(f"\"language\" {str(language)[:40]!r} is not one of "
                         f"{', '.join(languages.LANGUAGES)}")
    checker: Any = row.get("checker", "")
    checker_source: Any = ""
    if isinstance(checker, dict) and set(checker) == {"custom"}:
        checker, checker_source = "custom", checker["custom"]
        if not isinstance(checker_source, str) or not checker_source.strip():
            raise ValueError("a custom checker is {\"custom\": \"<python checker source>\"}")
    elif not isinstance(checker, str):
        raise ValueError("\"checker\" must be a string (tokens, exact, lines, float:TOL, ...) "
                         "or {\"custom\": \"<python checker source>\"}")
    fn_name = row.get("fn_name") or ""
    if not isinstance(fn_name, str):
        raise ValueError("\"fn_name\" must be a string: the function the call tests call")
    memory = _number(row, "memory_limit_mb")
    try:
        parsed = parse_ground_truth(row.get("tests"), fn_name)
        calls: tuple[tuple[str, str], ...] = ()
        tests: list[str] | list[StdioTest] = []
        if isinstance(parsed, CallTests):
            fn_name = parsed.fn_name
            calls = tuple((call_json(t.input, f"tests[{i}].input"),
                           call_json(t.output, f"tests[{i}].output"))
                          for i, t in enumerate(parsed.tests))
        else:
            tests = parsed
    except ValueError as exc:
        raise ValueError("\"tests\" must be a list of statements, of stdio tests or (with "
                         "\"fn_name\") of call tests, or {\"inputs\", \"outputs\"} ground "
                         f"truth ({exc})") from None
    return Record(rid, text_field(row, "program"), tests, text_field(row, "setup", ""),
                  checker, _number(row, "time_limit"),
                  None if memory is None else int(memory), language, checker_source, fn_name,
                  calls)


def read_input(path: Path) -> list[Record]:
    return read_records(path, _record)


def output_record(rid: str, result: ExecutionResult) -> dict[str, Any]:
    return {
        "id": rid, "pass_rate": result.pass_rate,
        "verdicts": [v.value for v in result.verdicts], "status": result.status.value,
    }


async def run(input_path: Path, output_path: Path, config: ExecutorConfig,
              timeout: float | None = None, progress: bool = True) -> dict[str, int]:
    """Run every input record not yet in the output. Returns counts."""
    records = read_input(input_path)
    done = done_ids(output_path)
    todo = [r for r in records if r.id not in done]
    counts = {"total": len(records), "skipped": len(records) - len(todo), "ran": 0, "invalid": 0,
              "failed": 0}
    if not todo:
        return counts
    output_path.parent.mkdir(parents=True, exist_ok=True)
    bar = Progress(len(todo), progress, unit="prog", what="programs")
    out: TextIO
    with output_path.open("a", encoding="utf-8") as out:

        def write(row: dict[str, Any]) -> None:
            out.write(json.dumps(row) + "\n")
            out.flush()

        async with WorkerPool(config) as pool:
            limit = asyncio.Semaphore(config.workers * 2)

            async def one(rec: Record) -> None:
                try:
                    stdio = [(t.input, t.output) for t in rec.tests
                             if isinstance(t, StdioTest)]
                    statements = [t for t in rec.tests if isinstance(t, str)]
                    req = validate(config, program=rec.program, tests=statements,
                                   setup=rec.setup,
                                   timeout=rec.time_limit or timeout, memory_mb=rec.memory_mb,
                                   request_id=rec.id, stdio=stdio, checker=rec.checker,
                                   checker_source=rec.checker_source,
                                   language=rec.language, fn_name=rec.fn_name,
                                   calls=rec.calls)
                except (InvalidArgument, FailedPrecondition) as exc:
                    counts["invalid"] += 1
                    write({"id": rec.id, "pass_rate": 0.0, "verdicts": [],
                           "status": "INVALID_INPUT", "error": str(exc)})
                    bar.update()
                    return
                async with limit:
                    try:
                        result = await pool.execute(req)
                    except Exception as exc:  # the pool answers every request; should it not,
                        counts["failed"] += 1  # the record still gets its line, saying why
                        bar.update()
                        write({"id": rec.id, "pass_rate": 0.0, "verdicts": [],
                               "status": "EXECUTOR_ERROR", "error": str(exc)})
                        return
                write(output_record(rec.id, result))
                counts["ran"] += 1
                bar.update()

            try:
                await asyncio.gather(*(one(r) for r in todo))
            finally:
                bar.close()
                os.fsync(out.fileno())
    return counts
