"""Which suites are plain checks (run by the judge): decided on the syntax tree, by listing the
node kinds a plain check may contain, so that anything unlisted keeps a suite out."""

from __future__ import annotations

import pytest

from acecoder.executor.sandbox.literal import MAX_SOURCE, plain_suite

HUMANEVAL = """
METADATA = {'author': 'jt', 'dataset': 'test'}


def check(candidate):
    assert candidate([1.0, 2.0, 3.9], 0.3) == True
    assert abs(candidate(1.33) - 0.33) < 1e-6, "a message"
    assert candidate('abc' + 'de') == (3 + 5, 3 * 5)
    assert not candidate([])
    assert candidate(x=-1) is None
    assert True


check(has_close_elements)
"""


@pytest.mark.parametrize(("tests", "setup", "names"), [
    (["assert f(2, 3) == 5"], "", {"f"}),
    (["assert f(2, 3) == 5", "assert g([1], {'a': (1, 2)}) != {1, 2}"], "", {"f", "g"}),
    ([HUMANEVAL], "", {"has_close_elements", "abs"}),
    (["assert set(f((3, 4))) == set((4, 5))"], "", {"f", "set"}),
    (["assert math.isclose(f(10), 4188.79, rel_tol=0.001)"], "import math", {"f", "math"}),
    (["assert sum(2, 3) == 5"], "", {"sum"}),  # MBPP's entry point named like a builtin
    (["assert f(1) in [1, 2] and f(2) not in (3,)"], "", {"f"}),
])
def test_plain_checks_are_admitted_with_the_names_they_read(
        tests: list[str], setup: str, names: set[str]) -> None:
    assert plain_suite(tests, setup) == frozenset(names)


@pytest.mark.parametrize("test", [
    "assert f(1).real == 1",              # an attribute of the program's value
    "assert f([1, 2])[0] == 1",           # a subscript
    "assert f(lambda x: x) == 1",         # a lambda
    "assert f([x for x in (1, 2)]) == 1",  # a comprehension
    "assert f(*[1, 2]) == 3",             # a starred argument
    "assert f(**{'a': 1}) == 1",          # a ** argument
    "assert f({**{}}) == 1",              # a ** display
    "assert f(2 ** 10) == 1",             # a power (unbounded work in one C call)
    "assert os.system('x') == 0",         # any attribute but math.isclose
    "assert math.floor(f(1)) == 1",
    "import os\nassert f(1) == 1",        # an import
    "x = f(1)\nassert x == 1",           # binding a computed value
    "f = 3\nassert f(1) == 1",            # a name the test binds, read as the program's
    "def check(c):\n    import os\n    assert c(1) == 1\ncheck(f)",
    "def check(c):\n    assert c(1) == 1\ncheck(f, 2)",
    "def check(c, d=1):\n    assert c(1) == 1\ncheck(f)",
    "@dec\ndef check(c):\n    assert c(1) == 1\ncheck(f)",
    "check(f)\ndef check(c):\n    assert c(1) == 1",  # called before it is defined
    "for x in (1, 2):\n    assert f(x) == x",
    "with f(1):\n    pass",
    "assert __import__('os') == 1",       # a dunder name
    "assert f(1) == 1 if f(2) else 0",    # a conditional expression
    "assert f(1) == (y := 2)",            # an assignment expression
    "assert f'{f(1)}' == '1'",            # an f-string (formats the program's value)
    "assert f(1) @ f(2) == 1",
    "assert f(1 +",                       # a syntax error: the usual path reports it
])
def test_anything_else_keeps_the_suite_out(test: str) -> None:
    assert plain_suite(["assert f(0) == 0", test], "") is None


def test_setup_may_only_import_math() -> None:
    assert plain_suite(["assert f(1) == 1"], "import math") == frozenset({"f"})
    for setup in ("import os", "import math as m", "from math import isclose", "x = 1",
                  "import math\nprint(1)"):
        assert plain_suite(["assert f(1) == 1"], setup) is None, setup


def test_size_and_depth_limits() -> None:
    assert plain_suite([], "") is None
    big = "assert f(1) == " + "1" * 100 + "\n"
    assert plain_suite([big * (MAX_SOURCE // len(big) + 1)], "") is None
    deep = "assert f(" + "+".join(["1"] * 100_000) + ") == 1"  # a left-deep tree
    assert plain_suite([deep], "") is None


def test_decisions_are_remembered_by_exact_text_within_a_budget() -> None:
    from acecoder.executor.sandbox.literal import decisions

    decide = decisions(max_chars=200)
    assert decide(["assert f(1) == 1"], "") == frozenset({"f"})
    assert decide(["assert f(1) == 1"], "") == frozenset({"f"})  # remembered
    assert decide(["assert f(1).x == 1"], "") is None
    assert decide(["assert g(1) == 1 "], "") == frozenset({"g"})  # another text, decided anew
    for i in range(20):
        decide([f"assert f({i}) == {i}"], "")
    assert decide.chars <= 200 and len(decide.seen) < 15
    kept = dict(decide.seen)
    assert decide(["assert f(0) == 0"] * 20_000, "") is None  # over MAX_SOURCE: not parsed
    assert decide.seen == kept  # and one huge suite evicts nothing
