from __future__ import annotations

import os
import pickle
import struct
from decimal import Decimal
from fractions import Fraction

import pytest

from acecoder.executor.sandbox import wire


@pytest.mark.parametrize("value", [
    None, True, 3, 2**200, 1.5, float("inf"), 1j, "é", b"\x00", bytearray(b"x"), [1, (2, {3})],
    {"a": frozenset({1})}, Decimal("1.10"), Fraction(1, 3), range(3), slice(1, 2),
])
def test_plain_values_round_trip(value: object) -> None:
    assert wire.loads_plain(wire.dumps(value)) == value


class Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("payload", [
    pickle.dumps(Evil()), pickle.dumps(Evil(), protocol=0), pickle.dumps(os.getcwd),
    pickle.dumps(Exception("x")),
])
def test_loads_plain_refuses_globals(payload: bytes) -> None:
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        wire.loads_plain(payload)


def test_frames() -> None:
    r, w = os.pipe()
    wire.send(w, ("hello", [1, 2]))
    assert wire.recv_plain(r) == ("hello", [1, 2])
    os.write(w, struct.pack(">I", 10**6))
    with pytest.raises(wire.FrameError, match="exceeds the limit"):
        wire.read_frame(r, limit=100)
    os.write(w, struct.pack(">I", 3) + b"abc")
    with pytest.raises(wire.FrameError, match="undecodable"):
        wire.recv_plain(r)
    os.close(w)
    with pytest.raises(wire.FrameError, match="closed"):
        wire.read_frame(r)
    os.close(r)
