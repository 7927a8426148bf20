"""The jailed worker: one long-lived process per pool slot, started inside the jail.

For each program it starts confined children and supervises them against the clock:

* the *program process*, which loads the program and answers calls;
* the *test process*, which runs the tests and decides the verdicts; or, for a suite of plain
  checks (literal.py), the slot's *judge*: a test process that serves many requests, runs no
  code of any of them (their tests only call the program and compare plain data), and is
  replaced whenever a request does not end cleanly in it.

Stdio tests (stdio.py) need no test process: a fresh program process per test, and the worker
compares outputs. Children are forked by small zygotes (procs.py) that were forked before the
worker read any job, and that never see one: a spawn order carries no request data (no source,
no directory, no environment; the same order every time), and the child reads its job from a
pipe only it holds.
So no process's memory ever holds another request's program or tests.

One request never reaches another: every process that ran any of its code (program or tests)
is killed when it ends, and the next request starts only once they are gone and their output
pipes (fresh for each request) have been read to the end; its files live on a tmpfs of its own,
detached whole. Kernel objects that could outlive a process (SysV IPC, POSIX message queues) and
the CPU placement are denied by seccomp.

The server talks to the worker over stdin/stdout (length-prefixed pickles); the worker never
prints. A test that hangs, crashes or runs out of memory costs that test only: both children
are killed and a fresh pair resumes at the next test. Reports from the test process come from a
process that runs hostile test code, so they are JSON (decoded in time linear in their size,
whatever the bytes, where a pickle can make its decoder hash a tuple of 2**60 leaves) and each
is checked; a malformed one costs only its own request.
"""

from __future__ import annotations

import gc
import importlib
import os
import resource
import select
import signal
import socket
import sys
import time
from typing import Any

from . import confine, seccomp, wire
from .procs import (
    Zygote,
    any_left,
    check_sweep,
    children,
    describe_status,
    die,
    exited_children,
    kill_tree,
    sweep,
)

# Imported only after the program zygote is forked (see main), so that it stays small: every
# page a zygote holds is copied into each child's page tables, and torn down again at its exit.
program: Any = None
harness: Any = None
fs: Any = None
literal: Any = None
stdio: Any = None

_PR_SET_CHILD_SUBREAPER = 36
# Modules programs use most, imported once in the program zygote. Kept short on purpose: every
# module makes each fork dearer (more pages to map and tear down), and a program that imports
# something else pays for it itself. `ExecutorConfig.preimport` adds more.
_PREIMPORT = (
    "bisect collections copy functools heapq itertools math operator random re string typing"
).split()
_TMP_ROOT = "/tmp/acecoder"
# Empty parked job directories a holder keeps before it is detached with them (fs.make_holder).
_DETACH_TOGETHER = 16
# Where, in a holder, ended requests' directories wait to be detached (fs.park).
_PARKED = "parked"
# The name a pre-spawned child has until it gets its job (see Worker.prepare).
SPARE_NAME = b"acecoder-spare"
# Flags the test process may report (the others the worker decides itself).
HARNESS_FLAGS = frozenset({"OVERRIDDEN_EQUALITY"})
VERDICTS = frozenset({"PASSED", "FAILED", "ERROR", "TIMEOUT", "MEMORY", "CRASHED"})
_CTRL_LIMIT = 1 << 20  # largest report frame from a test process
_REPORT_CAP = 4096  # longest error type or message kept from a report
# How long the end of a request waits for its killed processes to be gone (their output pipes
# at EOF) before the worker is declared unsafe to reuse.
_EXIT_WAIT = 5.0
_TESTER_MEMORY = 1 << 30  # least address space of a test process (it decodes 64 MiB replies)
# How a request may end with the judge still in step (it has sent its last report).
_JUDGE_CLEAN = frozenset({"end", "lost", "fallback", "load_failed", "setup_failed"})
_forged: Any = None


def _tester_memory(job: dict[str, Any]) -> int:
    """The address space a request's tests get, in a fresh test process or in the judge alike:
    a plain check that allocates past it is MEMORY on either path."""
    return max(int(job["memory_bytes"]), _TESTER_MEMORY)


def forged_output(data: bytes) -> bool:
    """Does the program's output carry test-result markers ("all tests passed", a line that
    starts with PASSED, a JSON verdict)? Verdicts never come from output, so this only flags
    the attempt."""
    global _forged
    if not data:
        return False
    if _forged is None:
        import re

        _forged = re.compile(
            rb"(?i:\b(?:all\s+)?tests?\s+(?:have\s+)?passed\b)"
            rb"|(?m:^\s*(?:PASSED|PASS|ALL PASSED)\b)"
            rb"|(?i:[\"'](?:verdict|status|result)[\"']\s*:\s*[\"'](?:passed|pass|ok|accepted)[\"'])")
    return bool(_forged.search(bytes(data)))


def _lower(limit: int, value: int) -> None:
    resource.setrlimit(limit, (value, value))


def _confine(spec: dict[str, Any], fds: list[int] | None) -> None:
    """Confine a fresh child of a zygote as its spec says: in Python where the zygote's C loop
    has not already (`fds` None: it placed them; see procs.Zygote)."""
    if fds is not None:
        confine.confine(uid=spec["uid"], limits=spec["limits"], cwd=spec.get("cwd"),
                        fds=confine.placed(spec["place"], fds), env=spec.get("env", {}),
                        use_seccomp=spec["seccomp"])
        confine.set_name(SPARE_NAME)  # until it has a job: it holds nothing of any request
    else:
        confine.finish(env=spec.get("env", {}), use_seccomp=spec["seccomp"])


def _become_program(spec: dict[str, Any], fds: list[int] | None) -> None:
    """In a fresh child of the program zygote: confine, read this child's job from its own
    pipe (the zygote never sees it), then load and serve the program; or, for a stdio test,
    run it whole on the input it was given (fd 0), its output going to its own pipe (fd 1)."""
    stdio = bool(spec.get("stdio"))
    try:
        if spec.get("native"):  # its orders go to the C loop only (Zygote.runs_native)
            raise RuntimeError("a native spec's child in Python")
        _confine(spec, fds)
        job = wire.read_job(3)  # written by the worker before anyone else
        confine.set_name(b"acecoder-prog")
        if job.get("data_memory"):  # a runtime that reserves far more than it uses (the JVM)
            _lower(resource.RLIMIT_DATA, job["memory_bytes"])
        else:
            _lower(resource.RLIMIT_AS, job["memory_bytes"])
        _lower(resource.RLIMIT_CPU, job["cpu_seconds"])
        os.chdir(job["cwd"])
        confine.set_env(job["env"])
    except BaseException as exc:  # never fall back into the zygote's loop
        die("confining the program", exc)
    try:
        if stdio and "argv" in job:  # another language's compiler, or one run of its program
            program.run_command(job["argv"], job["files"])
        elif stdio and "checker_texts" in job:  # a custom checker, after a test's run
            program.run_checker(job["program"], job["checker_texts"])
        elif stdio:
            program.run_main(job["program"])
        else:
            program.main(3, 4, job["program"], job["setup"])
    finally:
        os._exit(0)


def _become_tester(spec: dict[str, Any], fds: list[int] | None) -> None:
    """In a fresh child of the test zygote: confine, then run the one job the worker sends (or,
    as the judge, the suites of plain checks of request after request)."""
    try:
        _confine(spec, fds)
    except BaseException as exc:
        die("starting the test process", exc)
    try:
        if spec.get("judge"):
            harness.judge(jobs=3, memory_bytes=spec["judge_memory"])
        else:
            harness.serve(ctrl=3, jobs=4)
    finally:
        os._exit(0)


# --------------------------------------------------------------------------- supervision


def _discard(fd: int) -> bool:
    """Read and drop what a finished request's pipe holds. Returns whether it is at EOF."""
    while True:
        try:
            if not os.read(fd, 1 << 16):
                return True
        except BlockingIOError:
            return False
        except OSError:
            return True


class Malformed(Exception):
    """A report from the test process that breaks the protocol."""


def check_report(msg: Any, current: int, n: int) -> tuple[Any, ...]:
    """A report from the test process, checked against what may come next (it runs the
    request's own, possibly hostile, test code, which can write anything on that pipe)."""
    if type(msg) is not tuple or not msg or type(msg[0]) is not str:
        raise Malformed(f"not a report: {type(msg).__name__}")
    kind, args = msg[0], msg[1:]
    loading = current == -1
    if kind in ("loaded", "fallback") and not args and loading:
        return msg
    if kind == "done" and len(args) == 4 and not loading:
        i, verdict, etype, emsg = args
        if type(i) is not int or i != current or not 0 <= i < n:
            raise Malformed(f"a verdict for test {i!r} while test {current} runs")
        if type(verdict) is not str or verdict not in VERDICTS:
            raise Malformed(f"unknown verdict {str(verdict)[:40]!r}")
        if type(etype) is not str or type(emsg) is not str:
            raise Malformed("error type and message must be text")
        return ("done", i, verdict, etype[:_REPORT_CAP], emsg[:_REPORT_CAP])
    if kind == "flag" and len(args) == 1 and args[0] in HARNESS_FLAGS:
        return msg
    if kind == "end" and not args:
        return msg
    if kind == "lost" and len(args) == 1 and type(args[0]) is int:
        return msg
    if kind == "load_failed" and len(args) == 3 and loading and all(type(a) is str for a in args):
        return ("load_failed", *(a[:_REPORT_CAP] for a in args))
    if kind == "setup_failed" and len(args) == 2 and loading and all(type(a) is str for a in args):
        return ("setup_failed", *(a[:_REPORT_CAP] for a in args))
    raise Malformed(f"unexpected report {kind[:40]!r} with {len(args)} fields")


class _Request:
    """What one request owns in the worker: its output pipes and its directory. Every process
    that holds the write ends belongs to this request, and is killed when it ends."""

    def __init__(self, tmp: str, mounted: bool) -> None:
        self.tmp = tmp
        self.mounted = mounted
        self.out_r, self.out_w = os.pipe2(os.O_CLOEXEC)
        self.err_r, self.err_w = os.pipe2(os.O_CLOEXEC)
        for fd in (self.out_r, self.err_r):
            os.set_blocking(fd, False)
        self.pids: list[int] = []
        self.spare: _Pair | None = None  # spawned before the job arrived (see Worker.prepare)


class _Pair:
    """A program process, spawned and confined, waiting for its job on a channel only the
    worker writes to (it holds nothing of any request until then), and the ends of its
    channel that the tests' side gets: a fresh test process's, or the judge's."""

    def __init__(self, prog_pid: int, t2p_w: int, p2t_r: int) -> None:
        self.prog_pid = prog_pid
        self.t2p_w = t2p_w
        self.p2t_r = p2t_r

    def close(self) -> None:
        for fd in (self.t2p_w, self.p2t_r):
            if fd >= 0:
                os.close(fd)
        self.t2p_w = self.p2t_r = -1


class _Judge:
    """The judge (a test process that runs suites of plain checks for many requests; see
    harness.judge and literal.py) and the socket its orders go on."""

    # Replaced after this many requests, whatever happened.
    LIFETIME = 500

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.sock = sock
        self.served = 0

    def drop(self) -> None:
        kill_tree(self.pid)
        self.sock.close()


def seccomp_placement(hello: dict[str, Any]) -> tuple[bool, bool]:
    """(the zygotes hold the seccomp filter, each child installs its own): with a uid per
    child kind, the zygotes hold the filter (pid-independent) and every child inherits it;
    without, each child installs the filter naming its own pid. Never both, and with seccomp
    off or unsupported, neither."""
    use_seccomp = bool(hello.get("seccomp", True)) and seccomp.supported()
    separate = separate_uids(hello)
    return use_seccomp and separate, use_seccomp and not separate


def child_specs(hello: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What every spawn order of a worker can say, fixed at its start (nothing of any
    request): the program zygote's children (a program, a stdio run, a custom checker) and
    the test zygote's (a fresh test process, the judge). Children lower the memory and CPU
    limits to their request's once they have read it."""
    separate = separate_uids(hello)
    own_filter = seccomp_placement(hello)[1]
    uid_base = int(hello.get("uid_base", 61000))
    slot = int(hello["slot"])
    # Three uids per slot: programs, fresh test processes, the judge. None can signal or
    # read another's processes.
    prog_uid = uid_base + 3 * slot if separate else None
    test_uid = uid_base + 3 * slot + 1 if separate else None
    judge_uid = uid_base + 3 * slot + 2 if separate else None
    ceiling = confine.Limits(
        memory_bytes=int(hello.get("max_memory_bytes", 8 << 30)), cpu_seconds=1 << 30,
        file_bytes=int(hello.get("file_bytes", 16 << 20)),
        open_files=int(hello.get("open_files", 64)),
        processes=int(hello.get("processes", 32)))
    # `place`: fd i of the child is the spawn's fd place[i], or /dev/null (-1). A program's:
    # nothing on stdin, its output and errors, then the channel from and to its tests
    # (spawned with those four); a stdio run's: its input, output, errors, then its job's pipe.
    program_spec = {"uid": prog_uid, "limits": ceiling, "seccomp": own_filter,
                    "place": (-1, 2, 3, 0, 1)}
    stdio_spec = {**program_spec, "stdio": True, "place": (1, 2, 3, 0)}
    # A custom checker runs under the tests' uid: no process of the program may signal it
    # (and none is left when it runs).
    checker_spec = {**stdio_spec, "uid": test_uid}
    # A run of a compiled program (or of another language's runtime): the C zygote loop's
    # child confines itself as confine.confine does and execs it (procs.natives).
    native_spec = {**stdio_spec, "native": True}
    # A fresh test process's fds: nothing on stdin, output and errors, its reports, its jobs;
    # the judge's: its jobs' socket only.
    tester_spec = {"uid": test_uid, "limits": ceiling, "env": {"HOME": "/"},
                   "seccomp": own_filter, "cwd": "/", "place": (-1, 1, 2, 0, 3)}
    judge_spec = {**tester_spec, "uid": judge_uid, "judge": True, "place": (-1, -1, -1, 0),
                  "judge_memory": max(ceiling.memory_bytes, _TESTER_MEMORY)}
    return [program_spec, stdio_spec, checker_spec, native_spec], [tester_spec, judge_spec]


class Worker:
    def __init__(self, hello: dict[str, Any], chan_in: int, chan_out: int,
                 test_zygote: Zygote, prog_zygote: Zygote) -> None:
        self.slot = int(hello["slot"])
        self.chan_in = chan_in
        self.chan_out = chan_out
        self.use_seccomp = bool(hello.get("seccomp", True)) and seccomp.supported()
        self.tmp_bytes = int(hello.get("tmp_bytes", 256 << 20))
        self.seq = 0
        self.stale_dirs: list[tuple[str, bool]] = []
        self.to_detach: list[str] = []
        """Mounted directories of ended requests, sealed, or full holders, to detach (see
        detach_old)."""
        os.makedirs(_TMP_ROOT, mode=0o755, exist_ok=True)
        self.holder: str | None = None
        """Where the next requests' directories go (fs.make_holder); None: a new one."""
        self.holder_mounted = False
        self.holders = 0
        self.blanks = 0
        """Parked, empty directories of ended requests that wait in the holder."""
        self.test_zygote = test_zygote
        self.prog_zygote = prog_zygote
        self.program_spec, self.stdio_spec, self.checker_spec, self.native_spec = (
            prog_zygote.specs)
        self.native_runs = prog_zygote.runs_native(self.native_spec)
        """Runs of compiled programs exec from the C loop (else a Python child execs them)."""
        self.tester_spec, self.judge_spec = test_zygote.specs
        self.prog_uid: int | None = self.program_spec["uid"]
        self.test_uid: int | None = self.tester_spec["uid"]
        self.judge: _Judge | None = None
        self.testers_out = False
        """Whether a fresh test process was spawned since the test zygote last collected."""
        self.use_judge = bool(hello.get("judge", True))
        self.plain_suite = literal.decisions()
        self.builds = stdio.BuildCache()
        """Compiled programs by source (see stdio.BuildCache)."""
        self.uids = {u for u in (self.prog_uid, self.test_uid) if u is not None}
        # The real uid a sweep runs under (procs.sweep): one nothing in this jail runs as.
        self.sweep_uid = int(hello.get("sweep_uid", 65534))
        if self.uids:
            check_sweep(min(self.uids), self.sweep_uid)
        self.next: _Request | None = None  # the next request's, prepared between jobs
        self.ending: tuple[_Request, dict[str, Any]] | None = None  # the last, to settle

    # -- one job ------------------------------------------------------------------------

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        n = len(job["tests"])
        verdicts: list[list[Any] | None] = [None] * n
        state: dict[str, Any] = {"status": "OK", "detail": "", "out": bytearray(),
                                 "err": bytearray(), "out_trunc": False, "err_trunc": False,
                                 "flags": set()}
        req = self.next or self.prepare(spare=False)
        self.next = None
        stdio = job.get("kind") == "stdio"
        job = {**job, "plain_names": (self.plain_suite(job["tests"], job["setup"])
                                      if self.use_judge and not stdio else None)}
        try:
            start = n if stdio else 0
            if stdio:
                self._run_stdio(job, req, verdicts, state)
            while start < n:
                nxt = self._run_pair(job, req, start, verdicts, state)
                if nxt is None or nxt >= n:
                    break
                if job["stop_on_first_failure"] and any(
                        v is not None and v[0] != "PASSED" for v in verdicts):
                    break
                start = nxt
        finally:
            self._stop(req, job, state)
            self.ending = (req, job)
        for i, v in enumerate(verdicts):
            if v is None:
                verdicts[i] = ["SKIPPED", 0.0, "", ""]
        flags: set[str] = state["flags"]
        if state["status"] == "EXITED_EARLY":
            flags.add("EXITED_EARLY")
        if forged_output(state["out"]) or forged_output(state["err"]):
            flags.add("FORGED_OUTPUT")
        built = {"build": state["build"]} if "build" in state else {}
        return {
            **built,
            "status": state["status"], "detail": state["detail"], "verdicts": verdicts,
            "stdout": bytes(state["out"]), "stderr": bytes(state["err"]),
            "stdout_truncated": state["out_trunc"], "stderr_truncated": state["err_trunc"],
            "duration": time.monotonic() - started, "flags": sorted(flags),
            "compile_seconds": float(state.get("compile_seconds", 0.0)),
        }

    def _run_stdio(self, job: dict[str, Any], req: _Request, verdicts: list[list[Any] | None],
                   state: dict[str, Any]) -> None:
        stdio.run(self, job, req, verdicts, state)

    def _check_zygotes(self) -> None:
        """Reap orphans reparented to us; a dead zygote ends the worker."""
        for pid, _, _ in exited_children():
            if pid in (self.prog_zygote.pid, self.test_zygote.pid):
                raise RuntimeError("a zygote died")

    def _remove_stale(self) -> None:
        """Directories whose removal failed before: retried, never a failure of this job."""
        left = []
        for path, mounted in self.stale_dirs:
            try:
                fs.remove_job_dir(path, mounted)
            except Exception as exc:
                os.write(2, f"acecoder: removing {path} failed: {exc!r}\n".encode())
                left.append((path, mounted))
        self.stale_dirs = left[-16:]

    def _stop(self, req: _Request, job: dict[str, Any], state: dict[str, Any]) -> None:
        """The request is over: kill every process of it, keep the output it has written.
        (The program flushes its output before each reply and the test process before each
        report, so everything they wrote before the last report is in the pipes now.)"""
        if req.spare is not None:
            self._drop_pair(req.spare)
            req.spare = None
        for pid in req.pids:
            kill_tree(pid)
        for fd in (req.out_r, req.err_r):
            self._drain(fd, req.out_r, job, state, final=True)

    def settle(self) -> bool:
        """Before the next request: end every process of the last one and wait until they
        are gone, then remove its directory. Where children run under uids of their own, one
        sweep (procs.sweep) kills every process of those uids, whatever its group or session:
        once it returns, none runs again. Gone is the output pipes at EOF (no process holds
        them any more: a process closes its files only once its memory is torn down; what
        they still held is dropped) and every process of those uids reaped. Returns False if
        a process outlived the wait; the worker then takes no more requests."""
        if self.ending is None:
            return True
        req, job = self.ending
        self.ending = None
        self.sweep()
        os.close(req.out_w)
        os.close(req.err_w)
        open_fds = {req.out_r, req.err_r}
        deadline = time.monotonic() + _EXIT_WAIT
        poller = select.poll()  # (no selector: a poll set costs no fd and no syscall to make)
        for fd in open_fds:
            poller.register(fd, select.POLLIN)
        while open_fds:
            wait = deadline - time.monotonic()
            if wait <= 0:
                break
            for fd, _ in poller.poll(wait * 1000):
                if _discard(fd):
                    open_fds.discard(fd)
                    poller.unregister(fd)
        os.close(req.out_r)
        os.close(req.err_r)
        if not self._reaped(deadline):
            open_fds.add(-1)
        self._check_zygotes()
        parked = None if open_fds else self._park(req)
        if parked is None:
            self._remove_dir(req.tmp, req.mounted)  # before the next request starts
        elif fs.blank(parked):
            # Empty: it waits for the holder, detached with every one in it (one detach, one
            # RCU grace period, for many requests).
            self.blanks += 1
            if self.blanks >= _DETACH_TOGETHER and self.holder is not None:
                self.to_detach.append(self.holder)  # the next request gets a new one
                self.holder = None
        else:
            self.to_detach.append(parked)  # detached alone, while the next request runs
        while len(self.to_detach) > 1:
            self._remove_dir(self.to_detach.pop(0), True)
        return not open_fds

    def _park(self, req: _Request) -> str | None:
        """Seal an ended request's directory and park it (fs.park): nothing of the request
        runs, none of its uids can enter the directory, and no later request can even find
        it, only root can walk where it waits. Its new path, or None where it stays put."""
        holder = self.holder
        if (req.mounted and self.prog_uid is not None and holder is not None
                and self.holder_mounted and req.tmp.startswith(f"{holder}/")
                and fs.seal(req.tmp)):
            return fs.park(req.tmp, f"{holder}/{_PARKED}")
        return None

    def detach_old(self) -> None:
        """Detach what the last request left to detach: its directory (a tmpfs, sealed and
        parked), or a holder with the empty directories of many (see settle). Called once the
        next request's processes run: a detach waits for an RCU grace period (tens of
        microseconds under load, with nothing to do meanwhile on this slot's core before they
        start)."""
        while self.to_detach:
            self._remove_dir(self.to_detach.pop(0), True)

    def _remove_dir(self, path: str, mounted: bool) -> None:
        try:
            fs.remove_job_dir(path, mounted)
        except Exception as exc:
            os.write(2, f"acecoder: removing {path} failed: {exc!r}\n".encode())
            self.stale_dirs.append((path, mounted))

    def _reaped(self, deadline: float) -> bool:
        """Wait (until `deadline`) until no process of the slot's request uids is left at
        all, zombies included: a killed process counts against its uid's process limit until
        it is reaped, and daemons of the last request would take the next one's processes
        and threads. Only the zygotes start processes of those uids, and whatever such a
        process forks is its descendant until orphaned, then the worker's (a subreaper): so
        none is left once the zygotes hold none of their children of those uids (they count
        them) and the worker has no child but the zygotes. (Where the kernel does not list a
        process's children, one read of /proc checks the uids instead.) The sweep has run:
        nothing of those uids can fork, and the set only shrinks."""
        if not self.uids:
            return True
        zygotes = {self.prog_zygote.pid, self.test_zygote.pid}
        me = os.getpid()
        # The zygotes' own children of those uids (all killed): waited for, so the wait ends
        # the moment the last is gone (a poll would sleep past it, the slot's core idle).
        try:
            self.prog_zygote.collect(self.prog_zygote.specs, deadline - time.monotonic())
            if self.testers_out:  # (none spawned since the last collect: none to wait for)
                self.test_zygote.collect([self.tester_spec], deadline - time.monotonic())
                self.testers_out = False
        except TimeoutError:
            return False  # a zygote is out of step now: this worker takes no more requests
        tries = left = 0
        while True:
            self._check_zygotes()  # reaps orphans of the request that have exited
            if not left:
                mine = children(me)
                if (not any_left(self.uids)) if mine is None else mine <= zygotes:
                    return True
            if time.monotonic() >= deadline:
                return False
            # An orphan (of the worker now) still exiting: on this slot's core, a short sleep
            # is what lets it finish.
            tries += 1
            time.sleep(0.00005 if tries < 100 else 0.001)
            left = self.prog_zygote.reap() + self.test_zygote.reap([self.tester_spec])

    def sweep(self) -> None:
        """Kill every process of the slot's request uids, whatever its group (procs.sweep):
        once this returns, none of them runs another instruction of its own."""
        if self.uids:
            sweep(self.uids, self.sweep_uid)

    def prepare(self, spare: bool = True) -> _Request:
        """The next request's directory and output pipes, and (with `spare`) its first pair of
        processes, spawned now so that the request does not wait for them."""
        self._remove_stale()
        self.seq += 1
        tmp = f"{self._holder()}/{self.seq}"
        req = _Request(tmp, fs.make_job_dir(tmp, self.prog_uid, size=self.tmp_bytes))
        if spare:
            req.spare = self._spawn_program(req)
            if self.use_judge and self.judge is None:
                self.judge = self._spawn_judge()
        return req

    def _holder(self) -> str:
        """The directory the next request's directory goes in (see fs.make_holder)."""
        if self.holder is None:
            self.holders += 1
            path = f"{_TMP_ROOT}/{self.slot}.{self.holders}"
            self.holder_mounted = fs.make_holder(path, _DETACH_TOGETHER, _PARKED)
            self.holder, self.blanks = path, 0
        return self.holder

    def _spawn_program(self, req: _Request) -> _Pair:
        t2p_r, t2p_w = os.pipe2(os.O_CLOEXEC)
        p2t_r, p2t_w = os.pipe2(os.O_CLOEXEC)
        prog_pid = self.prog_zygote.spawn(self.program_spec, [t2p_r, p2t_w, req.out_w, req.err_w])
        req.pids.append(prog_pid)
        os.close(t2p_r)
        os.close(p2t_w)
        return _Pair(prog_pid, t2p_w, p2t_r)

    def _spawn_tester(self, req: _Request) -> tuple[int, int, socket.socket]:
        """A fresh test process for this request: (pid, its report pipe, its job socket)."""
        ctrl_r, ctrl_w = os.pipe2(os.O_CLOEXEC)
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.testers_out = True  # before the order: a fork it asks for may happen regardless
        tester_pid = self.test_zygote.spawn(self.tester_spec,
                                            [ctrl_w, req.out_w, req.err_w, theirs.fileno()])
        req.pids.append(tester_pid)
        os.close(ctrl_w)
        theirs.close()
        return tester_pid, ctrl_r, mine

    def _spawn_judge(self) -> _Judge:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = self.test_zygote.spawn(self.judge_spec, [theirs.fileno()])
        theirs.close()
        return _Judge(pid, mine)

    def _drop_judge(self) -> None:
        if self.judge is not None:
            self.judge.drop()
            self.judge = None

    @staticmethod
    def _drop_pair(pair: _Pair) -> None:
        kill_tree(pair.prog_pid)
        pair.close()

    def _job_frame(self, job: dict[str, Any], tmp: str) -> dict[str, Any]:
        """What the program process reads from its own pipe before it runs anything."""
        n = len(job["tests"])
        return {
            "program": job["program"], "setup": job["setup"], "cwd": tmp,
            "env": {"HOME": tmp, "TMPDIR": tmp}, "memory_bytes": int(job["memory_bytes"]),
            "cpu_seconds": int(job["timeout"] * (n + 1) + job["load_timeout"]) + 2,
        }

    def _run_pair(self, job: dict[str, Any], req: _Request, start: int,
                  verdicts: list[list[Any] | None], state: dict[str, Any]) -> int | None:
        """Run tests[start:] with a fresh program process, and the judge (a suite of plain
        checks) or a fresh test process. Returns the index to resume at with a fresh program
        process, or None when the job is finished."""
        pair = req.spare or self._spawn_program(req)
        req.spare = None
        prog_pid = pair.prog_pid
        try:
            wire.send_job(pair.t2p_w, self._job_frame(job, req.tmp))
        except OSError:
            pass  # the program process is gone already; the tests' side will say "lost"
        names = job["plain_names"]
        if names is not None and self.judge is None:
            self.judge = self._spawn_judge()
        judged = names is not None
        tester_pid = -1
        ctrl_r = -1
        outcome = "running"
        try:
            if judged:
                ctrl_r = self._order_judge(job, pair, start, names)
            else:
                tester_pid, ctrl_r = self._order_tester(job, req, pair, start, resumed=False)
            outcome, current, t_start, broken = self._supervise(job, req, ctrl_r, start,
                                                                 verdicts, state)
            if outcome == "fallback":  # a name the tests read is not the program's function
                self._judge_done(clean=True)
                judged = False
                os.close(ctrl_r)
                ctrl_r = -1
                tester_pid, ctrl_r = self._order_tester(job, req, pair, start, resumed=True)
                outcome, current, t_start, broken = self._supervise(job, req, ctrl_r, start,
                                                                     verdicts, state)
        finally:
            kill_tree(prog_pid)
            if tester_pid > 0:
                kill_tree(tester_pid)
            if judged:
                # A judge that did not finish its request cleanly may be stuck in it.
                self._judge_done(clean=outcome in _JUDGE_CLEAN)
            prog_status = self.prog_zygote.status(prog_pid) if outcome == "lost" else 0
            for fd in (req.out_r, req.err_r):
                self._drain(fd, req.out_r, job, state)
            if ctrl_r >= 0:
                os.close(ctrl_r)
            pair.close()
        return self._conclude(job, outcome, current, t_start, broken, prog_status, start,
                              verdicts, state)

    def _order_judge(self, job: dict[str, Any], pair: _Pair, start: int,
                     names: frozenset[str]) -> int:
        """Hand the judge this request's tests, a fresh report pipe and the program's channel.
        Returns the report pipe's read end."""
        assert self.judge is not None
        ctrl_r, ctrl_w = os.pipe2(os.O_CLOEXEC)
        order = {"start": start, "stop_on_first_failure": job["stop_on_first_failure"],
                 "tests": job["tests"], "setup": job["setup"], "names": sorted(names),
                 "memory_bytes": _tester_memory(job)}
        try:
            wire.send_msg(self.judge.sock, order, [ctrl_w, pair.t2p_w, pair.p2t_r])
        except OSError:
            pass  # the judge is gone; seen below as tester_died
        os.close(ctrl_w)
        return ctrl_r

    def _order_tester(self, job: dict[str, Any], req: _Request, pair: _Pair, start: int, *,
                      resumed: bool) -> tuple[int, int]:
        """A fresh test process for tests[start:] against the pair's program. Returns its pid
        and its report pipe's read end."""
        tester_pid, ctrl_r, sock = self._spawn_tester(req)
        order = {"start": start, "stop_on_first_failure": job["stop_on_first_failure"],
                 "tests": job["tests"], "setup": job["setup"], "resumed": resumed,
                 "memory_bytes": _tester_memory(job)}
        try:
            wire.send_msg(sock, order, [pair.t2p_w, pair.p2t_r])
        except OSError:
            pass  # the test process is gone; seen below as tester_died
        sock.close()
        return tester_pid, ctrl_r

    def _judge_done(self, *, clean: bool) -> None:
        judge = self.judge
        if judge is None:
            return
        judge.served += 1
        if not clean or judge.served >= _Judge.LIFETIME:
            self._drop_judge()

    def _supervise(self, job: dict[str, Any], req: _Request, ctrl_r: int, start: int,
                   verdicts: list[list[Any] | None], state: dict[str, Any],
                   ) -> tuple[str, int, float, str]:
        """Read the tests' side's reports against the clock until the run ends. Returns
        (outcome, the running test or -1 while loading, when it started, what broke)."""
        n = len(job["tests"])
        os.set_blocking(ctrl_r, False)
        reader = wire.FrameReader(ctrl_r, _CTRL_LIMIT, wire.loads_report)
        poller = select.poll()
        for fd in (req.out_r, req.err_r, ctrl_r):
            poller.register(fd, select.POLLIN)
        self.detach_old()  # while the program and its tests start
        timeout = float(job["timeout"])
        deadline = time.monotonic() + float(job["load_timeout"])
        current = -1  # -1 while loading
        t_start = time.monotonic()
        outcome = "running"
        broken = ""
        while outcome == "running":
            wait = deadline - time.monotonic()
            if wait <= 0:
                outcome = "timeout"
                break
            for fd, _ in poller.poll(wait * 1000):
                if fd != ctrl_r:
                    if self._drain(fd, req.out_r, job, state):
                        poller.unregister(fd)  # cannot happen while we hold a write end
                    continue
                try:
                    frames = reader.read()
                except wire.FrameError as exc:
                    if "closed" in str(exc):
                        outcome = "tester_died"
                    else:
                        outcome, broken = "protocol", str(exc)
                    break
                for raw in frames:
                    try:
                        msg = check_report(raw, current, n)
                    except Malformed as exc:
                        outcome, broken = "protocol", str(exc)
                        break
                    kind = msg[0]
                    # Tests run back to back: the next one starts when the last is done
                    # (or the program has loaded), so there is no "start" message.
                    if kind == "loaded":
                        current = start
                        t_start = time.monotonic()
                        deadline = t_start + timeout
                    elif kind == "done":
                        now = time.monotonic()
                        verdicts[msg[1]] = [msg[2], now - t_start, msg[3], msg[4]]
                        current = msg[1] + 1
                        t_start = now
                        deadline = now + timeout
                    elif kind == "flag":
                        state["flags"].add(msg[1])
                    elif kind in ("end", "lost", "fallback"):
                        outcome = kind
                    elif kind == "load_failed":
                        outcome = "load_failed"
                        self._load_failed(msg, verdicts, state)
                    elif kind == "setup_failed":
                        outcome = "setup_failed"
                        state["status"] = "SETUP_ERROR"
                        state["detail"] = f"{msg[1]}: {msg[2]}"
                        for i in range(len(verdicts)):
                            verdicts[i] = ["ERROR", 0.0, msg[1], msg[2]]
                    if outcome != "running":
                        break
                if outcome != "running":
                    break
        return outcome, current, t_start, broken

    def _conclude(self, job: dict[str, Any], outcome: str, current: int, t_start: float,
                  broken: str, prog_status: int, start: int,
                  verdicts: list[list[Any] | None], state: dict[str, Any]) -> int | None:
        """Verdicts for how the run ended; the index to resume at, if any."""
        timeout = float(job["timeout"])
        elapsed = time.monotonic() - t_start
        if outcome == "timeout":
            if current == -1:
                state["status"] = "LOAD_TIMEOUT"
                state["detail"] = f"loading the program took longer than {job['load_timeout']}s"
                for i in range(start, len(verdicts)):
                    verdicts[i] = ["TIMEOUT", 0.0, "", ""]
                return None
            idx = self._running(current, verdicts)
            if idx is None:
                return None
            verdicts[idx] = ["TIMEOUT", elapsed, "", f"test ran longer than {timeout}s"]
            return idx + 1
        if outcome == "lost":
            verdict, detail = describe_status(prog_status)
            if current == -1:
                if verdict == "ERROR":
                    state["status"], state["detail"] = "EXITED_EARLY", detail
                else:
                    state["status"], state["detail"] = "LOAD_CRASHED", detail
                for i in range(start, len(verdicts)):
                    verdicts[i] = [verdict, 0.0, "", detail]
                return None
            idx = self._running(current, verdicts)
            if idx is None:
                return None
            if verdict == "ERROR":
                state["status"], state["detail"] = "EXITED_EARLY", detail
            verdicts[idx] = [verdict, elapsed, "SystemExit" if verdict == "ERROR" else "", detail]
            return idx + 1
        if outcome == "tester_died":
            if current == -1:
                state["status"], state["detail"] = "LOAD_CRASHED", "test process died while loading"
                for i in range(start, len(verdicts)):
                    verdicts[i] = ["CRASHED", 0.0, "", "test process died"]
                return None
            idx = self._running(current, verdicts)
            if idx is None:
                return None
            verdicts[idx] = ["CRASHED", elapsed, "", "test process died"]
            return idx + 1
        if outcome == "protocol":
            detail = f"the test process broke the protocol ({broken}); the tests left are CRASHED"
            state["detail"] = detail
            for i in range(start, len(verdicts)):
                if verdicts[i] is None:
                    verdicts[i] = ["CRASHED", 0.0, "ProtocolError", detail]
            return None
        return None

    @staticmethod
    def _running(current: int, verdicts: list[list[Any] | None]) -> int | None:
        """The test that was running, if any (none once the last one is done)."""
        if 0 <= current < len(verdicts) and verdicts[current] is None:
            return current
        return None

    @staticmethod
    def _load_failed(msg: tuple[Any, ...], verdicts: list[list[Any] | None],
                     state: dict[str, Any]) -> None:
        _, kind, etype, emsg = msg
        status, verdict = {
            "syntax": ("SYNTAX_ERROR", "ERROR"),
            "memory": ("LOAD_MEMORY", "MEMORY"),
            "exit": ("EXITED_EARLY", "ERROR"),
        }.get(kind, ("LOAD_ERROR", "ERROR"))
        state["status"] = status
        state["detail"] = f"{etype}: {emsg}" if emsg else etype
        for i in range(len(verdicts)):
            if verdicts[i] is None:
                verdicts[i] = [verdict, 0.0, etype, emsg]

    @staticmethod
    def _drain(fd: int, out_r: int, job: dict[str, Any], state: dict[str, Any],
               final: bool = False) -> bool:
        """Read what the pipe holds (everything, when `final`); the request keeps the first
        `output_bytes`. Returns whether the pipe is at EOF."""
        buf_key, trunc_key = ("out", "out_trunc") if fd == out_r else ("err", "err_trunc")
        cap = int(job["output_bytes"])
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                return False
            except OSError:
                return True
            if not chunk:
                return True
            room = cap - len(state[buf_key])
            if room > 0:
                state[buf_key] += chunk[:room]
            if len(chunk) > max(room, 0):
                state[trunc_key] = True
            if not final:
                return False

    # -- the loop -------------------------------------------------------------------------

    def serve(self) -> None:
        """Jobs one at a time. Between two jobs (after the reply, so the caller does not wait
        for it): the last request's processes are gone, and the next one's are ready."""
        while True:
            try:
                if not self.settle():
                    os.write(2, b"acecoder: a request's process outlived it; worker retires\n")
                    return  # the pool reruns whatever it sends next on a fresh worker
                if self.next is None:
                    self.next = self.prepare()
            except Exception as exc:  # our bug, or the system's: never serve in doubt
                os.write(2, f"acecoder: between jobs: {type(exc).__name__}: {exc}\n".encode())
                return
            try:
                job = wire.recv_trusted(self.chan_in)
            except wire.FrameError:
                return
            try:
                result = self.run(job)
            except Exception as exc:  # our bug: report it, keep the channel in sync
                result = {"internal_error": f"{type(exc).__name__}: {exc}"}
            wire.send(self.chan_out, result)


def separate_uids(hello: dict[str, Any]) -> bool:
    """Whether children run under uids of their own (only a root worker can switch uids)."""
    return bool(hello.get("separate_uids", os.geteuid() == 0)) and os.geteuid() == 0


def main() -> None:
    # Keep the job channel off fds 0/1 so nothing printed by accident can corrupt it.
    chan_in = os.dup(0)
    chan_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # Whatever the jail tool added (PWD, container=...), programs see only this.
    for key in [k for k in os.environ if k not in ("PATH", "LANG")]:
        del os.environ[key]
    hello = wire.recv_trusted(chan_in)
    # One core per slot for the worker and everything it starts: the test and program
    # processes hand control back and forth on every call, and a hand-off on the same core
    # is much cheaper than a wake-up across cores. Programs cannot move (seccomp).
    cores = sorted(os.sched_getaffinity(0))
    if hello.get("pin", True) and len(cores) > 1:
        os.sched_setaffinity(0, {cores[int(hello["slot"]) % len(cores)]})
    confine.prctl(_PR_SET_CHILD_SUBREAPER, 1)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    seccomp.prepare()

    # The program zygote first, from the smallest heap that serves programs: its own module and
    # what programs commonly import, nothing of the worker's or the test harness's. A program
    # process is forked for every job, so each page here is paid for on every job.
    global program, harness, fs, literal, stdio
    from . import program

    for name in _PREIMPORT + list(hello.get("preimport", [])):
        try:
            importlib.import_module(name)
        except Exception:
            pass
    # Objects that exist now are never collected by children: they need not touch them.
    gc.collect()
    gc.freeze()
    shared = seccomp_placement(hello)[0]
    prog_specs, test_specs = child_specs(hello)
    prog_zygote = Zygote(_become_program, prog_specs, seccomp_shared=shared)

    # Then the test zygote, with the harness.
    from . import harness

    gc.collect()
    gc.freeze()
    test_zygote = Zygote(_become_tester, test_specs, seccomp_shared=shared)

    from . import fs, literal, stdio

    if hello.get("arrange_fs"):  # the zygotes share our mount namespace: they see it too
        fs.arrange(hide=hello["hide"], keep=hello["keep"],
                   tmp_bytes=int(hello.get("tmp_bytes", 256 << 20)))
    worker = Worker(hello, chan_in, chan_out, test_zygote, prog_zygote)
    wire.send(chan_out, {
        "ready": True, "separate_uids": worker.prog_uid is not None,
        "seccomp": worker.use_seccomp, "pid": os.getpid(),
    })
    worker.serve()


if __name__ == "__main__":
    main()
