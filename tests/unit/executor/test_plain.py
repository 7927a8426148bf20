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


@pytest.mark.parametrize("value", [
    0, True, None, 2.5, "s", b"b", 10**30, complex(1, 2), decimal.Decimal("1.5"),
    [], (), [1, "a", None, 2.5, True], (1, b"x"), list(range(1000)),
])
def test_atoms_and_flat_sequences_of_atoms_cross_as_themselves(value: object) -> None:
    """The short cut for scalars and flat lists or tuples of them gives what the general
    path gives: an equal value of the exact same type (a list: a copy)."""
    got = to_plain(value)
    assert type(got) is type(value) and got == value
    if type(value) is list:
        assert got is not value
    assert type(cross(value)) is type(value)


def test_a_flat_list_is_held_to_the_same_size_limit() -> None:
    from acecoder.executor.sandbox.plain import MAX_NODES

    assert len(to_plain([0] * (MAX_NODES - 1))) == MAX_NODES - 1  # the list and its items
    with pytest.raises(TooLarge, match="parts"):
        to_plain([0] * MAX_NODES)
    with pytest.raises(TooLarge, match="parts"):
        to_plain((0,) * MAX_NODES)


def test_sequences_that_are_not_exactly_lists_of_atoms_take_the_general_path() -> None:
    class Mine(list):  # type: ignore[type-arg]
        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter([666])

    class Flag(enum.IntEnum):
        A = 1

    assert type(to_plain(Mine([1, 2]))) is list and to_plain(Mine([1, 2])) == [1, 2]
    assert to_plain([Flag.A]) == [1] and type(to_plain([Flag.A])[0]) is int
    point = collections.namedtuple("Point", "x y")(1, 2)
    assert cross(point) == point and cross(point)._fields == ("x", "y")  # type: ignore[attr-defined]
    with pytest.raises(NotPlain):
        to_plain([1, object()])


def test_namedtuple_fields_are_checked_on_the_trusted_side() -> None:
    from acecoder.executor.sandbox.plain import namedtuple_value

    with pytest.raises(ValueError):
        namedtuple_value("P", ("x", "import os"), (1, 2))
    with pytest.raises(ValueError):
        namedtuple_value("P", ("x",), (1, 2))
