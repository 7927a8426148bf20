"""A resumed `acecoder synth` reports what the first run reported for everything its outputs
hold: kept, dropped by reason, and the tests of kept records."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acecoder.executor.types import Verdict
from acecoder.server.synth import decontam, pipeline
from acecoder.server.synth.filter import FilterRule


@dataclass
class Result:
    verdicts: list[Verdict]


class InProcessExecutor:
    """Runs each test with exec(): the seeds below are the test's own trusted code."""

    async def execute_batch(self, programs: Sequence[Any]) -> AsyncIterator[Result]:
        for program in programs:
            verdicts = []
            for test in program.tests:
                scope: dict[str, Any] = {}
                exec(program.program, scope)
                try:
                    exec(test, scope)
                    verdicts.append(Verdict.PASSED)
                except AssertionError:
                    verdicts.append(Verdict.FAILED)
            yield Result(verdicts)


def test_a_resumed_run_reports_the_same_counts(tmp_path: Path) -> None:
    add = "def add(a, b):\n    return a + b\n"
    tests = [f"assert add({k}, 1) == {k + 1}" for k in range(5)] + ["assert add(0, 0) == 1"]
    seeds = [
        {"id": "kept", "question": "Add.", "program": add, "tests": tests},
        # passes 4 of 6: enough passed, too few left (the 4 survivors are in no output)
        {"id": "few", "question": "Add.", "program": add,
         "tests": tests[:4] + ["assert add(1, 1) == 3", "assert add(2, 2) == 5"]},
        {"id": "none", "question": "Add.", "program": "", "tests": tests},
    ]
    source = tmp_path / "seeds.jsonl"
    source.write_text("".join(json.dumps(s) + "\n" for s in seeds))
    out = tmp_path / "out.jsonl"
    config = pipeline.SynthConfig(stages=("filter",), proxy_reference=True,
                                  rule=FilterRule(min_passed=4, min_kept=5))

    def run() -> dict[str, Any]:
        return asyncio.run(pipeline.run(source, out, llm=None, proxy=None,  # type: ignore[arg-type]
                                        executor=InProcessExecutor(), config=config,
                                        progress=False, index=decontam.BenchmarkIndex()))

    first = run()
    assert first["kept"] == 1 and first["tests_kept"] == 5
    assert first["dropped"] == {"too_few_tests_left": 1, "no_proxy_solution": 1}
    assert first["tests_in"] == 18 and first["skipped"] == 0
    again = run()
    assert again["skipped"] == 3 and again["tests_in"] == 0  # imagined: this run's seeds only
    for key in ("seeds", "done", "kept", "dropped", "tests_kept"):
        assert again[key] == first[key], key
    assert "kept 5 (in the kept records, every run)" in pipeline.format_report(again)
