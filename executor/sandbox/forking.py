"""fork() without CPython's at-fork machinery, for the worker's single-threaded fork parents.

`os.fork` runs every registered at-fork hook (threading, random, logging, ...) and re-creates
runtime locks; on a small VM that is most of the cost of starting a child. The worker and the
zygote never start a thread, so none of that state can be held by another thread at fork time,
and calling libc's fork directly (with the GIL held) is safe there. The one hook whose effect
matters, reseeding `random`, is done by hand.
"""

from __future__ import annotations

import _random
import ctypes
import os
import sys
import threading

_libc = ctypes.PyDLL(None, use_errno=True)  # PyDLL: the GIL stays held across the call
_fork = _libc.fork
_fork.restype = ctypes.c_int
_seed = _random.Random.seed


def fork() -> int:
    """Like os.fork, for a parent that has exactly one thread."""
    if threading.active_count() != 1:
        return os.fork()
    pid = _fork()
    if pid < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    if pid == 0:
        reseed_random()
    return pid


def reseed_random() -> None:
    """Seed `random` afresh (as its own at-fork hook does in a child), so that no two
    children draw the same numbers. (Its C seed from os.urandom, as `random.seed()` ends in,
    without the Python method around it: in a fresh child, each page that method's steps touch
    is copied.)"""
    rnd = sys.modules.get("random")
    if rnd is not None:
        inst = rnd._inst
        _seed(inst)
        inst.gauss_next = None
