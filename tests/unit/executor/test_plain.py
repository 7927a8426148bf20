"""Plain data crosses faithfully (exact stdlib types, through the real codec) or not at all."""

from __future__ import annotations

import collections
import decimal
import enum
import fractions

import pytest

from acecoder.executor.sandbox import wire
from acecoder.executor.sandbox.plain import NotPlain, TooLarge, to_plain


def cross(value: object) -> object:
    """What the test process gets for `value`: to_plain in the program, loads_plain here."""
    return wire.loads_plain(wire.dumps(to_plain(value)))


@pytest.mark.parametrize("value", [
    collections.OrderedDict([(3, 4), (1, 2)]),
    collections.defaultdict(list, {1: [2]}),
    collections.Counter("abracadabra"),
    collections.deque([1, 2, 3], maxlen=5),
    collections.namedtuple("Point", "x y")(1, [2]),
    {"a": (1, 2.5, None, b"x", "s", complex(1, 2))},
    [decimal.Decimal("1.10"), fractions.Fraction(1, 3), range(3), frozenset({1}), {2}],
    "a" * 100_000,
])
def test_stdlib_values_keep_their_exact_type(value: object) -> None:
    back = cross(value)
    assert type(back) is type(value) or type(value).__name__ == "Point"
    assert back == value
    assert repr(back) == repr(value)


def test_order_and_fields_survive() -> None:
    a = cross(collections.OrderedDict([(1, 2), (3, 4)]))
    assert a != collections.OrderedDict([(3, 4), (1, 2)])  # order matters, as in Python
    p = cross(collections.namedtuple("P", "x y")(1, 2))
    assert p.x == 1 and p == (1, 2) and type(p).__name__ == "P"
    d = cross(collections.defaultdict(int))
    d["missing"] += 1  # the factory came along
    assert d == {"missing": 1}


def test_program_subclasses_reduce_to_their_base() -> None:
    class Liar(int):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = int.__hash__

    class Color(enum.IntEnum):
        RED = 1

    class MyDict(dict):  # type: ignore[type-arg]
        def __eq__(self, other: object) -> bool:
            return True

    assert type(cross(Liar(3))) is int and cross(Liar(3)) != 4
    assert type(cross(Color.RED)) is int
    assert type(cross(MyDict(a=1))) is dict and cross(MyDict(a=1)) != {}
    # a factory that is program code stays behind
    assert cross(collections.defaultdict(lambda: 0, a=1)).default_factory is None


@pytest.mark.parametrize("value", [object(), lambda: 1, iter([1]), [object()]])
def test_foreign_objects_are_not_plain(value: object) -> None:
    with pytest.raises(NotPlain):
        to_plain(value)


def test_cycles_depth_and_size_are_errors_not_handles() -> None:
    a: list[object] = []
    a.append(a)
    with pytest.raises(TooLarge, match="cycle"):
        to_plain(a)
    deep: list[object] = []
    for _ in range(600):
        deep = [deep]
    with pytest.raises(TooLarge, match="levels deep"):
        to_plain(deep)
    with pytest.raises(TooLarge, match="parts"):
        to_plain([[0] * 1000 for _ in range(2100)])
    shallow: list[object] = []
    for _ in range(400):  # honest nesting within the cap crosses whole
        shallow = [shallow]
    assert cross(shallow) == shallow


def test_namedtuple_fields_are_checked_on_the_trusted_side() -> None:
    from acecoder.executor.sandbox.plain import namedtuple_value

    with pytest.raises(ValueError):
        namedtuple_value("P", ("x", "import os"), (1, 2))
    with pytest.raises(ValueError):
        namedtuple_value("P", ("x",), (1, 2))
