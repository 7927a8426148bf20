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


def _libc_errno(call) -> int:  # type: ignore[no-untyped-def]
    libc = ctypes.CDLL(None, use_errno=True)
    rc = call(libc)
    return ctypes.get_errno() if rc == -1 else 0


# Kernel objects that outlive the process, and the CPU placement: denied in both forms.
OUTLIVING = [
    ("shmget", lambda libc: libc.shmget(0xACEC, 4096, 0o1666)),
    ("semget", lambda libc: libc.semget(0xACED, 1, 0o1666)),
    ("msgget", lambda libc: libc.msgget(0xACEE, 0o1666)),
    ("mq_open", lambda libc: libc.mq_open(b"/acecoder-test", os.O_CREAT | os.O_RDWR, 0o600, None)),
    ("sched_setaffinity", lambda libc: libc.sched_setaffinity(0, 8, ctypes.byref(ctypes.c_ulong(1)))),
]


@pytest.mark.parametrize(("name", "call"), OUTLIVING)
def test_objects_that_outlive_the_process_are_denied(name: str, call) -> None:  # type: ignore[no-untyped-def]
    assert run_in_child(lambda: _libc_errno(call)) == 1, name  # EPERM


def run_shared(fn) -> int:  # type: ignore[no-untyped-def]
    """As a zygote's child: the shared filter installed in the parent, inherited."""
    pid = os.fork()
    if pid == 0:
        try:
            seccomp.install_shared()
            child = os.fork()
            if child == 0:
                os._exit(fn())
            os._exit(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))
        except BaseException:
            os._exit(99)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.parametrize(("name", "call"), [
    ("socket", lambda: errno_of(socket.socket)),
    ("unshare", lambda: errno_of(lambda: _unshare(0x10000000))),
    *((name, lambda c=call: _libc_errno(c)) for name, call in OUTLIVING),
])
def test_shared_filter_denies_the_same(name: str, call) -> None:  # type: ignore[no-untyped-def]
    assert run_shared(call) == 1, name  # EPERM


def test_shared_filter_leaves_sessions_and_signals_to_the_kernel() -> None:
    """The inherited form allows setsid and signals by pid: children run under uids of their
    own, the kernel refuses signals across uids, and the worker kills a request's processes
    by uid (see worker.Worker.settle)."""
    def fine() -> int:
        os.setsid()
        os.kill(os.getpid(), 0)
        return 7

    assert run_shared(fine) == 7
    assert seccomp.build_filter(None, "x86_64") != seccomp.build_filter(1234, "x86_64")
