"""Which test suites may share a test process with other suites.

Starting a test process costs as much as starting the program's. A test process may therefore
serve many programs in turn, each with a fresh namespace; what must not happen is that one
request's *test code* changes the process in a way a later request's verdicts could feel. A suite
is "pure" when its code cannot reach any state that outlives its namespace: no imports beyond a
few modules without mutable module state, no attribute assignment, no names or attributes that
start with an underscore (so no `__dict__`, `__class__`, `__builtins__`), no introspection or
I/O builtins, no classes, no decorators. Everything else runs in a test process of its own
(reused only for byte-identical suites).
"""

from __future__ import annotations

import ast
from functools import lru_cache

PURE_MODULES = frozenset({
    "math", "cmath", "string", "itertools", "functools", "operator", "heapq", "bisect",
    "collections", "fractions", "statistics", "copy", "random", "re", "typing", "numbers",
})
_BLOCKED_NAMES = frozenset({
    "exec", "eval", "compile", "open", "globals", "locals", "vars", "setattr", "delattr",
    "getattr", "breakpoint", "input", "exit", "quit", "help", "memoryview", "super", "object",
    "classmethod", "staticmethod", "property", "type", "dir", "id",
})
_STATEMENTS = (
    ast.Assert, ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.FunctionDef, ast.Return,
    ast.If, ast.For, ast.While, ast.Break, ast.Continue, ast.Pass, ast.Import, ast.ImportFrom,
    ast.Try, ast.Raise, ast.Delete, ast.Global, ast.Nonlocal,
)
_FORBIDDEN = (ast.ClassDef, ast.AsyncFunctionDef, ast.AsyncFor, ast.AsyncWith, ast.With,
              ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)


def _target_ok(t: ast.expr) -> bool:
    if isinstance(t, ast.Name):
        return True
    if isinstance(t, (ast.Tuple, ast.List)):
        return all(_target_ok(e) for e in t.elts)
    if isinstance(t, ast.Starred):
        return _target_ok(t.value)
    if isinstance(t, ast.Subscript):
        # Only into containers the suite itself named (not a module's attribute).
        return isinstance(t.value, ast.Name)
    return False


def _pure_source(src: str) -> bool:
    try:
        tree = ast.parse(src)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, _FORBIDDEN):
            return False
        if isinstance(node, ast.stmt) and not isinstance(node, _STATEMENTS):
            return False
        if isinstance(node, ast.FunctionDef) and node.decorator_list:
            return False
        if isinstance(node, ast.Import):
            if any(a.name.split(".")[0] not in PURE_MODULES for a in node.names):
                return False
        if isinstance(node, ast.ImportFrom):
            if node.level or (node.module or "").split(".")[0] not in PURE_MODULES:
                return False
            if any(a.name == "*" or a.name.startswith("_") for a in node.names):
                return False
        if isinstance(node, ast.Name) and (
                (node.id.startswith("_") and node.id != "_") or node.id in _BLOCKED_NAMES):
            return False
        if isinstance(node, ast.Attribute) and (node.attr.startswith("_") or node.attr == "register"):
            return False  # `register` on an ABC would change isinstance for later suites
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = (node.targets if isinstance(node, (ast.Assign, ast.Delete))
                       else [node.target])
            if not all(_target_ok(t) for t in targets):
                return False
        if isinstance(node, (ast.For, ast.comprehension)) and not _target_ok(node.target):
            return False
        if isinstance(node, ast.ExceptHandler) and node.name and node.name.startswith("_"):
            return False
    return True


@lru_cache(maxsize=4096)
def is_pure(tests: tuple[str, ...], setup: str) -> bool:
    """Whether this suite may run in a test process shared with other pure suites."""
    return all(_pure_source(s) for s in (*tests, setup))
