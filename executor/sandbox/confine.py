"""Confining a freshly forked child: own process group, fds, environment, rlimits, uid, seccomp."""

from __future__ import annotations

import ctypes
import os
import resource
import sys
from typing import NamedTuple

from . import seccomp

PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4

_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl


class Limits(NamedTuple):
    """Resource limits of one confined process (and, for processes, of its whole uid)."""

    memory_bytes: int
    cpu_seconds: int
    file_bytes: int
    open_files: int
    processes: int


_PR_SET_NAME = 15


def set_name(name: bytes) -> None:
    """The process's name (`comm`), as /proc and ps show it; at most 15 bytes."""
    _prctl(_PR_SET_NAME, ctypes.c_char_p(name[:15]), 0, 0, 0)


def prctl(option: int, arg: int) -> None:
    if _prctl(option, arg, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


_PR_GET_PDEATHSIG = 2


def pdeathsig() -> int:
    """The signal this process gets when its parent dies (0: none)."""
    sig = ctypes.c_int(0)
    if _prctl(_PR_GET_PDEATHSIG, ctypes.byref(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_GET_PDEATHSIG) failed")
    return sig.value


def _place_fds(fds: list[int]) -> None:
    """Make fd i a copy of fds[i], and close every other fd. (Kept lean: every Python object a
    freshly forked child touches costs a copy-on-write page fault.)"""
    n = len(fds)
    for i in range(n):
        os.dup2(fds[i], 100 + i)
    for i in range(n):
        os.dup2(100 + i, i)
    os.closerange(n, 65536)


def confine(
    *,
    uid: int | None,
    limits: Limits,
    cwd: str | None,
    fds: list[int],
    env: dict[str, str],
    use_seccomp: bool,
) -> None:
    """Turn the calling (just forked) process into a confined one. Irreversible.

    `fds[i]` becomes fd i; `env` is applied on top of the worker's (already scrubbed)
    environment; `cwd` None keeps the inherited working directory; with `uid`, the process
    drops to that uid (and gid) with no groups. It is killed with its parent: the signal is
    asked for last, as a change of uid clears it.
    """
    parent = os.getppid()
    os.setsid()
    _place_fds(fds)
    if cwd is not None:
        os.chdir(cwd)
    if env:
        environ = os.environ
        for key in env:
            environ[key] = env[key]
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    setrlimit = resource.setrlimit
    setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))
    setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
    setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
    setrlimit(resource.RLIMIT_CORE, (0, 0))
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    # Not dumpable: no other process of the same uid may read our memory or open our fds.
    prctl(_PR_SET_DUMPABLE, 0)
    prctl(PR_SET_PDEATHSIG, 9)
    if os.getppid() != parent:  # the parent died before the line above: so do we
        os._exit(0)
    if use_seccomp:
        seccomp.install(os.getpid())
