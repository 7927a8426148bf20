"""Reward integrity: programs that try to pass tests without solving them must not get PASSED.

The tests ask for f(2) == 7 (or similar); none of these programs computes it honestly.
"""

from __future__ import annotations

import pytest

from acecoder.executor.types import Verdict
from tests.conftest import assert_no_leftovers

TESTS = ["assert f(2) == 7", "assert f(3) == 10"]

ALWAYS_EQUAL = """
class Anything:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __hash__(self): return 0
def f(x):
    return Anything()
"""

HOSTILE = [
    pytest.param("import sys\nsys.exit(0)\ndef f(x): return 0\n", id="sys-exit-at-load"),
    pytest.param("import os\nos._exit(0)\n", id="os-exit-at-load"),
    pytest.param("raise SystemExit(0)\n", id="raise-systemexit-at-load"),
    pytest.param("quit()\n", id="quit-at-load"),
    pytest.param("import sys\ndef f(x):\n    sys.exit(0)\n", id="sys-exit-in-test"),
    pytest.param("import os\ndef f(x):\n    os._exit(0)\n", id="os-exit-in-test"),
    pytest.param("def f(x):\n    raise SystemExit\n", id="raise-systemexit-in-test"),
    pytest.param("def f(x):\n    quit()\n", id="quit-in-test"),
    pytest.param("import os, signal\ndef f(x):\n    os.kill(os.getpid(), signal.SIGKILL)\n",
                 id="kill-self-in-test"),
    pytest.param(ALWAYS_EQUAL, id="always-equal-object"),
    pytest.param("class I(int):\n    def __eq__(s, o): return True\n    __hash__ = int.__hash__\n"
                 "def f(x): return I(0)\n", id="int-subclass-always-equal"),
    pytest.param("class S(str):\n    def __eq__(s, o): return True\n    __hash__ = str.__hash__\n"
                 "def f(x): return S('')\n", id="str-subclass-always-equal"),
    pytest.param("class L(list):\n    def __eq__(s, o): return True\n"
                 "def f(x): return L()\n", id="list-subclass-always-equal"),
    pytest.param("class N:\n    def __ne__(s, o): return False\n    def __eq__(s, o): return not s.__ne__(o)\n"
                 "def f(x): return N()\n", id="ne-never-true"),
    pytest.param("class B:\n    def __bool__(s): return True\n    def __eq__(s, o): return B()\n"
                 "def f(x): return B()\n", id="eq-returns-truthy-object"),
    pytest.param("import sys\nprint('PASSED ' * 10)\nprint('all tests passed', file=sys.stderr)\n"
                 "def f(x):\n    print('{\"verdict\": \"PASSED\"}')\n    return 0\n", id="fake-markers-on-stdio"),
    pytest.param(
        "import os, struct, pickle\n"
        "frames = [pickle.dumps(m) for m in [('loaded',), ('start', 0), ('done', 0, 'PASSED', '', ''),\n"
        "    ('start', 1), ('done', 1, 'PASSED', '', ''), ('end',), ('value', 7, ()), ('value', 10, ())]]\n"
        "blob = b''.join(struct.pack('>I', len(d)) + d for d in frames)\n"
        "for fd in range(0, 256):\n"
        "    try: os.write(fd, blob)\n"
        "    except OSError: pass\n"
        "def f(x): return 0\n", id="fake-frames-on-every-fd"),
    pytest.param("import builtins\nclass E(Exception): pass\nbuiltins.AssertionError = E\n"
                 "builtins.isinstance = lambda *a: True\nbuiltins.print = lambda *a, **k: None\n"
                 "def f(x): return 0\n", id="replace-builtins"),
    pytest.param("import builtins\n_imp = builtins.__import__\n"
                 "def hook(name, *a, **k):\n    raise ImportError(name)\n"
                 "builtins.__import__ = hook\ndef f(x): return 0\n", id="replace-import"),
    pytest.param(
        "import gc, sys, types\n"
        "for name, mod in list(sys.modules.items()):\n"
        "    if 'acecoder' in name:\n"
        "        for k, v in list(vars(mod).items()):\n"
        "            if isinstance(v, types.FunctionType):\n"
        "                try: v.__code__ = (lambda *a, **k: ('PASSED', '', '')).__code__\n"
        "                except Exception: pass\n"
        "for o in gc.get_objects():\n"
        "    if isinstance(o, types.FunctionType) and 'acecoder' in (o.__module__ or ''):\n"
        "        try: o.__code__ = (lambda *a, **k: None).__code__\n"
        "        except Exception: pass\n"
        "def f(x): return 0\n", id="patch-harness-via-gc-and-sys-modules"),
    pytest.param(
        "import gc, re\n"
        "found = [o for o in gc.get_objects() if isinstance(o, str) and '== 7' in o]\n"
        "found += [s for o in gc.get_objects() if isinstance(o, (list, tuple, dict))\n"
        "          for s in (o.values() if isinstance(o, dict) else o)\n"
        "          if isinstance(s, str) and '== 7' in s]\n"
        "def f(x):\n"
        "    for s in found:\n"
        "        m = re.search(r'f\\(' + str(x) + r'\\) == (\\d+)', s)\n"
        "        if m: return int(m.group(1))\n"
        "    return -1\n", id="search-own-memory-for-expected-values"),
    pytest.param(
        "import os, re\n"
        "def f(x):\n"
        "    for pid in os.listdir('/proc'):\n"
        "        if not pid.isdigit(): continue\n"
        "        for what in ('cmdline', 'environ', 'mem'):\n"
        "            try:\n"
        "                data = open(f'/proc/{pid}/{what}', 'rb').read(1 << 20)\n"
        "            except Exception:\n"
        "                continue\n"
        "            m = re.search(rb'f\\(' + str(x).encode() + rb'\\) == (\\d+)', data)\n"
        "            if m: return int(m.group(1))\n"
        "    return -1\n", id="read-other-processes-memory"),
    pytest.param("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
                 "def f(x): return 0\n", id="kill-parent"),
    pytest.param("import os, signal\n"
                 "for pid in range(1, 32768):\n"
                 "    for sig in (signal.SIGKILL, signal.SIGSTOP):\n"
                 "        try: os.kill(pid, sig)\n"
                 "        except Exception: pass\n"
                 "def f(x): return 0\n", id="signal-every-pid"),
    pytest.param("def abs(x):\n    return 0\ndef f(x):\n    return 0.0\n",
                 id="shadow-abs-used-by-tolerance-check"),
    pytest.param("def set(*a):\n    return 0\ndef f(x):\n    return []\n",
                 id="shadow-set-used-on-both-sides"),
    pytest.param("def f(x):\n    class E(Exception):\n        def __str__(self): raise RuntimeError\n"
                 "    raise E()\n", id="exception-with-hostile-str"),
    pytest.param("def f(x):\n    a = []\n    a.append(a)\n    return a\n", id="cyclic-return-value"),
    pytest.param(
        "import os, struct, pickle\n"
        "def f(x):\n"
        "    fake = pickle.dumps(('value', 7, ()))\n"
        "    os.write(4, struct.pack('>I', 1 << 30) + struct.pack('>I', len(fake)) + fake)\n"
        "    return 0\n", id="desync-the-reply-stream"),
]

TESTS_FOR = {
    "shadow-abs-used-by-tolerance-check": ["assert abs(f(2) - 7.0) < 1e-9",
                                           "assert abs(f(3) - 10.0) < 1e-9"],
    "shadow-set-used-on-both-sides": ["assert set(f(2)) == set([7])",
                                      "assert set(f(3)) == set([10])"],
}


@pytest.mark.parametrize("program", HOSTILE)
def test_hostile_program_never_passes(client, server, request, program: str) -> None:  # type: ignore[no-untyped-def]
    case = request.node.callspec.id
    tests = TESTS_FOR.get(case, TESTS)
    result = client.execute(program, tests, timeout=3.0)
    assert Verdict.PASSED not in result.verdicts, (case, result)
    assert result.pass_rate == 0.0 and not result.all_passed
    assert len(result.verdicts) == len(tests)
    assert client.info().workers == 2  # the server still answers
    assert_no_leftovers(root=server.proc.pid)


def test_honest_program_still_passes_after_hostile_ones(client) -> None:  # type: ignore[no-untyped-def]
    result = client.execute("def f(x):\n    return 3 * x + 1\n", TESTS)
    assert result.verdicts == [Verdict.PASSED, Verdict.PASSED]
    assert result.all_passed


def test_entry_point_named_like_a_builtin_is_tested(client) -> None:  # type: ignore[no-untyped-def]
    """MBPP's task 126 names its function `sum`: the tests must call the program's `sum`."""
    program = "def sum(a, b):\n    return a * b\n"
    result = client.execute(program, ["assert sum(2, 3) == 6", "assert sum(4, 5) == 20"])
    assert result.all_passed, result


FAKE_MARKERS = ("import sys\nprint('PASSED ' * 10)\nprint('all tests passed', file=sys.stderr)\n"
                "def f(x):\n    print('{\"verdict\": \"PASSED\"}')\n    return 0\n")


@pytest.mark.parametrize("program, flag", [
    pytest.param("import sys\nsys.exit(0)\ndef f(x): return 0\n", "EXITED_EARLY", id="exit-at-load"),
    pytest.param("import os\ndef f(x):\n    os._exit(0)\n", "EXITED_EARLY", id="exit-in-test"),
    pytest.param(FAKE_MARKERS, "FORGED_OUTPUT", id="fake-markers"),
    pytest.param("def f(x):\n    print('All tests passed!')\n    return 0\n", "FORGED_OUTPUT",
                 id="fake-marker-in-test"),
    pytest.param(ALWAYS_EQUAL, "OVERRIDDEN_EQUALITY", id="always-equal-object"),
    pytest.param("class N:\n    def __ne__(s, o): return False\n"
                 "    def __eq__(s, o): return not s.__ne__(o)\ndef f(x): return N()\n",
                 "OVERRIDDEN_EQUALITY", id="ne-never-true"),
    pytest.param("class B:\n    def __bool__(s): return True\n    def __eq__(s, o): return B()\n"
                 "def f(x): return B()\n", "OVERRIDDEN_EQUALITY", id="eq-returns-truthy-object"),
])
def test_attempts_are_flagged_for_reward_hack_counters(client, program: str, flag: str) -> None:  # type: ignore[no-untyped-def]
    """The executor defeats these (test_hostile_program_never_passes) and also says what it
    saw, so that an RL trainer can count reward hacking."""
    result = client.execute(program, TESTS, timeout=3.0)
    assert flag in result.flags, result
    assert Verdict.PASSED not in result.verdicts


def test_honest_programs_are_not_flagged(client) -> None:  # type: ignore[no-untyped-def]
    for program, tests in [
        ("def f(x):\n    return 3 * x + 1\n", TESTS),
        ("def f(x):\n    print('computing f of', x, '- passed in as an int')\n"
         "    return 3 * x + 1\n", TESTS),
        # a class with its own __eq__, compared with another of its objects: honest
        ("class P:\n    def __init__(s, v): s.v = v\n"
         "    def __eq__(s, o): return isinstance(o, P) and s.v == o.v\n"
         "def f(x): return P(3 * x + 1)\n", ["assert f(2) == f(2)", "assert not (f(2) == f(3))"]),
        ("def f(x):\n    return 0\n", TESTS),  # wrong, but not a hack
    ]:
        result = client.execute(program, tests, timeout=3.0)
        assert result.flags == (), (program, result)
