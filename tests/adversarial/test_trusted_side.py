"""The trusted side decides: each test here attacks one mechanism by which a program could
decide its own verdict, and asserts that it cannot (and that the honest case still works).

The mechanisms, not examples: expected values never enter the program's process (whatever
path a test's value might take: a comparison, a membership test); two program objects are never
compared by the program; plain data crosses whole and with its exact type or is an error; control
flow cannot leak out of a program call; builtins and standard modules the tests use are the real
ones, however the tests reach them; a child the program forks never answers for it.
"""

from __future__ import annotations

import pytest

from acecoder.executor.types import Verdict

# A program that records every value of the tests' that reaches it, by any door it has: its
# functions' arguments, and every special method a comparison or membership test could call.
RECORDER = """
SEEN = []
class Spy:
    def __init__(self, v): self.v = v
    def _rec(self, *a): SEEN.extend(repr(x) for x in a); return True
    def __eq__(self, o): return self._rec(o)
    def __ne__(self, o): self._rec(o); return False
    def __lt__(self, o): return self._rec(o)
    def __le__(self, o): return self._rec(o)
    def __gt__(self, o): return self._rec(o)
    def __ge__(self, o): return self._rec(o)
    def __contains__(self, o): return self._rec(o)
    def __hash__(self): return 0
    def __iter__(self): return iter([1, 2])
    def __len__(self): return 2
    def __bool__(self): return True
def f(x):
    return Spy(x)
def seen():
    return list(SEEN)
"""


@pytest.mark.parametrize("test", [
    "assert f(1) == 424242",
    "assert f(1) != 424242",
    "assert not (f(1) < 424242)",
    "assert 424242 in f(1)",
    "assert f(1) in [424242]",
    "assert [f(1)] == [424242]",
    "assert {'k': f(1)} == {'k': 424242}",
    "assert (f(1), 1) == (424242, 1)",
    "assert f(1) is not None and f(1) == 424242",
    "assert max([f(1)], key=lambda s: 0) == 424242",
])
def test_expected_values_never_reach_the_program(client, test: str) -> None:  # type: ignore[no-untyped-def]
    r = client.execute(RECORDER, [test, "assert not any('424242' in s for s in seen()), seen()"])
    assert r.verdicts[0] is not Verdict.PASSED or test.startswith("assert f(1) !="), r
    assert r.verdicts[1] is Verdict.PASSED, r  # nothing the test compared with got through


ALWAYS_EQUAL = """
class A:
    def __eq__(self, o): return True
    def __ne__(self, o): return False
    def __hash__(self): return 0
def f(x):
    return A()
"""


@pytest.mark.parametrize("test", [
    "assert f(1) == f(2)",
    "assert not (f(1) != f(2))",
    "assert [f(1)] == [f(2)]",
    "assert (f(1), 0) == (f(2), 0)",
    "a, b = f(1), f(2)\nassert a == b",
])
def test_two_program_objects_are_never_compared_by_the_program(client, test: str) -> None:  # type: ignore[no-untyped-def]
    r = client.execute(ALWAYS_EQUAL, [test])
    assert r.verdicts == [Verdict.ERROR], r
    assert "two of the program's objects" in r.tests[0].error_message


def test_plain_values_compared_on_both_sides(client) -> None:  # type: ignore[no-untyped-def]
    prog = "def f(x):\n    return [x, x]\n"
    r = client.execute(prog, ["assert f(1) == f(1)", "assert f(1) != f(2)", "assert f(1) == f(2)"])
    assert r.verdicts == [Verdict.PASSED, Verdict.PASSED, Verdict.FAILED], r


@pytest.mark.parametrize(("ret", "test", "verdict"), [
    # order is part of an OrderedDict's equality
    ("OrderedDict([(1, 2), (3, 4)])", "assert f() == OrderedDict([(3, 4), (1, 2)])", Verdict.FAILED),
    ("OrderedDict([(1, 2), (3, 4)])", "assert f() == OrderedDict([(1, 2), (3, 4)])", Verdict.PASSED),
    ("Counter('aab')", "assert type(f()) is Counter and f().most_common(1) == [('a', 2)]",
     Verdict.PASSED),
    ("defaultdict(list, {1: [2]})", "d = f()\nd[5].append(1)\nassert d == {1: [2], 5: [1]}",
     Verdict.PASSED),
    ("deque([1, 2], maxlen=3)", "assert f().maxlen == 3 and f() == deque([1, 2])", Verdict.PASSED),
    ("namedtuple('P', 'x y')(1, 2)", "assert f().y == 2 and f() == (1, 2)", Verdict.PASSED),
    ("'s' * 2549", "assert f() == 's' * 2549 and len(str(f())) == 2549", Verdict.PASSED),
    ("Big()", "assert str(f()) == 'b' * 5000 and repr(f()) == 'r' * 5000", Verdict.PASSED),
])
def test_plain_data_is_faithful(client, ret: str, test: str, verdict: Verdict) -> None:  # type: ignore[no-untyped-def]
    prog = ("from collections import *\n"
            "class Big:\n    def __str__(self): return 'b' * 5000\n"
            "    def __repr__(self): return 'r' * 5000\n"
            f"def f():\n    return {ret}\n")
    r = client.execute(prog, [f"from collections import *\n{test}"])
    assert r.verdicts == [verdict], r


@pytest.mark.parametrize("body", [
    "a = []\n    a.append(a)\n    return a",                 # a cycle
    "x = []\n    for _ in range(700):\n        x = [x]\n    return x",  # deeper than the cap
    "return [[0] * 1000 for _ in range(2500)]",              # more parts than the cap
])
def test_values_that_cannot_cross_whole_are_errors_that_say_so(client, body: str) -> None:  # type: ignore[no-untyped-def]
    r = client.execute(f"def f():\n    {body}\n", ["assert f() == []", "assert f() != []"])
    assert r.verdicts == [Verdict.ERROR, Verdict.ERROR], r
    assert r.tests[0].error_type == "ValueTooLarge"


@pytest.mark.parametrize("test", [
    "assert all(map(f, [1, 2, 3])) and False",
    "for v in map(f, [1, 2]):\n    pass\nassert False",
    "assert list(zip([1], map(f, [1]))) == []",
    "assert [f(x) for x in range(3)] == []",
    "g = (f(x) for x in [1])\nassert list(g) == []",
])
def test_stop_iteration_cannot_end_the_tests_loop(client, test: str) -> None:  # type: ignore[no-untyped-def]
    r = client.execute("def f(x):\n    raise StopIteration\n", [test])
    assert r.verdicts == [Verdict.ERROR], r
    assert "StopIteration" in r.tests[0].error_message


def test_program_iterators_still_end_normally(client) -> None:  # type: ignore[no-untyped-def]
    prog = "def gen(n):\n    yield from range(n)\nclass It:\n    def __init__(s): s.i = 0\n" \
           "    def __iter__(s): return s\n    def __next__(s):\n        s.i += 1\n" \
           "        if s.i > 2: raise StopIteration\n        return s.i\ndef it(): return It()\n"
    r = client.execute(prog, ["assert list(gen(3)) == [0, 1, 2]",
                              "i = it()\nassert next(i) == 1 and next(i) == 2\n"
                              "try:\n    next(i)\nexcept StopIteration:\n    pass\nelse:\n    assert False"])
    assert r.all_passed, r


SHADOWS = "def abs(x):\n    return 0\ndef max(*a, **k):\n    return 7\ndef f(x):\n    return 0.0\n"


@pytest.mark.parametrize("test", [
    "assert abs(f(2) - 7) < 1e-9",
    "def check(candidate):\n    assert abs(candidate(2) - 7) < 1e-9\ncheck(f)",  # HumanEval's alias
    "def close(a, b):\n    return abs(a - b) < 1e-9\nassert close(f(2), 7)",     # a helper
    "a = abs\nassert a(f(2) - 7) < 1e-9",                                        # a variable
    "assert sum(map(abs, [f(2) - 7])) < 1e-9",                                   # map(abs, ...)
    "assert max(f(2), 7) == 7 and max([f(2)]) == 7",
    "import builtins\nassert builtins.abs(f(2) - 7) < 1e-9",
])
def test_the_program_never_owns_a_builtin_that_checks(client, test: str) -> None:  # type: ignore[no-untyped-def]
    r = client.execute(SHADOWS, [test])
    assert r.verdicts[0] is not Verdict.PASSED, r


def test_entry_point_named_like_a_builtin_still_works(client) -> None:  # type: ignore[no-untyped-def]
    for prog, tests in [
        ("def sum(a, b):\n    return a + b\n", ["assert sum(2, 3) == 5", "assert sum(-1, 1) == 0"]),
        ("def max(xs):\n    best = xs[0]\n    for x in xs:\n        best = x if x > best else best\n"
         "    return best\n", ["def check(candidate):\n    assert candidate([1, 5, 2]) == 5\ncheck(max)"]),
    ]:
        r = client.execute(prog, tests)
        assert r.all_passed, r
    wrong = client.execute("def sum(a, b):\n    return 0\n", ["assert sum(2, 3) == 5"])
    assert wrong.verdicts == [Verdict.FAILED]  # the program's sum, not the builtin


@pytest.mark.parametrize("prog", [
    "import math\nclass M:\n    isclose = staticmethod(lambda *a, **k: True)\nmath = M()\n",
    "import types\nmath = types.ModuleType('math')\nmath.isclose = lambda *a, **k: True\n",
    "import math\nmath.isclose = lambda *a, **k: True\n",  # patches its own copy only
    "import json as math\n",
])
def test_modules_the_program_replaces_stay_the_programs(client, prog: str) -> None:  # type: ignore[no-untyped-def]
    r = client.execute(prog + "def f(x):\n    return 0.0\n", ["assert math.isclose(f(2), 7.0)",
                                                          "assert math.sqrt(4) == 2.0"])
    assert r.verdicts == [Verdict.FAILED, Verdict.PASSED], r


def test_a_module_is_imported_for_the_tests_only_when_they_read_it(client) -> None:  # type: ignore[no-untyped-def]
    prog = "import types\ntorch = types.ModuleType('torch')\nnumpy_like = types.ModuleType('antigravity')\n" \
           "import math\ndef f():\n    return 1\n"
    r = client.execute(prog, ["import sys\nassert f() == 1 and 'torch' not in sys.modules "
                              "and 'antigravity' not in sys.modules",
                              "assert math.floor(2.5) == 2"])
    assert r.all_passed, r


def test_a_forked_child_never_answers_for_the_program(client) -> None:  # type: ignore[no-untyped-def]
    prog = ("import os\n"
            "def f(x):\n"
            "    pid = os.fork()\n"
            "    if pid == 0:\n"
            "        try:\n            os.setsid()\n        except OSError:\n            pass\n"
            "        return x * 100   # the child returns into the program's request loop\n"
            "    return x * 10\n")
    r = client.execute(prog, [f"assert f({i}) == {i * 10}" for i in range(1, 6)])
    assert r.all_passed, r


# Replies the program forges by hand on its own channel, each calling the callables the plain
# decoder admits (types a defaultdict factory may be, the namedtuple builder) with hostile
# arguments: at worst an error for that test, never a pass, and the next request is served.
_FORGE = (
    "import os, pickle, struct, collections\n"
    "class R:\n"
    "    def __init__(self, fn, args): self.fn, self.args = fn, args\n"
    "    def __reduce__(self): return (self.fn, self.args)\n"
    "def f(x):\n"
    "    d = pickle.dumps(('value', PAYLOAD), protocol=pickle.HIGHEST_PROTOCOL)\n"
    "    os.write(4, struct.pack('>I', len(d)) + d)\n"
    "    os._exit(0)\n"
)


@pytest.mark.parametrize("payload", [
    "R(bytes, (1 << 40,))",                       # an allocation no test process may make
    "R(list, (range(10 ** 9),))",                 # a long one
    "R(int, ('9' * 100000,))",
    "R(collections.defaultdict, (range, {7: 7}))",
    "R(__import__('acecoder.executor.sandbox.plain', fromlist=['x']).namedtuple_value, "
    "('P', ('x', 'import'), (1, 2)))",
    "R(__import__('acecoder.executor.sandbox.plain', fromlist=['x']).namedtuple_value, "
    "('P', ('x',), (1, 2)))",
    "R(eval, ('7',))",                            # not admitted at all
])
def test_forged_replies_calling_admitted_globals_never_pass(client, payload: str) -> None:  # type: ignore[no-untyped-def]
    r = client.execute(_FORGE.replace("PAYLOAD", payload), ["assert f(1) == 7"], timeout=2.0)
    assert r.verdicts[0] is not Verdict.PASSED, r
    assert client.execute("def f(x):\n    return 7\n", ["assert f(1) == 7"]).all_passed
