"""Turning the program's values into plain data (in the program's process, hence untrusted).

Only values made of builtin scalars and containers, and the standard library's value containers
(OrderedDict, defaultdict, Counter, deque, namedtuple types), cross to the test process, each as
its exact type so that comparing it there means what it means in Python (two OrderedDicts in a
different order differ; a namedtuple keeps its field names). A program's own subclass of a
builtin scalar or container is reduced to that builtin, which drops any comparison the program
overrode. Anything else stays behind as a handle. A value too large, too deep or cyclic is not
cut short or turned into a handle: `TooLarge` says so, and the test that asked gets an ERROR.

The test process decodes with `wire.loads_plain`, which admits exactly the globals listed in
`ALLOWED_GLOBALS` and rebuilds namedtuples through `namedtuple_value`, validating every field.
"""

from __future__ import annotations

import collections
import decimal
import fractions
from typing import Any

_ATOMS = (type(None), bool, int, float, complex, str, bytes, decimal.Decimal, fractions.Fraction,
          range, slice)
MAX_NODES = 2_000_000
MAX_DEPTH = 500
# defaultdict factories that can cross (a type whose call makes a fresh plain value).
_FACTORIES = (int, float, complex, str, bytes, list, dict, set, frozenset, tuple, bool)

ALLOWED_GLOBALS = frozenset({
    ("builtins", "complex"), ("builtins", "bytearray"), ("builtins", "range"),
    ("builtins", "slice"), ("builtins", "frozenset"), ("builtins", "set"),
    ("decimal", "Decimal"), ("fractions", "Fraction"),
    ("collections", "OrderedDict"), ("collections", "defaultdict"), ("collections", "Counter"),
    ("collections", "deque"),
    *(("builtins", f.__name__) for f in _FACTORIES),
    (__name__, "namedtuple_value"),
})


class NotPlain(Exception):
    """The value is not plain data (it stays in the program process, as a handle)."""


class TooLarge(Exception):
    """The value is plain data, but too large, too deep or cyclic to cross faithfully."""


_nt_types: dict[tuple[str, tuple[str, ...]], type] = {}


def forget() -> None:
    """Drop the namedtuple types made so far (a process that decodes for many requests calls
    this after each, so that none of one request's types meets the next)."""
    _nt_types.clear()


def namedtuple_value(typename: Any, fields: Any, values: Any) -> tuple[Any, ...]:
    """Rebuild a namedtuple in the test process. Arguments come from the program: every one is
    checked, and collections.namedtuple refuses names that are not identifiers."""
    if type(typename) is not str or type(fields) is not tuple or type(values) is not tuple:
        raise ValueError("malformed namedtuple")
    if len(fields) != len(values) or not all(type(f) is str for f in fields):
        raise ValueError("malformed namedtuple")
    key = (typename, fields)
    cls = _nt_types.get(key)
    if cls is None:
        cls = _nt_types[key] = collections.namedtuple(typename, fields)
        if len(_nt_types) > 256:  # bounded: a process sees few namedtuple types
            _nt_types.pop(next(iter(_nt_types)))
    return cls(*values)  # type: ignore[no-any-return]


class _NamedTuple:
    """Pickles as a call of namedtuple_value (the program's class itself cannot cross)."""

    __slots__ = ("args",)

    def __init__(self, typename: str, fields: tuple[str, ...], values: tuple[Any, ...]) -> None:
        self.args = (typename, fields, values)

    def __reduce__(self) -> Any:
        return (namedtuple_value, self.args)


def _namedtuple_fields(x: tuple[Any, ...]) -> tuple[str, ...] | None:
    fields = getattr(type(x), "_fields", None)
    if type(fields) is tuple and len(fields) == tuple.__len__(x) and all(
            type(f) is str for f in fields):
        return fields
    return None


def to_plain(value: Any) -> Any:
    """A plain copy of `value`; NotPlain if it is not plain data, TooLarge if it is but cannot
    cross whole."""
    t = type(value)
    if t in _ATOMS:  # what conv below does with an atom, without its set-up
        return value
    if (t is list or t is tuple) and len(value) < MAX_NODES and all(
            type(v) in _ATOMS for v in value):  # a flat list or tuple of atoms, likewise
        return list(value) if t is list else value
    budget = [MAX_NODES]
    active: set[int] = set()

    def conv(x: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise TooLarge(f"the value has more than {MAX_NODES} parts")
        if depth > MAX_DEPTH:
            raise TooLarge(f"the value is nested more than {MAX_DEPTH} levels deep")
        t = type(x)
        if t in _ATOMS:
            return x
        if isinstance(x, bool):
            return bool(x)
        if isinstance(x, int):
            return int.__int__(x)
        if isinstance(x, float):
            return float.__float__(x)
        if isinstance(x, complex):
            return complex(x.real, x.imag)
        if isinstance(x, str):
            return str.__str__(x)
        if isinstance(x, bytes):
            return bytes(x)
        if not isinstance(x, (list, tuple, set, frozenset, dict, bytearray, collections.deque)):
            if t.__module__ == "numpy" and hasattr(x, "item") and getattr(x, "ndim", 1) == 0:
                return conv(x.item(), depth + 1)
            raise NotPlain(t.__name__)
        key = id(x)
        if key in active:
            raise TooLarge("the value contains itself (a cycle)")
        active.add(key)
        try:
            return container(x, depth + 1)
        finally:
            active.discard(key)

    def container(x: Any, depth: int) -> Any:
        if isinstance(x, dict):
            items = [(conv(k, depth), conv(v, depth)) for k, v in dict.items(x)]
            if isinstance(x, collections.Counter):
                return collections.Counter(dict(items))
            if isinstance(x, collections.OrderedDict):
                return collections.OrderedDict(items)
            if isinstance(x, collections.defaultdict):
                factory = x.default_factory
                return collections.defaultdict(factory if factory in _FACTORIES else None, items)
            return dict(items)
        if isinstance(x, bytearray):
            return bytearray(x)
        if isinstance(x, collections.deque):
            return collections.deque([conv(v, depth) for v in collections.deque.__iter__(x)],
                                     x.maxlen)
        if isinstance(x, list):
            return [conv(v, depth) for v in list.__iter__(x)]
        if isinstance(x, tuple):
            values = tuple(conv(v, depth) for v in tuple.__iter__(x))
            fields = _namedtuple_fields(x)
            if fields is not None:
                return _NamedTuple(str(type(x).__name__), fields, values)
            return values
        items = [conv(v, depth) for v in (frozenset.__iter__(x) if isinstance(x, frozenset)
                                          else set.__iter__(x))]
        return frozenset(items) if isinstance(x, frozenset) else set(items)

    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * MAX_DEPTH + 200))  # a few frames a level
    try:
        return conv(value, 0)
    except RecursionError:
        raise TooLarge("the value is nested too deeply to copy") from None
    finally:
        sys.setrecursionlimit(limit)
