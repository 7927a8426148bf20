"""The README names every value a user finds in an output: `acecoder exec`'s statuses, verdicts
and flags, `acecoder synth`'s drop reasons and test-refusal reasons. Each list is read from the
code, so a new value that the README does not explain fails here."""

from __future__ import annotations

import ast
from pathlib import Path

from acecoder.executor.types import Flag, ProgramStatus, Verdict

ROOT = Path(__file__).resolve().parents[3]
README = (ROOT / "README.md").read_text()


def _tree(rel: str) -> ast.Module:
    return ast.parse((ROOT / rel).read_text(), rel)


def _strings(node: ast.AST) -> list[str]:
    """The string constants in an expression; an f-string gives its leading constant."""
    if isinstance(node, ast.JoinedStr):
        first = node.values[0] if node.values else None
        return [first.value] if isinstance(first, ast.Constant) and isinstance(first.value, str) \
            else []
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    return [s for child in ast.iter_child_nodes(node) for s in _strings(child)]


def _module_constants(rel: str) -> set[str]:
    """Public module-level NAME = "string" constants."""
    found = set()
    for node in _tree(rel).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and \
                isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id.isupper() and \
                        not target.id.startswith("_"):
                    found.add(node.value.value)
    return found


def _missing(values: set[str]) -> list[str]:
    return sorted(v for v in values if f"`{v}" not in README)


def test_every_exec_status_verdict_and_flag_is_explained() -> None:
    statuses = {s.value for s in ProgramStatus}
    # what `acecoder exec` writes for a record the pool never ran
    for node in ast.walk(_tree("executor/offline.py")):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "status" and \
                        isinstance(value, ast.Constant):
                    statuses.add(value.value)
    assert {"OK", "INVALID_INPUT", "EXECUTOR_ERROR"} <= statuses  # the scan sees the code
    values = statuses | {v.value for v in Verdict} | {f.value for f in Flag}
    assert not _missing(values), f"README.md does not name {_missing(values)}"
    assert "completion order" in README


def test_every_synth_drop_reason_is_explained() -> None:
    reasons = _module_constants("server/synth/filter.py")
    for node in ast.walk(_tree("server/synth/pipeline.py")):
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Attribute) and t.attr == "reason" for t in node.targets):
            reasons |= {s.split(":")[0] for s in _strings(node.value)}
    reasons.discard("")
    assert {"no_proxy_solution", "rewrite_failed", "contaminated", "proxy_unavailable"} <= \
        reasons  # the scan sees the code
    assert not _missing(reasons), f"README.md does not name the drop reasons {_missing(reasons)}"
    assert ".dropped.jsonl" in README


def test_every_test_refusal_reason_is_explained() -> None:
    reasons = _module_constants("server/synth/parse.py")
    for node in ast.walk(_tree("server/synth/pipeline.py")):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and \
                node.value.attr == "rejected":
            reasons |= set(_strings(node.slice))
    assert {"duplicate", "truncated", "proxy_failed"} <= reasons  # the scan sees the code
    assert not _missing(reasons), f"README.md does not name the refusals {_missing(reasons)}"
