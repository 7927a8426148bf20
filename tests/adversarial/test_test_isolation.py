"""Test processes may be shared between requests (see sandbox/purity.py): one request's test
code must never change another's verdicts."""

from __future__ import annotations

from acecoder.executor.types import Verdict

PROGRAM = "def f(xs):\n    return len(xs)\n"


def test_impure_tests_cannot_poison_later_requests(client) -> None:  # type: ignore[no-untyped-def]
    poison = ["import builtins\nbuiltins.len = lambda x: 0\nbuiltins.AssertionError = KeyError",
              "import math\nmath.isclose = lambda *a, **k: True"]
    client.execute(PROGRAM, poison)
    for _ in range(4):  # both workers, more than once
        r = client.execute(PROGRAM, ["assert len([1, 2]) == 2", "assert f([1, 2]) == 3",
                                     "import math\nassert math.isclose(1.0, 2.0)"])
        assert r.verdicts == [Verdict.PASSED, Verdict.FAILED, Verdict.FAILED], r


def test_names_do_not_leak_between_requests(client) -> None:  # type: ignore[no-untyped-def]
    client.execute(PROGRAM, ["secret = 42\nassert f([1]) == 1"])
    for _ in range(4):
        r = client.execute(PROGRAM, ["try:\n    secret\nexcept NameError:\n    pass\nelse:\n    assert False"])
        assert r.all_passed, r
