"""Confined children's processes: the zygotes that fork them, and how the worker reads, kills
and describes them.

Children are forked by two small zygotes, never by the worker itself: after a fork every page
is copy-on-write on *both* sides, and the worker, which does the per-job bookkeeping, would pay
a page fault for each page it then touches. The zygotes do nothing but fork and reap, and never
receive anything of a request but the file descriptors its child will hold.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable, Iterator
from typing import Any

from . import confine, forking, seccomp, wire


def _zygote_loop(sock: socket.socket, become: Callable[[dict[str, Any], list[int]], None]) -> None:
    """Fork confined children on request. Runs forever in its own process."""
    confine.prctl(confine.PR_SET_PDEATHSIG, signal.SIGKILL)
    statuses: dict[int, tuple[int, int, float]] = {}
    while True:
        try:
            msg, fds = wire.recv_msg(sock)
        except (wire.FrameError, OSError):
            os._exit(0)
        if msg[0] == "spawn":
            _reap_nowait(statuses)
            pid = forking.fork()
            if pid == 0:
                sock.close()
                become(msg[1], fds)
                os._exit(0)
            for fd in fds:
                os.close(fd)
            wire.send_msg(sock, ("pid", pid))
        elif msg[0] == "status":
            pid = msg[1]
            ended = statuses.pop(pid, None)
            if ended is None:
                try:
                    _, status, usage = os.wait4(pid, 0)
                    ended = _ended(status, usage)
                except ChildProcessError:
                    ended = (0, 0, 0.0)
            wire.send_msg(sock, ("status", *ended))


def exited_children() -> Iterator[tuple[int, int, Any]]:
    """(pid, status, resource usage) of every child that has exited, without waiting for the
    others."""
    while True:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status, usage


def _ended(status: int, usage: Any) -> tuple[int, int, float]:
    """(exit status, peak resident memory in KiB, CPU seconds) of a child that has ended."""
    return status, int(usage.ru_maxrss), float(usage.ru_utime + usage.ru_stime)


def _reap_nowait(statuses: dict[int, tuple[int, int, float]]) -> None:
    """Collect children that have exited, remembering the last few exit statuses."""
    for pid, status, usage in exited_children():
        statuses[pid] = _ended(status, usage)
        if len(statuses) > 64:
            del statuses[next(iter(statuses))]


def die(what: str, exc: BaseException) -> None:
    try:
        os.write(2, f"acecoder: {what} failed: {exc!r}\n".encode())
    finally:
        os._exit(70)


class Zygote:
    def __init__(self, become: Callable[[dict[str, Any], list[int]], None], *,
                 seccomp_shared: bool = False) -> None:
        """`seccomp_shared`: install the pid-independent filter in the zygote itself, for every
        child to inherit (installing one costs about as much as a fork, on every child)."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = forking.fork()
        if pid == 0:
            parent.close()
            try:
                if seccomp_shared:
                    seccomp.install_shared()
                _zygote_loop(child, become)
            except BaseException as exc:
                die("starting a zygote", exc)
            finally:
                os._exit(0)
        child.close()
        self.sock = parent
        self.pid = pid

    def spawn(self, spec: dict[str, Any], fds: list[int]) -> int:
        """Fork a child holding `fds`. `spec` is the same for every child of a worker."""
        wire.send_msg(self.sock, ("spawn", spec), fds)
        msg, _ = wire.recv_msg(self.sock)
        return int(msg[1])

    def status(self, pid: int) -> int:
        """Exit status of a child (waits for it: kill it first)."""
        return self.ended(pid)[0]

    def ended(self, pid: int) -> tuple[int, int, float]:
        """(exit status, peak resident memory in KiB, CPU seconds) of a child (waits for it:
        kill it first, or know that it has exited)."""
        wire.send_msg(self.sock, ("status", pid))
        msg, _ = wire.recv_msg(self.sock)
        return int(msg[1]), int(msg[2]), float(msg[3])


def ancestors(pid: int) -> set[int]:
    """`pid` and every process above it (in this pid namespace)."""
    out = set()
    while pid > 0 and pid not in out:
        out.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out


def describe_status(status: int) -> tuple[str, str]:
    """(verdict, detail) for a program process that died on its own."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return "CRASHED", f"killed by {name}"
    code = os.WEXITSTATUS(status)
    return "ERROR", f"program exited with status {code}"


_PF_EXITING = 0x4  # include/linux/sched.h: set as do_exit begins, never cleared


def exiting(pid: str) -> bool:
    """Whether the process has begun to exit (it will never return to user space)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return bool(int(fields[6]) & _PF_EXITING)
    except (OSError, ValueError, IndexError):
        return True  # gone already


def every_thread_exiting(pid: str) -> bool:
    """Whether no thread of the process will run again: each is a zombie or has begun to exit.
    The leader's own state is not enough: a leader that called the `exit` system call alone
    (not `exit_group`) is a zombie while the process lives on in its other threads."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True  # gone already
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # that thread is gone
        if fields[0] not in (b"Z", b"X") and not int(fields[6]) & _PF_EXITING:
            return False
    return True


def kill_tree(pid: int) -> None:
    """SIGKILL a confined child and its process group (which its descendants cannot leave)."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
