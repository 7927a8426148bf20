from __future__ import annotations

import os
import pickle
import struct
import threading
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


def test_frame_stream_takes_each_frame_whole_whatever_the_writes() -> None:
    """The blocking reader of the program's channel (and of the test side's): frames written
    together come back one by one, in order, nothing lost between them; a frame written in
    pieces, or far larger than one read, comes back whole; a frame over the limit, a channel
    closed mid-frame and an undecodable frame are errors."""
    r, w = os.pipe()
    stream = wire.FrameStream(r, limit=8 << 20)
    frames = [wire.dumps(("a", i)) for i in range(5)]
    os.write(w, b"".join(struct.pack(">I", len(f)) + f for f in frames))
    assert [stream.read_plain() for _ in frames] == [("a", i) for i in range(5)]

    big = os.urandom(3 << 20)  # larger than a pipe holds: written while the stream reads
    pieces = [struct.pack(">I", len(big))[:2], struct.pack(">I", len(big))[2:] + big[:10],
              big[10:], struct.pack(">I", 3) + b"end"]
    writer = threading.Thread(target=lambda: [wire.write_all(w, p) for p in pieces])
    writer.start()
    assert stream.read() == big
    assert stream.read() == b"end"  # read after the big frame's last bytes, not lost
    writer.join()

    os.write(w, struct.pack(">I", 3) + b"abc")
    with pytest.raises(wire.FrameError, match="undecodable"):
        stream.read_plain()
    os.write(w, struct.pack(">I", 9 << 20) + b"x" * 100)
    with pytest.raises(wire.FrameError, match="exceeds the limit"):
        stream.read()
    os.close(r)
    os.close(w)

    r, w = os.pipe()
    stream = wire.FrameStream(r)
    os.write(w, struct.pack(">I", 10) + b"half")
    os.close(w)
    with pytest.raises(wire.FrameError, match="closed"):
        stream.read()
    with pytest.raises(wire.FrameError, match="closed"):
        wire.FrameStream(r).read()  # nothing at all
    os.close(r)


def test_frame_reader_never_blocks_on_half_a_frame() -> None:
    """A hostile test can write a frame header and stop: the worker's reader must return
    what is complete and not wait for the rest."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    reader = wire.FrameReader(r, limit=1 << 10)
    data = wire.dumps(("done", 0))
    os.write(w, struct.pack(">I", len(data)) + data + struct.pack(">I", 50) + b"ab")
    assert reader.read() == [("done", 0)]
    assert reader.read() == []  # half a frame: nothing, and no wait
    os.close(w)
    with pytest.raises(wire.FrameError, match="closed"):
        reader.read()
    os.close(r)
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.write(w, struct.pack(">I", 1 << 20))
    with pytest.raises(wire.FrameError, match="exceeds"):
        wire.FrameReader(r, limit=1 << 10).read()
    os.close(w)
    os.close(r)


@pytest.mark.parametrize(("msg", "current"), [
    (("done", 5, "PASSED", "", ""), 0),        # not the running test
    (("done", 0, "SKIPPED", "", ""), 0),       # not a verdict a test can get
    (("done", 0, "WON", "", ""), 0),
    (("done", 0, "PASSED", 1, ""), 0),
    (("done", True, "PASSED", "", ""), 1),
    (("loaded",), 0),                          # loaded twice
    (("flag", "ANYTHING"), 0),
    (("end", 1), 0),
    ("done", 0),
    ((), 0),
])
def test_malformed_reports_are_refused(msg: object, current: int) -> None:
    from acecoder.executor.sandbox.worker import Malformed, check_report

    with pytest.raises(Malformed):
        check_report(msg, current, 3)


def test_wellformed_reports_pass() -> None:
    from acecoder.executor.sandbox.worker import check_report

    assert check_report(("done", 1, "FAILED", "AssertionError", "x" * 10**5), 1, 3)[4] == "x" * 4096
    assert check_report(("loaded",), -1, 3) == ("loaded",)
    assert check_report(("flag", "OVERRIDDEN_EQUALITY"), 0, 3)


def _hash_bomb(depth: int) -> bytes:
    """A pickle of a frozenset holding a tuple of 2**depth leaves, built from memo references:
    decoding it hashes every leaf."""
    ops = b"\x80\x04(" + b"K\x01K\x01\x86\x94"
    for i in range(depth):
        ops += b"h" + bytes([i]) + b"h" + bytes([i]) + b"\x86\x94"
    return ops + b"\x91."


def test_reports_decode_in_linear_time_whatever_the_bytes() -> None:
    """The worker reads the test process's reports with the report codec (JSON), whose cost is
    linear in the frame: a pickle that makes a decoder hash 2**60 leaves is simply not JSON."""
    assert wire.loads_report(wire.dumps_report(("done", 0, "PASSED", "", ""))) == (
        "done", 0, "PASSED", "", "")
    small = _hash_bomb(12)  # small enough that the pickle decoder finishes: it is a pickle
    assert type(wire.loads_plain(small)) is frozenset
    hostile = [_hash_bomb(60), b"[" * 200_000 + b"]" * 200_000,
               b'["done", ' + b"9" * 900_000 + b"]", b"\xff\xfe", b'{"a": NaN']
    for data in hostile:
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.write(w, struct.pack(">I", len(data)))
        reader = wire.FrameReader(r, limit=1 << 21, decode=wire.loads_report)
        writer = threading.Thread(target=os.write, args=(w, data))
        writer.start()
        with pytest.raises(wire.FrameError, match="undecodable"):
            while True:
                reader.read()
        writer.join()
        os.close(w)
        os.close(r)
