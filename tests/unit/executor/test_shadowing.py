"""Which of the program's names the tests see (harness.BindingPlan): the real builtins and
standard modules always, except the entry point when the tests read nothing else of the
program's. The program picks only the set of names it defines, so each case is written as
"whatever the program defines, it gets at most the function under test"."""

from __future__ import annotations

import itertools

import pytest

from acecoder.executor.sandbox.harness import RESERVED, BindingPlan, global_reads


def plan(tests: list[str], *names: str) -> BindingPlan:
    return BindingPlan(tests, {n: "object" for n in names})


@pytest.mark.parametrize(("tests", "program", "entry"), [
    (["assert sum(10, 15) == 25"], {"sum"}, "sum"),  # MBPP task 126
    (["def check(c):\n    assert c(1, 2) == 3\ncheck(sum)"], {"sum"}, "sum"),  # HumanEval style
    (["assert sum(2, 3) == 5"], {"sum", "max", "helper"}, "sum"),  # helpers the tests never read
    (["assert abs(f(2) - 7.0) < 1e-9"], {"abs", "f"}, None),
    (["assert set(f(2)) == set([7])"], {"set", "f"}, None),
    (["def check(f):\n    assert abs(f(2) - 7) < 1e-9\ncheck(f)"], {"abs", "f"}, None),
    (["def check(candidate):\n    assert abs(candidate(2) - 7) < 1e-9\ncheck(f)"], {"abs", "f"}, None),
    (["x = [1, 5]\nassert max(x) == 5"], {"max", "x"}, "max"),  # x is the tests' own
    (["assert len(f(1)) == 2"], {"f"}, None),
    (["assert (("], {"sum"}, None),
])
def test_entry_point(tests: list[str], program: set[str], entry: str | None) -> None:
    p = plan(tests, *program)
    assert p.entry == entry
    for name in program & RESERVED:
        assert p.shows(name) == (name == entry)


def test_two_candidates_are_refused_not_guessed() -> None:
    p = plan(["assert abs(max([1, 5]) - 5) < 1e-9"], "abs", "max")
    assert p.entry is None and p.ambiguous == {"abs", "max"}


def test_dynamic_lookups_never_show_a_reserved_name() -> None:
    p = plan(["assert abs(eval('f')(2) - 7) < 1e-9"], "abs", "f")
    assert p.entry is None and not p.shows("abs")


CHECKERS = ["abs", "max", "len", "sorted", "set", "all", "round", "isinstance", "math"]


@pytest.mark.parametrize("extra", [(), ("helper",), ("x", "candidate", "check")])
def test_no_program_can_own_a_checker_of_another_function(extra: tuple[str, ...]) -> None:
    """Exhaustively: tests that check `f` with builtins; whatever subset of those names the
    program defines (plus names the tests bind themselves), no builtin is the program's."""
    tests = ["x = 3\nassert abs(f(x) - 7) < 1e-9 and max(f(1), 0) >= 0",
             "def check(candidate):\n    assert len(sorted(set(candidate(2)))) == 1\ncheck(f)",
             "assert all(isinstance(f(i), int) for i in range(3)) and round(f(1)) == 4",
             "assert math.isclose(f(2), 7)"]
    for k in range(len(CHECKERS) + 1):
        for chosen in itertools.combinations(CHECKERS, k):
            p = plan(tests, "f", *chosen, *extra)
            assert not any(p.shows(c) for c in chosen), chosen


def test_reads_follow_python_scoping() -> None:
    reads, dynamic = global_reads(["def g(f, y=2):\n    return f(y) + z\nw = 1\nprint(w, g)"])
    assert reads == {"z", "print"} and not dynamic


def test_the_tests_namespace_holds_the_real_builtins_beside_the_program_s_names() -> None:
    import builtins
    import os

    from acecoder.executor.sandbox import harness

    r, w = os.pipe()
    try:
        conn = harness._Conn(w, r)
        ns = harness._TestGlobals(conn)
        names = {"f": ("handle", 0, "function", True, False), "sum": ("handle", 1, "function",
                 True, False), "abs": ("handle", 2, "function", True, False),
                 "N": ("live",), "math": ("module", "math")}
        harness._bind_program_names(ns, conn, names, ["assert abs(f(1)) == sum([1])"])
        assert type(dict.__getitem__(ns, "f")) is harness.Remote
        assert "N" not in dict.keys(ns) and "N" in ns.live  # fetched live, never stored
        for name in dir(builtins):
            if name in ("__name__", "__builtins__"):
                continue
            assert dict.__getitem__(ns, name) is getattr(builtins, name), name
        assert dict.__getitem__(ns, "__name__") == "__tests__"
    finally:
        os.close(r)
        os.close(w)
