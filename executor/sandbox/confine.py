"""Confining a freshly forked child: own process group, fds, environment, rlimits, uid, seccomp."""

from __future__ import annotations

import ctypes
import os
import resource
from collections.abc import Callable
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
    if _c_set_name is not None:  # no ctypes call: cheaper in a fresh child (see _zygote.c)
        _c_set_name(name)
    else:
        _prctl(_PR_SET_NAME, ctypes.c_char_p(name[:15]), 0, 0, 0)


_c_set_name: Callable[[bytes], None] | None
try:
    from ._zygote import set_name as _c_set_name
except ImportError:
    _c_set_name = None


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
    asked for last, as a change of uid clears it. (The zygotes' C loop does the same up to
    `finish`, in C: see _zygote.c's confine_child.)
    """
    parent = os.getppid()
    os.setsid()
    _place_fds(fds)
    if cwd is not None:
        os.chdir(cwd)
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
    finish(env=env, use_seccomp=use_seccomp)


def finish(*, env: dict[str, str], use_seccomp: bool) -> None:
    """The last steps of `confine`, in a process whose fds, limits and uid are set: its
    environment and its own seccomp filter. (Python's sys.stdout and sys.stderr are the ones
    on fds 1 and 2: its zygote set them so.)"""
    set_env(env)
    if use_seccomp:
        seccomp.install(os.getpid())


def set_env(env: dict[str, str]) -> None:
    """Add `env` to the environment. (Not os.environ.update: its Mapping checks walk the ABC
    caches, and in a fresh child each page they touch is copied.)"""
    environ = os.environ
    for key in env:
        environ[key] = env[key]


def placed(place: tuple[int, ...], fds: list[int]) -> list[int]:
    """The fds a child holds at 0, 1, ...: the sent fd place[i], or /dev/null where -1 (as
    the C loop places them)."""
    devnull = os.open(os.devnull, os.O_RDWR) if -1 in place else -1
    return [devnull if i < 0 else fds[i] for i in place]
