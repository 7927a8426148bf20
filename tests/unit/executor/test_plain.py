from __future__ import annotations

import collections
import enum

import pytest

from acecoder.executor.sandbox.plain import NotPlain, to_plain


def test_subclasses_reduce_to_their_base() -> None:
    Point = collections.namedtuple("Point", "x y")
    assert type(to_plain(Point(1, 2))) is tuple
    assert to_plain(collections.Counter("aab")) == {"a": 2, "b": 1}
    assert type(to_plain(collections.OrderedDict(a=1))) is dict

    class Color(enum.IntEnum):
        RED = 1

    assert type(to_plain(Color.RED)) is int

    class Liar(int):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = int.__hash__

    value = to_plain(Liar(3))
    assert type(value) is int and value != 4


@pytest.mark.parametrize("value", [object(), lambda: 1, iter([1]), [object()]])
def test_foreign_objects_are_not_plain(value: object) -> None:
    with pytest.raises(NotPlain):
        to_plain(value)


def test_cycles_and_depth_are_refused() -> None:
    a: list[object] = []
    a.append(a)
    with pytest.raises(NotPlain):
        to_plain(a)
    deep: list[object] = []
    for _ in range(1000):
        deep = [deep]
    with pytest.raises(NotPlain):
        to_plain(deep)
