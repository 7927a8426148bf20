"""Confining a freshly forked child: its own process group, fds, environment, rlimits, uid, seccomp."""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
from dataclasses import dataclass

from . import seccomp

PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4

_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Resource limits of one confined process (and, for processes, of its whole uid)."""

    memory_bytes: int
    cpu_seconds: int
    file_bytes: int
    open_files: int
    processes: int


def prctl(option: int, arg: int) -> None:
    if _prctl(option, arg, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def _place_fds(fds: dict[int, int]) -> None:
    """Make each target fd a copy of its source fd, and close every other fd."""
    staged = {target: os.dup(src) for target, src in fds.items()}
    high = {target: os.dup2(fd, 200 + target, inheritable=False) for target, fd in staged.items()}
    for fd in staged.values():
        os.close(fd)
    for target, fd in high.items():
        os.dup2(fd, target, inheritable=True)
    top = max(fds) + 1 if fds else 0
    os.closerange(top, 65536)


def confine(
    *,
    uid: int | None,
    gid: int | None,
    limits: Limits,
    cwd: str,
    fds: dict[int, int],
    env: dict[str, str],
    use_seccomp: bool,
) -> None:
    """Turn the calling (just forked) process into a confined one. Irreversible."""
    os.setsid()
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _place_fds(fds)
    os.chdir(cwd)
    # The worker runs with a scrubbed environment already; only set what differs.
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
    for key in [k for k in os.environ if k not in env]:
        del os.environ[key]
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    for res, value in (
        (resource.RLIMIT_AS, limits.memory_bytes),
        (resource.RLIMIT_CPU, limits.cpu_seconds),
        (resource.RLIMIT_FSIZE, limits.file_bytes),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_NPROC, limits.processes),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_MEMLOCK, 0),
    ):
        resource.setrlimit(res, (value, value))
    if uid is not None and gid is not None:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    # Not dumpable: no other process of the same uid may read our memory or open our fds.
    prctl(_PR_SET_DUMPABLE, 0)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    if use_seccomp:
        seccomp.install(os.getpid())
