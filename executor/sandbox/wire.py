"""Framing and the plain-data codec spoken between the jail's processes.

Every message is a 4-byte big-endian length followed by a pickle. Whatever a process that has
run (or may have been corrupted by) the untrusted program sends is decoded with
:func:`loads_plain`, which can only build plain builtin values: it refuses every global but a
short allow-list, so no object of the program's making, and no code, can cross.
"""

from __future__ import annotations

import io
import json
import marshal
import os
import pickle
import socket
import struct
from collections.abc import Callable
from typing import Any

from .plain import ALLOWED_GLOBALS

_HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024

# The only globals a plain value may reference: builtin and stdlib value types whose
# comparison is our own CPython's, not the program's (see plain.py).
_ALLOWED_GLOBALS = ALLOWED_GLOBALS


class FrameError(Exception):
    """The peer closed the channel or sent something that is not a valid frame."""


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused persistent id")


def loads_plain(data: bytes) -> Any:
    """Decode a pickle that may only hold plain builtin data."""
    return _PlainUnpickler(io.BytesIO(data)).load()


def dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def dumps_report(obj: Any) -> bytes:
    """A report from the test process to the worker: JSON, never a pickle. The test process
    runs the request's own (possibly hostile) test code, which can write anything on that pipe,
    and decoding JSON costs time linear in its size, whatever the bytes: a pickle can make its
    decoder hash a tuple of 2**60 leaves (a dozen memo references) and hang the worker."""
    return json.dumps(obj, separators=(",", ":")).encode()


def loads_report(data: bytes) -> Any:
    """Counterpart of dumps_report (arrays come back as tuples)."""
    value = json.loads(data)
    return tuple(value) if type(value) is list else value


def send_report(fd: int, obj: Any) -> None:
    write_frame(fd, dumps_report(obj))


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd` (a pipe or file), however many writes that takes."""
    done = os.write(fd, data)
    if done < len(data):
        view = memoryview(data)[done:]
        while view:
            view = view[os.write(fd, view):]


def write_frame(fd: int, payload: bytes) -> None:
    write_all(fd, _HEADER.pack(len(payload)) + payload)


def read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise FrameError("channel closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, limit: int = MAX_FRAME) -> bytes:
    (size,) = _HEADER.unpack(read_exact(fd, _HEADER.size))
    if size > limit:
        raise FrameError(f"frame of {size} bytes exceeds the limit of {limit}")
    return read_exact(fd, size)


_CHUNK = 1 << 16


class FrameStream:
    """Frames from a blocking fd (a pipe), taken in as few reads as they arrive in: a frame
    written whole (header and body in one write, as `write_frame` does) is taken by one read,
    where `read_frame` makes two. Bytes that follow a frame wait here for the next `read`; they
    are never another stream's (each pipe has its own)."""

    __slots__ = ("fd", "limit", "buf")

    def __init__(self, fd: int, limit: int = MAX_FRAME) -> None:
        self.fd = fd
        self.limit = limit
        self.buf = b""

    def read(self) -> bytes:
        """The next frame's body. FrameError if the peer closed the channel first, or announced
        a frame over the limit (the channel is out of step from then on)."""
        buf = self.buf
        while len(buf) < _HEADER.size:
            chunk = os.read(self.fd, _CHUNK)
            if not chunk:
                raise FrameError("channel closed")
            buf += chunk
        (size,) = _HEADER.unpack_from(buf)
        if size > self.limit:
            self.buf = buf
            raise FrameError(f"frame of {size} bytes exceeds the limit of {self.limit}")
        end = _HEADER.size + size
        if len(buf) >= end:
            self.buf = buf[end:]
            return buf[_HEADER.size:end]
        # The rest of a frame that did not come whole: read to its end exactly (as read_frame
        # does, one copy of the body in all), no byte of the next.
        self.buf = b""
        parts = [buf[_HEADER.size:]]
        need = end - len(buf)
        while need:
            chunk = os.read(self.fd, min(need, 1 << 20))
            if not chunk:
                raise FrameError("channel closed")
            parts.append(chunk)
            need -= len(chunk)
        return b"".join(parts)

    def read_plain(self) -> Any:
        """The next frame, decoded as plain data (as `recv_plain` does)."""
        return decode_plain(self.read())


def send(fd: int, obj: Any) -> None:
    write_frame(fd, dumps(obj))


def send_job(fd: int, job: dict[str, Any]) -> None:
    """A child's job, from the worker to a child that has run nothing yet: plain builtin data,
    marshalled (both sides are the same interpreter; decoding is a single C call, where a
    pickle's decoder touches many more of the pages the fresh child shares with its zygote)."""
    write_frame(fd, marshal.dumps(job))


def read_job(fd: int) -> Any:
    return marshal.loads(read_frame(fd))


def recv_plain(fd: int, limit: int = MAX_FRAME) -> Any:
    return decode_plain(read_frame(fd, limit))


def decode_plain(data: bytes) -> Any:
    """A frame's body as plain data; FrameError if it is not (the peer's fault)."""
    try:
        return loads_plain(data)
    except Exception as exc:  # any decoding failure is the peer's fault
        raise FrameError(f"undecodable frame: {type(exc).__name__}: {exc}") from None


class FrameReader:
    """Frames from an untrusted peer on a non-blocking fd, as they arrive.

    A blocking read would let a peer that sends half a frame and then nothing hang its reader;
    this one buffers what has come and never waits. Each complete frame is decoded with
    `decode` (:func:`loads_plain` unless told); a frame over `limit`, an undecodable one, or the
    peer closing raises FrameError."""

    def __init__(self, fd: int, limit: int, decode: Callable[[bytes], Any] | None = None) -> None:
        self.fd = fd
        self.limit = limit
        self.decode = decode or loads_plain
        self.buf = bytearray()

    def read(self) -> list[Any]:
        """Whatever frames are complete after reading what is available now."""
        try:
            chunk = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            chunk = None
        except OSError as exc:
            raise FrameError(f"channel failed: {exc}") from None
        if chunk == b"":
            raise FrameError("channel closed")
        if chunk:
            self.buf += chunk
        frames = []
        while len(self.buf) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self.buf)
            if size > self.limit:
                raise FrameError(f"frame of {size} bytes exceeds the limit of {self.limit}")
            if len(self.buf) < _HEADER.size + size:
                break
            data = bytes(self.buf[_HEADER.size:_HEADER.size + size])
            del self.buf[:_HEADER.size + size]
            try:
                frames.append(self.decode(data))
            except Exception as exc:
                raise FrameError(f"undecodable frame: {type(exc).__name__}: {exc}") from None
        return frames


def recv_trusted(fd: int) -> Any:
    """Decode a frame from a trusted peer (the server, or the worker)."""
    return pickle.loads(read_frame(fd))


# -- messages with file descriptors, over a unix socket ----------------------------------------


def send_msg(sock: socket.socket, obj: Any, fds: list[int] | None = None) -> None:
    """A length-prefixed pickle; `fds` ride along with the first bytes (SCM_RIGHTS)."""
    data = dumps(obj)
    header = _HEADER.pack(len(data))
    if fds:
        socket.send_fds(sock, [header], fds)
    else:
        sock.sendall(header)
    sock.sendall(data)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise FrameError("channel closed")
        buf += chunk
    return bytes(buf)


def recv_msg(sock: socket.socket, max_fds: int = 8) -> tuple[Any, list[int]]:
    """Counterpart of send_msg, for a trusted peer."""
    head, fds, _, _ = socket.recv_fds(sock, _HEADER.size, max_fds)
    if not head:
        raise FrameError("channel closed")
    head += recv_exact(sock, _HEADER.size - len(head))
    (size,) = _HEADER.unpack(head)
    return pickle.loads(recv_exact(sock, size)), list(fds)
