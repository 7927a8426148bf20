"""The sweep between requests skips processes that have begun to exit (PF_EXITING): read
from /proc, for a live process, a stopped one, a zombie and a pid that does not exist."""

from __future__ import annotations

import os
import signal
import time

from acecoder.executor.sandbox.procs import exiting as _exiting


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
        for _ in range(200):  # a zombie has exited for good
            if _exiting(str(pid)):
                break
            time.sleep(0.01)
        assert _exiting(str(pid))
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert _exiting(str(pid))  # gone altogether
