"""Suites of plain checks: tests that only call the program with literal arguments and compare
the answers with literals.

Most tests in the field have this shape: MBPP's `assert f(2, 3) == 5`, HumanEval's
`def check(candidate): assert candidate([1, 2]) == 3 ...` followed by `check(f)`. Such a test
can do nothing but call the program (over the channel, getting plain data back), compare plain
values, and fail an assertion: it reads no builtin, no module, no attribute, no subscript, and
binds no name another test reads. So it can run in the worker's *judge* (see worker.py), a test
process that serves many requests, without any request's code changing what the next one sees.

The decision is made by construction, on the syntax tree: a test is admitted only if every node
of it is one of the few kinds listed here, so nothing unlisted (an attribute, a subscript, a
lambda, a comprehension, an import, `**`) can be in it, whatever its spelling. The names it reads
are then checked again in the judge against what they are bound to (the program's functions
only, see harness.run_job): a name bound to a real builtin or module sends the request back to
the usual fresh test process.
"""

from __future__ import annotations

import ast
from typing import Any

from .harness import CALL, PLAIN_ATTRIBUTES, PLAIN_MODULES, SuiteCache

# Larger suites are not parsed here (the worker's time is not bounded by a test's limit); they
# take the usual path.
MAX_SOURCE = 256 * 1024
_NUMBERS = (int, float, complex)


class _NotPlain(Exception):
    pass


def _literal(node: ast.AST) -> None:
    """A literal: a constant, a signed number, or a tuple/list/set/dict of literals."""
    if isinstance(node, ast.Constant):
        return
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) \
            and isinstance(node.operand, ast.Constant) \
            and type(node.operand.value) in _NUMBERS:
        return
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        for elt in node.elts:
            _literal(elt)
        return
    if isinstance(node, ast.Dict):
        for key in node.keys:
            if key is None:  # {**x}
                raise _NotPlain
            _literal(key)
        for value in node.values:
            _literal(value)
        return
    raise _NotPlain


_BINARY = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod)
_UNARY = (ast.USub, ast.UAdd, ast.Not)
_COMPARE = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Is, ast.IsNot, ast.In,
            ast.NotIn)


class _Test:
    def __init__(self) -> None:
        self.reads: set[str] = set()  # names read from the test's module namespace
        self.binds: set[str] = set()
        self.defs: dict[str, str] = {}  # function the test defines -> its one parameter

    def name(self, name: str, param: str | None) -> None:
        if name != param:
            self.reads.add(name)

    def expr(self, node: ast.AST, param: str | None) -> None:
        """An expression of a plain check: literals and names, calls of names (the program's
        functions, or the pure builtins harness.PLAIN_BUILTINS: checked where they are bound),
        arithmetic, `not`/`and`/`or`, comparisons, and displays of these. No attribute, no
        subscript, no `**`, no lambda, no comprehension, no starred or `**` argument."""
        if isinstance(node, ast.Constant):
            return
        if isinstance(node, ast.Name):
            self.name(node.id, param)
            return
        if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
            func = node.func
            if isinstance(func, ast.Attribute):  # math.isclose: a pure function of a module
                if not (isinstance(func.value, ast.Name)
                        and (func.value.id, func.attr) in PLAIN_ATTRIBUTES):
                    raise _NotPlain
                self.name(func.value.id, param)
            else:
                self.name(func.id, param)
            for arg in node.args:
                self.expr(arg, param)  # a Starred argument is not an expression here
            for kw in node.keywords:
                if kw.arg is None:
                    raise _NotPlain
                self.expr(kw.value, param)
            return
        if isinstance(node, ast.BinOp) and isinstance(node.op, _BINARY):
            self.expr(node.left, param)
            self.expr(node.right, param)
            return
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, _UNARY):
            self.expr(node.operand, param)
            return
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                self.expr(value, param)
            return
        if isinstance(node, ast.Compare) and all(isinstance(op, _COMPARE) for op in node.ops):
            self.expr(node.left, param)
            for right in node.comparators:
                self.expr(right, param)
            return
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            for elt in node.elts:
                self.expr(elt, param)
            return
        if isinstance(node, ast.Dict):
            for key in node.keys:
                if key is None:  # {**x}
                    raise _NotPlain
                self.expr(key, param)
            for value in node.values:
                self.expr(value, param)
            return
        raise _NotPlain

    def statement(self, node: ast.stmt, param: str | None) -> None:
        if isinstance(node, ast.Pass):
            return
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            return  # a docstring
        if isinstance(node, ast.Assert):
            self.expr(node.test, param)
            if node.msg is not None:
                self.expr(node.msg, param)
            return
        if param is not None:
            raise _NotPlain  # inside a check function: only asserts
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            _literal(node.value)  # METADATA = {...}
            self.binds.add(node.targets[0].id)
            return
        if isinstance(node, ast.FunctionDef):
            a = node.args
            if (node.decorator_list or node.returns or a.posonlyargs or a.vararg or a.kwonlyargs
                    or a.kwarg or a.defaults or len(a.args) != 1 or a.args[0].annotation
                    or getattr(node, "type_params", None)):
                raise _NotPlain
            inner = a.args[0].arg
            for stmt in node.body:
                self.statement(stmt, inner)
            self.binds.add(node.name)
            self.defs[node.name] = inner
            return
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            call = node.value  # check(f): a function this test defined, given a name
            if not (isinstance(call.func, ast.Name) and call.func.id in self.defs
                    and len(call.args) == 1 and isinstance(call.args[0], ast.Name)
                    and not call.keywords):
                raise _NotPlain
            self.reads.add(call.args[0].id)
            return
        raise _NotPlain


def decisions(max_chars: int = 8 << 20) -> SuiteCache[frozenset[str] | None]:
    """plain_suite's answers for the suites seen last, keyed by their exact text: an answer
    depends on the text alone."""
    return SuiteCache(plain_suite, max_chars=max_chars)


def plain_suite(tests: list[str], setup: str) -> frozenset[str] | None:
    """The names a suite of plain checks reads (the program's functions it calls), or None if
    any test is not one (then it runs in a fresh test process, as any test may)."""
    if not tests or sum(len(t) for t in tests) + len(setup) > MAX_SOURCE:
        return None
    reads: set[str] = set()
    binds: set[str] = set()
    try:
        for stmt in ast.parse(setup).body:  # MBPP's `import math`, and nothing else
            if not (isinstance(stmt, ast.Import)
                    and all(a.asname is None and a.name in PLAIN_MODULES for a in stmt.names)):
                return None
        for src in tests:
            tree: Any = ast.parse(src)
            test = _Test()
            for stmt in tree.body:
                test.statement(stmt, None)
            reads |= test.reads
            binds |= test.binds
    except (_NotPlain, SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if reads & binds or any(name.startswith("__") and name != CALL for name in reads):
        return None  # a name a test binds is read as the program's: not a plain check
    # CALL (call tests) is the one dunder name a plain check may read: the judge binds it to
    # harness.CallCheck, which calls the program and compares plain data, like a plain check.
    return frozenset(reads)
