from __future__ import annotations

import pytest

from acecoder.executor.sandbox.harness import shadowable_builtins


@pytest.mark.parametrize(("tests", "program", "expected"), [
    (["assert sum(10, 15) == 6"], {"sum"}, {"sum"}),
    (["def check(c):\n    assert c(1, 2) == 3\ncheck(sum)"], {"sum"}, {"sum"}),
    (["assert abs(f(2) - 7.0) < 1e-9"], {"abs", "f"}, set()),
    (["assert set(f(2)) == set([7])"], {"set", "f"}, set()),
    (["assert sorted(f(2)) == [1]"], {"sorted", "f"}, set()),
    (["assert f(2) == max(1, 2)"], {"max", "f"}, set()),
    (["assert sum(1, 2) == 3", "x = sum"], {"sum"}, set()),
    (["assert len(f(1)) == 2"], {"f"}, set()),
    (["assert (("], {"sum"}, set()),
])
def test_shadowable(tests: list[str], program: set[str], expected: set[str]) -> None:
    assert shadowable_builtins(tests, program) == expected
