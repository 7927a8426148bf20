from __future__ import annotations

import pytest

from acecoder.executor.sandbox.purity import is_pure


@pytest.mark.parametrize("test", [
    "assert f(1) == 2",
    "import math\nassert math.isclose(f(1), 2.0)",
    "def check(candidate):\n    for _ in range(3):\n        assert candidate([1]) == [1]\ncheck(f)",
    "from random import randint\nxs = [randint(1, 9) for _ in range(5)]\nxs[0] = 1\nassert f(xs)",
    "try:\n    f(-1)\nexcept ValueError:\n    pass\nelse:\n    assert False",
])
def test_pure(test: str) -> None:
    assert is_pure((test,), "")


@pytest.mark.parametrize("test", [
    "import builtins\nbuiltins.len = lambda x: 0",
    "import sys\nsys.modules.clear()",
    "import os",
    "import math\nmath.pi = 3",
    "import collections.abc\ncollections.abc.Sequence.register(dict)",
    "x = f.__globals__",
    "__builtins__['len'] = None",
    "setattr(f, 'x', 1)",
    "exec('import os')",
    "class A: pass",
    "@staticmethod\ndef g(): pass",
    "with open('x') as fh: pass",
    "assert f((",
    "from math import *",
    "from . import x",
])
def test_impure(test: str) -> None:
    assert not is_pure((test,), "")


def test_setup_counts() -> None:
    assert not is_pure(("assert f(1)",), "import os")
    assert is_pure(("assert f(1)",), "import math")
