"""The sweep between requests skips processes that have begun to exit (PF_EXITING): read
from /proc, for a live process, a stopped one, a zombie and a pid that does not exist; and a
zombie leader whose other threads still run is not gone."""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from collections.abc import Callable

from acecoder.executor.sandbox.procs import every_thread_exiting
from acecoder.executor.sandbox.procs import exiting as _exiting

_SYS_EXIT = {"x86_64": 60, "aarch64": 93}[os.uname().machine]


def soon(check: Callable[[], bool]) -> bool:
    """Whether `check` holds within 2 s."""
    for _ in range(200):
        if check():
            return True
        time.sleep(0.01)
    return check()


def test_exiting_reads_the_kernel_flag() -> None:
    assert not _exiting(str(os.getpid()))
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    try:
        os.kill(pid, signal.SIGSTOP)  # stopped is not exiting: it could run again
        time.sleep(0.05)
        assert not _exiting(str(pid))
        os.kill(pid, signal.SIGKILL)
        assert soon(lambda: _exiting(str(pid)))  # a zombie has exited for good
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert _exiting(str(pid))  # gone altogether


def test_a_leader_that_exited_alone_is_not_gone_while_a_thread_runs() -> None:
    """The `exit` system call ends the calling thread only: the leader is a zombie (so its
    status reads Z and PF_EXITING) while the process runs on in its other threads."""
    pid = os.fork()
    if pid == 0:
        threading.Thread(target=time.sleep, args=(30,)).start()
        ctypes.CDLL(None).syscall(_SYS_EXIT, 0)
    try:
        assert soon(lambda: _exiting(str(pid)))  # the leader's own flags say it exited
        assert not every_thread_exiting(str(pid))  # but a thread of it lives
        os.kill(pid, signal.SIGKILL)  # the whole group, through the zombie leader's pid
        assert soon(lambda: every_thread_exiting(str(pid)))
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert every_thread_exiting(str(pid))  # gone altogether
