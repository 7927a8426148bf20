"""Confined children's processes: the zygotes that fork them, and how the worker reads, kills
and describes them.

Children are forked by two small zygotes, never by the worker itself: after a fork every page
is copy-on-write on *both* sides, and the worker, which does the per-job bookkeeping, would pay
a page fault for each page it then touches. The zygotes do nothing but fork and reap, and never
receive anything of a request but the file descriptors its child will hold.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import struct
import sys
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any

from . import confine, forking, seccomp, wire

# The zygote's orders and replies: fixed-size binary frames (see _zygote.c), so that neither
# side pickles anything. An order is a letter and a number: "S" and the spec of the child to
# fork (its fds alongside), "R" and a mask of specs to collect exited children, "W" and the pid
# of one to wait for, "B" and a mask of specs whose every child to wait for (killed ones). "S" is
# answered with the child's pid (-1: not forked), "R" with how many children of the specs in the
# mask are not collected yet, "W" with the child's exit status, peak memory (KiB) and CPU
# seconds, "B" with 0 once they are all collected.
_ORDER = struct.Struct("=ii")
_ENDED = struct.Struct("=iiqd")
_SPAWN, _REAP, _WAIT, _COLLECT = ord("S"), ord("R"), ord("W"), ord("B")
_MAX_FDS = 8
_MAX_CHILDREN = 256

c_serve: Callable[..., tuple[int, list[int] | None]] | None
try:  # the loop in C: after a fork the zygote writes to almost none of its pages (each page
    from ._zygote import serve as c_serve  # written while the child shares it is copied,
except ImportError:  # at a few microseconds a page on a small VM); see _zygote.c
    c_serve = None


def _zygote_loop(sock: socket.socket, become: Callable[[dict[str, Any], list[int] | None], None],
                 specs: list[dict[str, Any]], in_c: bool) -> None:
    """Fork confined children on request. Runs forever in its own process: only a child
    leaves the order loop, with the number of its spec and its fds (None: the C loop confined
    it, as `place` says)."""
    confine.prctl(confine.PR_SET_PDEATHSIG, signal.SIGKILL)
    # Python's streams on fds 1 and 2, which each child holds its own of (the worker points
    # sys.stdout at its stderr): set here once, not in every child.
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    if in_c and c_serve is not None:
        which, fds = c_serve(sock.fileno(), c_specs(specs))
        forking.reseed_random()
    else:
        which, fds = serve(sock)
    if fds is None:
        sock.detach()  # closed in C; its number may be a placed fd's now
    else:
        sock.close()
    become(specs[which], fds)
    os._exit(0)


def c_specs(specs: list[dict[str, Any]]) -> dict[int, tuple[Any, ...]]:
    """What the C loop needs of the specs whose children it confines itself (those that say
    how to `place` their fds; see _zygote.c): whether each is native (see `natives`), its uid,
    ceilings, placement, and whether it works in "/"."""
    native = natives(specs)
    return {i: (i in native, -1 if s["uid"] is None else int(s["uid"]),
                *(int(v) for v in s["limits"]), tuple(s["place"]), s.get("cwd") == "/")
            for i, s in enumerate(specs) if "place" in s}


def natives(specs: list[dict[str, Any]]) -> set[int]:
    """The specs whose children the C loop execs itself (see _zygote.c): a spec marked `native`
    whose fds are placed as stdin, stdout, stderr, the job, and that needs no seccomp filter
    of its own (it inherits the zygote's, or runs with none)."""
    return {i for i, s in enumerate(specs)
            if s.get("native") and not s.get("seccomp") and len(s.get("place", ())) == 4}


_NATIVE_HEAD = struct.Struct("=4sIqqiii")
_NATIVE_MAX = 1 << 20


def native_frame(argv: list[str], env: dict[str, str], cwd: str, *, memory_bytes: int,
                 cpu_seconds: int, data_memory: bool) -> bytes:
    """A native child's job (read by _zygote.c's become_native): exec `argv` in `cwd` with
    `env` on top of the worker's environment, its memory limit RLIMIT_DATA (`data_memory`) or
    RLIMIT_AS, and its CPU limit."""
    parts = [cwd, *argv, *(f"{k}={v}" for k, v in env.items())]
    if not argv or any("\0" in p for p in parts) or any("=" in k or not k for k in env):
        raise ValueError("a native job's strings hold no NUL, keys no '=', argv a command")
    body = b"".join(p.encode("utf-8", errors="surrogateescape") + b"\0" for p in parts)
    if len(body) > _NATIVE_MAX:
        raise ValueError(f"a native job over {_NATIVE_MAX} bytes")
    return _NATIVE_HEAD.pack(b"ACN1", len(body), memory_bytes, cpu_seconds, int(data_memory),
                             len(argv), len(env)) + body


def serve(sock: socket.socket) -> tuple[int, list[int]]:
    """The zygote's loop in Python, where the C one is not built: the same orders."""
    statuses: dict[int, tuple[int, int, float]] = {}
    live: dict[int, int] = {}  # children not collected yet -> their spec
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, _ORDER.size, _MAX_FDS,
                                              socket.MSG_WAITALL | socket.MSG_CMSG_CLOEXEC)
        except OSError:
            os._exit(0)
        if len(data) != _ORDER.size:
            os._exit(0)
        kind, arg = _ORDER.unpack(data)
        if kind == _SPAWN:
            _reap_nowait(statuses, live)
            child = -1
            if len(live) < _MAX_CHILDREN:  # else no fork: every child is counted
                try:
                    child = forking.fork()
                except OSError:
                    pass
            if child == 0:
                return arg, fds
            if child > 0:
                live[child] = arg
            answer = _ORDER.pack(_SPAWN, child)
        elif kind == _REAP:
            _reap_nowait(statuses, live)
            answer = _ORDER.pack(_REAP, sum(1 for s in live.values() if 0 <= s < 31
                                            and (arg >> s) & 1))
        elif kind == _COLLECT:
            for pid in [p for p, spec in live.items() if 0 <= spec < 31 and (arg >> spec) & 1]:
                try:
                    _, status, usage = os.wait4(pid, 0)
                    statuses[pid] = _ended(status, usage)
                except ChildProcessError:
                    pass
                live.pop(pid, None)
            while len(statuses) > 64:
                del statuses[next(iter(statuses))]
            answer = _ORDER.pack(_COLLECT, 0)
        elif kind == _WAIT:
            _reap_nowait(statuses, live)
            ended = statuses.pop(arg, None)
            if ended is None:
                try:
                    _, status, usage = os.wait4(arg, 0)
                    ended = _ended(status, usage)
                    live.pop(arg, None)
                except ChildProcessError:
                    ended = (0, 0, 0.0)
            answer = _ENDED.pack(_WAIT, *ended)
        else:
            os._exit(0)
        for fd in fds:
            os.close(fd)
        try:
            sock.sendall(answer)
        except OSError:
            os._exit(0)


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


def _reap_nowait(statuses: dict[int, tuple[int, int, float]], live: dict[int, int]) -> None:
    """Collect children that have exited, remembering the last few exit statuses."""
    for pid, status, usage in exited_children():
        live.pop(pid, None)
        statuses[pid] = _ended(status, usage)
        if len(statuses) > 64:
            del statuses[next(iter(statuses))]


def die(what: str, exc: BaseException) -> None:
    try:
        os.write(2, f"acecoder: {what} failed: {exc!r}\n".encode())
    finally:
        os._exit(70)


class Zygote:
    def __init__(self, become: Callable[[dict[str, Any], list[int] | None], None],
                 specs: list[dict[str, Any]], *, seccomp_shared: bool = False,
                 in_c: bool = True) -> None:
        """A process that forks children running `become(spec, fds)`: `spec` one of `specs`,
        fixed at start (nothing of any request), `fds` what each spawn order hands over, or
        None where the C loop confined the child (a spec with `place`: see `c_specs`; fd i
        is then the sent fd place[i], or /dev/null where -1).
        `seccomp_shared`: install the pid-independent filter in the zygote itself, for every
        child to inherit (installing one costs about as much as a fork, on every child).
        `in_c`: its loop in C where built (else the same loop in Python); then the children of
        its native specs (see `natives`) exec their job's command from C."""
        self.specs = specs
        self.native = natives(specs) if in_c and c_serve is not None else set()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = forking.fork()
        if pid == 0:
            parent.close()
            try:
                if seccomp_shared:
                    seccomp.install_shared()
                _zygote_loop(child, become, specs, in_c)
            except BaseException as exc:
                die("starting a zygote", exc)
            finally:
                os._exit(0)
        child.close()
        self.sock = parent
        self.pid = pid

    def _order(self, kind: int, arg: int = 0, fds: list[int] | None = None,
               reply: struct.Struct = _ORDER, timeout: float | None = None) -> tuple[Any, ...]:
        order = _ORDER.pack(kind, arg)
        if fds:
            socket.send_fds(self.sock, [order], fds)
        else:
            self.sock.sendall(order)
        if timeout is not None:
            ready, _, _ = select.select([self.sock], [], [], max(timeout, 0.0))
            if not ready:
                raise TimeoutError("the zygote did not answer in time")
        data = wire.recv_exact(self.sock, reply.size)
        got = reply.unpack(data)
        if got[0] != kind:
            raise wire.FrameError(f"the zygote answered {got[0]} to {kind}")
        return got

    def spawn(self, spec: dict[str, Any], fds: list[int]) -> int:
        """Fork a child holding `fds`, as `spec` says (one of this zygote's `specs`)."""
        which = next((i for i, s in enumerate(self.specs) if s is spec), None)
        if which is None:
            raise ValueError("a spawn names one of the zygote's own specs (the very object)")
        pid = int(self._order(_SPAWN, which, fds=fds)[1])
        if pid <= 0:
            raise OSError("the zygote could not fork")
        return pid

    def runs_native(self, spec: dict[str, Any]) -> bool:
        """Does a child of `spec` exec its job's command from C (it reads a native_frame)?"""
        return any(s is spec for i, s in enumerate(self.specs) if i in self.native)

    def reap(self, specs: Collection[dict[str, Any]] | None = None) -> int:
        """Have the zygote collect its children that have exited (until then each counts
        against its uid's process limit). Returns how many of its children with one of
        `specs` (default: all of them) are left, exited or not."""
        mask = sum(1 << i for i, s in enumerate(self.specs)
                   if specs is None or any(s is t for t in specs))
        return int(self._order(_REAP, mask)[1])

    def collect(self, specs: Collection[dict[str, Any]], timeout: float) -> None:
        """Wait until every child of `specs` has exited, and have the zygote collect it: for
        children that have been killed (the wait ends as each is gone, not a poll's sleep
        later). Raises TimeoutError if that takes longer than `timeout` seconds; the zygote
        is then out of step, and must not be given another order."""
        mask = sum(1 << i for i, s in enumerate(self.specs) if any(s is t for t in specs))
        self._order(_COLLECT, mask, timeout=timeout)

    def status(self, pid: int) -> int:
        """Exit status of a child (waits for it: kill it first)."""
        return self.ended(pid)[0]

    def ended(self, pid: int) -> tuple[int, int, float]:
        """(exit status, peak resident memory in KiB, CPU seconds) of a child (waits for it:
        kill it first, or know that it has exited)."""
        _, status, rss, cpu = self._order(_WAIT, pid, reply=_ENDED)
        return int(status), int(rss), float(cpu)


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


def kill_tree(pid: int) -> None:
    """SIGKILL a confined child and its process group (which its descendants cannot leave)."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@contextlib.contextmanager
def _as(uid: int, via: int) -> Iterator[None]:
    """Real uid `via`, effective uid `uid`, saved uid 0 for the block; then the caller's own
    credentials again, and its parent-death signal, which the kernel clears whenever the
    effective uid changes (a jail may have set it: the worker dies with it)."""
    ruid, euid, suid = os.getresuid()
    deathsig = confine.pdeathsig()
    os.setresuid(via, uid, 0)
    try:
        yield
    finally:
        os.setresuid(ruid, euid, suid)
        if deathsig:
            confine.prctl(confine.PR_SET_PDEATHSIG, deathsig)


def sweep(uids: Iterable[int], via: int) -> None:
    """SIGKILL every process of each of `uids` in this pid namespace, in one step that no
    fork can outrun. The caller runs as root and is root again on return.

    `kill(-1, SIGKILL)` signals every process the caller may signal, walking the process list
    under the lock `fork` takes to add a process to it: a process is either on the list, and
    killed, or not forked yet, and then its parent already has a fatal signal pending and the
    fork fails. A read of /proc is a snapshot that a chain of forks can stay ahead of. The
    caller takes on, for each call, real uid `via`, effective uid the target's, saved uid 0:
    the kernel lets a sender signal a process whose real or saved uid is the sender's real or
    effective uid, so the call reaches the target uid's processes (and `via`'s: nothing may
    run as it) and never root's; a process of the target uid cannot signal the caller
    meanwhile (the caller's real and saved uids are not the target's); an effective uid other
    than 0 holds no capabilities (CAP_KILL would widen the call to everyone: see
    `check_sweep`); and the saved uid 0 lets the caller become root again."""
    for uid in uids:
        with _as(uid, via), contextlib.suppress(ProcessLookupError):  # an empty namespace
            os.kill(-1, signal.SIGKILL)


def any_left(uids: Collection[int]) -> bool:
    """Whether any process of `uids` is left in this pid namespace, zombies included (each
    counts against its uid's process limit until its parent reaps it). A read of /proc, which
    is exact once `sweep` has run: no process of those uids can fork any more, so the set
    only shrinks. (`kill(-1, 0)` cannot tell: it succeeds whenever the namespace holds any
    other process, signallable or not.)"""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", "rb") as f:
                status = f.read(1024)
        except OSError:
            continue
        real = status.split(b"\nUid:\t", 1)[-1].split(b"\t", 1)[0]
        if real.isdigit() and int(real) in uids:
            return True
    return False


def children(pid: int) -> set[int] | None:
    """The pids of the children of single-threaded process `pid` (one read of /proc), or None
    where the kernel does not list them (CONFIG_PROC_CHILDREN), or where /proc is not this pid
    namespace's (its numbers would not be ours)."""
    if os.readlink("/proc/self") != str(os.getpid()):
        return None
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            return {int(p) for p in f.read().split()}
    except FileNotFoundError:
        return None


def check_sweep(uid: int, via: int) -> None:
    """Raise unless a sweep's credentials hold no effective capability here: a jail that keeps
    capabilities across uid changes (securebits) would make `kill(-1)` reach every process."""
    with _as(uid, via), open("/proc/self/status", "rb") as f:
        status = f.read()
    caps = int(status.split(b"\nCapEff:\t", 1)[1].split(b"\n", 1)[0], 16)
    if caps:
        raise RuntimeError(
            f"a sweep would hold capabilities {caps:#x}: this jail keeps them across uid "
            "changes (securebits), so kill(-1) would reach every process; run the worker "
            "without SECBIT_NO_SETUID_FIXUP")
