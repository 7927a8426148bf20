"""The direction of imports between rooms, read from every module's import statements (lazy
ones inside functions included): base -> executor / clients -> server / trainer -> cli, and no
circle of imports between files."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
FOLDERS = {"acecoder": "acecoder", "executor": "acecoder.executor",
           "clients": "acecoder.clients", "server": "acecoder.server",
           "trainer": "acecoder.trainer"}
CLI = {"cli", "demo", "evals", "services"}
"""Modules of `acecoder/` that are the top layer (they import every other room)."""
LEVEL = {"base": 0, "executor": 1, "clients": 1, "server": 2, "trainer": 2, "cli": 3}
MAY_IMPORT = {
    "base": {"base"},
    "executor": {"base", "executor"},
    "clients": {"base", "clients", "executor"},
    "server": {"base", "executor", "clients", "server"},
    "trainer": {"base", "executor", "clients", "server", "trainer"},
    "cli": set(LEVEL),
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [p for p in rel.parts[1:] if p != "__init__"]
    return ".".join([FOLDERS[rel.parts[0]], *parts])


def room(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "acecoder":
        return None
    if len(parts) > 1 and parts[1] in ("executor", "clients", "server", "trainer"):
        return parts[1]
    if len(parts) > 1 and parts[1] in CLI:
        return "cli"
    return "base"


def modules() -> dict[str, Path]:
    out = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "_pb2" not in path.name:
                out[module_name(path)] = path
    return out


def imports(module: str, path: Path) -> set[str]:
    """Every acecoder module `path` imports, at any depth of its code."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}  # `from pkg import module`
    return {m for m in found if room(m) is not None}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: {t for t in imports(m, p) if t in mods and t != m} for m, p in mods.items()}


def test_imports_run_one_way() -> None:
    wrong = sorted(f"{m} ({room(m)}) imports {t} ({room(t)})"
                   for m, targets in graph().items() for t in targets
                   if room(t) not in MAY_IMPORT[room(m) or "base"])
    assert not wrong, "\n".join(wrong)


def test_no_circle_of_imports_between_files() -> None:
    g = graph()
    # a package's __init__ and the modules it re-exports are one unit, not a circle
    edges = {m: {t for t in ts if not (t.startswith(m + ".") or m.startswith(t + "."))}
             for m, ts in g.items()}
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                circles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t, [*stack, t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert not circles, "\n".join(" -> ".join(c) for c in circles)


@pytest.mark.parametrize("module,target,allowed", [
    ("acecoder.errors", "acecoder.server.rm.service", False),
    ("acecoder.executor.pool", "acecoder.clients.executor", False),
    ("acecoder.server.rm.service", "acecoder.cli", False),
    ("acecoder.server.rm.service", "acecoder.clients.rewards", True),
    ("acecoder.cli", "acecoder.trainer.reinforce", True),
])
def test_the_rule_itself(module: str, target: str, allowed: bool) -> None:
    assert (room(target) in MAY_IMPORT[room(module) or "base"]) is allowed


def test_every_package_is_in_the_wheel() -> None:
    """A package the tree has but pyproject does not list works in the editable install and
    is missing from the wheel."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    packages = {module_name(p) for folder in FOLDERS for p in (ROOT / folder).rglob("__init__.py")}
    assert packages - listed == set()
