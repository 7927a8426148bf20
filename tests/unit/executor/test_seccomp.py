"""The hand-assembled filter, installed for real in a forked child."""

from __future__ import annotations

import ctypes
import os
import socket

import pytest

from acecoder.executor.sandbox import seccomp

pytestmark = pytest.mark.skipif(not seccomp.supported(), reason="no filter for this CPU")


def _unshare(flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def run_in_child(fn) -> int:  # type: ignore[no-untyped-def]
    pid = os.fork()
    if pid == 0:
        try:
            seccomp.install()
            os._exit(fn())
        except BaseException:
            os._exit(99)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def errno_of(fn) -> int:  # type: ignore[no-untyped-def]
    try:
        fn()
    except OSError as exc:
        return exc.errno or 0
    return 0


@pytest.mark.parametrize(("name", "call"), [
    ("socket", lambda: socket.socket()),
    ("kill parent", lambda: os.kill(os.getppid(), 0)),
    ("setsid", os.setsid),
    ("setpgid", lambda: os.setpgid(0, 0)),
    ("unshare", lambda: _unshare(0x10000000)),  # CLONE_NEWUSER
])
def test_denied(name: str, call) -> None:  # type: ignore[no-untyped-def]
    assert run_in_child(lambda: errno_of(call)) == 1, name  # EPERM


def test_allowed() -> None:
    def fine() -> int:
        os.kill(os.getpid(), 0)
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        a, b = socket.socketpair()
        a.close()
        b.close()
        return code

    assert run_in_child(fine) == 7


def test_filter_is_well_formed() -> None:
    prog = seccomp.build_filter(1234, "x86_64")
    assert len(prog) % 8 == 0 and 0 < len(prog) // 8 < 4096
    assert seccomp.build_filter(1234, "aarch64") != prog
