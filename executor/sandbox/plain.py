"""Turning the program's values into plain data (in the program's process, hence untrusted).

Only values made of builtin scalars and containers cross to the test process; subclasses of
builtin types are reduced to their base (a namedtuple to a tuple, a Counter to a dict), which
drops any comparison the program overrode. Everything else stays behind as a handle.
"""

from __future__ import annotations

import decimal
import fractions
from typing import Any

_ATOMS = (type(None), bool, int, float, complex, str, bytes, decimal.Decimal, fractions.Fraction,
          range, slice)
_MAX_NODES = 1_000_000
_MAX_DEPTH = 200


class NotPlain(Exception):
    pass


def to_plain(value: Any) -> Any:
    """A plain copy of `value`, or NotPlain."""
    budget = [_MAX_NODES]
    active: set[int] = set()

    def conv(x: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0 or depth > _MAX_DEPTH:
            raise NotPlain("too large or too deep")
        t = type(x)
        if t in _ATOMS:
            return x
        if t in (list, tuple, set, frozenset, dict, bytearray):
            pass
        elif isinstance(x, bool):
            return bool(x)
        elif isinstance(x, int):
            return int.__int__(x)
        elif isinstance(x, float):
            return float.__float__(x)
        elif isinstance(x, str):
            return str.__str__(x)
        elif isinstance(x, bytes):
            return bytes(x)
        elif isinstance(x, (list, tuple, set, frozenset, dict)):
            pass
        elif type(x).__module__ == "numpy" and hasattr(x, "item") and getattr(x, "ndim", 1) == 0:
            return conv(x.item(), depth + 1)
        else:
            raise NotPlain(t.__name__)
        key = id(x)
        if key in active:
            raise NotPlain("cyclic")
        active.add(key)
        try:
            if isinstance(x, dict):
                return {conv(k, depth + 1): conv(v, depth + 1) for k, v in dict.items(x)}
            if isinstance(x, bytearray):
                return bytearray(x)
            items = [conv(v, depth + 1) for v in (list.__iter__(x) if isinstance(x, list) else
                                                 tuple.__iter__(x) if isinstance(x, tuple) else
                                                 iter(x))]
            if isinstance(x, list):
                return items
            if isinstance(x, tuple):
                return tuple(items)
            if isinstance(x, frozenset):
                return frozenset(items)
            return set(items)
        finally:
            active.discard(key)

    return conv(value, 0)
