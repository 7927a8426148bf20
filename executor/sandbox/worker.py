"""The jailed worker: one long-lived process per pool slot, started inside the jail.

For each program it starts two confined children and supervises them against the clock:

* the *program process*, forked by a zygote that is itself forked before the worker ever
  reads a job, so the program's memory holds no test and no expected value of any job;
* the *test process*, forked by the worker, which runs the tests and decides the verdicts.

The server talks to the worker over stdin/stdout (length-prefixed pickles); the worker never
prints. A test that hangs, crashes or runs out of memory costs that test only: both children
are killed and a fresh pair resumes at the next test.
"""

from __future__ import annotations

import gc
import importlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from . import confine, forking, seccomp, wire

# Imported only after the program zygote is forked (see main), so that it stays small: every
# page a zygote holds is copied into each child's page tables, and torn down again at its exit.
selectors: Any = None
shutil: Any = None
program: Any = None
harness: Any = None
purity: Any = None

_PR_SET_CHILD_SUBREAPER = 36
# Modules programs use most, imported once in the program zygote. Kept short on purpose: every
# module makes each fork dearer (more pages to map and tear down), and a program that imports
# something else pays for it itself. `ExecutorConfig.preimport` adds more.
_PREIMPORT = (
    "bisect collections copy functools heapq itertools math operator random re string typing"
).split()
_ENV_PATH = "/usr/local/bin:/usr/bin:/bin"
_TMP_ROOT = "/tmp/acecoder"
_TESTER_REUSE = 500  # programs one test process may serve before it is replaced
# Flags the test process may report (the others the worker decides itself).
HARNESS_FLAGS = frozenset({"OVERRIDDEN_EQUALITY"})
_forged: Any = None


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


# --------------------------------------------------------------------------- zygotes
#
# Children are forked by two small zygotes, never by the worker itself: after a fork every page
# is copy-on-write on *both* sides, and the worker, which does the per-job bookkeeping, would
# pay a page fault for each page it then touches. The zygotes do nothing but fork and reap.


def _zygote_loop(sock: socket.socket, become: Callable[[dict[str, Any], list[int]], None]) -> None:
    """Fork confined children on request. Runs forever in its own process."""
    confine.prctl(confine.PR_SET_PDEATHSIG, signal.SIGKILL)
    statuses: dict[int, int] = {}
    while True:
        try:
            msg, fds = wire.recv_msg(sock)
        except (wire.FrameError, OSError):
            os._exit(0)
        if msg[0] == "spawn":
            _reap_nowait(statuses)
            _prepare_inheritance(msg[1])
            pid = forking.fork()
            if pid == 0:
                sock.close()
                become(msg[1], fds)
                os._exit(0)
            for fd in fds:
                os.close(fd)
            wire.send_msg(sock, ("pid", pid))
        elif msg[0] == "reap":  # one-way: the worker has killed it and does not wait
            _reap_nowait(statuses)  # it may still be dying; the next spawn reaps it
        elif msg[0] == "status":
            pid = msg[1]
            status = statuses.pop(pid, None)
            if status is None:
                try:
                    _, status = os.waitpid(pid, 0)
                except ChildProcessError:
                    status = 0
            wire.send_msg(sock, ("status", status))


def _prepare_inheritance(spec: dict[str, Any]) -> None:
    """Enter the child's working directory and environment here, before the fork: the child
    inherits them, and the pages they touch are copied once in the zygote instead of in every
    child. Marks the spec when done; otherwise the child sets them itself (and reports why not)."""
    if "cwd" not in spec:
        return
    try:
        os.chdir(spec["cwd"])
        os.environ.update(spec["env"])
    except (OSError, ValueError):
        return
    spec["inherited"] = True


def _exited_children() -> Iterator[tuple[int, int]]:
    """(pid, status) of every child that has exited, without waiting for the others."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status


def _reap_nowait(statuses: dict[int, int]) -> None:
    """Collect children that have exited, remembering the last few exit statuses."""
    for pid, status in _exited_children():
        statuses[pid] = status
        if len(statuses) > 64:
            del statuses[next(iter(statuses))]


def _die(what: str, exc: BaseException) -> None:
    try:
        os.write(2, f"acecoder: {what} failed: {exc!r}\n".encode())
    finally:
        os._exit(70)


def _become_program(spec: dict[str, Any], fds: list[int]) -> None:
    """In a fresh child of the program zygote: confine, then load and serve the program."""
    try:
        rpc_in, rpc_out, out_w, err_w = fds
        devnull = os.open(os.devnull, os.O_RDONLY)
        inherited = spec.get("inherited", False)
        confine.confine(uid=spec["uid"], limits=spec["limits"],
                        cwd=None if inherited else spec["cwd"],
                        fds=[devnull, out_w, err_w, rpc_in, rpc_out],
                        env={} if inherited else spec["env"], use_seccomp=spec["seccomp"])
    except BaseException as exc:  # never fall back into the zygote's loop
        _die("confining the program", exc)
    try:
        program.main(3, 4, spec["program"], spec["setup"])
    finally:
        os._exit(0)


def _become_tester(spec: dict[str, Any], fds: list[int]) -> None:
    """In a fresh child of the test zygote: confine, then run the jobs the worker sends."""
    try:
        ctrl_w, out_w, err_w, jobs = fds
        devnull = os.open(os.devnull, os.O_RDONLY)
        confine.confine(uid=spec["uid"], limits=spec["limits"], cwd="/",
                        fds=[devnull, out_w, err_w, ctrl_w, jobs], env=spec["env"],
                        use_seccomp=spec["seccomp"])
    except BaseException as exc:
        _die("starting the test process", exc)
    try:
        harness.serve(ctrl=3, jobs=4)
    finally:
        os._exit(0)


class Zygote:
    def __init__(self, become: Callable[[dict[str, Any], list[int]], None]) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = forking.fork()
        if pid == 0:
            parent.close()
            try:
                _zygote_loop(child, become)
            finally:
                os._exit(0)
        child.close()
        self.sock = parent
        self.pid = pid

    def spawn(self, spec: dict[str, Any], fds: list[int]) -> int:
        wire.send_msg(self.sock, ("spawn", spec), fds)
        msg, _ = wire.recv_msg(self.sock)
        return int(msg[1])

    def reap(self, pid: int) -> None:
        """Have a killed child reaped, without waiting for it."""
        wire.send_msg(self.sock, ("reap", pid))

    def status(self, pid: int) -> int:
        """Exit status of a child (waits for it: kill it first)."""
        wire.send_msg(self.sock, ("status", pid))
        msg, _ = wire.recv_msg(self.sock)
        return int(msg[1])


# --------------------------------------------------------------------------- supervision


def _describe_status(status: int) -> tuple[str, str]:
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


def _kill_tree(pid: int) -> None:
    """SIGKILL a confined child and its process group (which its descendants cannot leave)."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class _Tester:
    """A live test process and the worker's ends of its channels."""

    def __init__(self, pid: int, key: tuple[Any, ...], sock: socket.socket,
                 ctrl_r: int, out_r: int, err_r: int, out_w: int, err_w: int) -> None:
        self.pid = pid
        self.key = key
        self.sock = sock
        self.ctrl_r = ctrl_r
        self.out_r = out_r
        self.err_r = err_r
        self.out_w = out_w  # handed to each program process, so its output lands here too
        self.err_w = err_w
        self.jobs = 0
        self.suite: tuple[tuple[str, ...], str] | None = None  # the suite it last compiled


class Worker:
    def __init__(self, hello: dict[str, Any], chan_in: int, chan_out: int,
                 test_zygote: Zygote, prog_zygote: Zygote) -> None:
        self.slot = int(hello["slot"])
        self.chan_in = chan_in
        self.chan_out = chan_out
        separate = bool(hello.get("separate_uids", os.geteuid() == 0)) and os.geteuid() == 0
        self.use_seccomp = bool(hello.get("seccomp", True)) and seccomp.supported()
        uid_base = int(hello.get("uid_base", 61000))
        self.prog_uid = uid_base + 2 * self.slot if separate else None
        self.test_uid = uid_base + 2 * self.slot + 1 if separate else None
        self.seq = 0
        self.stale_dirs: list[str] = []
        os.makedirs(_TMP_ROOT, mode=0o755, exist_ok=True)
        self.test_zygote = test_zygote
        self.prog_zygote = prog_zygote
        self.tester: _Tester | None = None

    # -- one job ------------------------------------------------------------------------

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        self._cleanup()
        n = len(job["tests"])
        verdicts: list[list[Any] | None] = [None] * n
        state: dict[str, Any] = {"status": "OK", "detail": "", "out": bytearray(),
                                 "err": bytearray(), "out_trunc": False, "err_trunc": False,
                                 "flags": set()}
        self.seq += 1
        tmp = f"{_TMP_ROOT}/{self.slot}-{self.seq}"
        os.mkdir(tmp, 0o700)
        if self.prog_uid is not None:
            os.chown(tmp, self.prog_uid, self.prog_uid)
        # Removed at the next job, once the killed processes are surely gone.
        self.stale_dirs.append(tmp)
        start = 0
        while start < n:
            nxt = self._run_pair(job, tmp, start, verdicts, state)
            if nxt is None or nxt >= n:
                break
            if job["stop_on_first_failure"] and any(
                    v is not None and v[0] != "PASSED" for v in verdicts):
                break
            start = nxt
        for i, v in enumerate(verdicts):
            if v is None:
                verdicts[i] = ["SKIPPED", 0.0, "", ""]
        flags: set[str] = state["flags"]
        if state["status"] == "EXITED_EARLY":
            flags.add("EXITED_EARLY")
        if forged_output(state["out"]) or forged_output(state["err"]):
            flags.add("FORGED_OUTPUT")
        return {
            "status": state["status"], "detail": state["detail"], "verdicts": verdicts,
            "stdout": bytes(state["out"]), "stderr": bytes(state["err"]),
            "stdout_truncated": state["out_trunc"], "stderr_truncated": state["err_trunc"],
            "duration": time.monotonic() - started, "flags": sorted(flags),
        }

    def _cleanup(self) -> None:
        """Reap orphans reparented to us, and remove the previous jobs' directories."""
        for pid, _ in _exited_children():
            if pid in (self.prog_zygote.pid, self.test_zygote.pid):
                raise RuntimeError("a zygote died")
        for d in self.stale_dirs:
            shutil.rmtree(d, ignore_errors=True)
        self.stale_dirs.clear()

    def _limits(self, job: dict[str, Any], memory_bytes: int) -> confine.Limits:
        total = job["timeout"] * (len(job["tests"]) + 1) + job["load_timeout"]
        return confine.Limits(
            memory_bytes=memory_bytes, cpu_seconds=int(total) + 2,
            file_bytes=job["file_bytes"], open_files=job["open_files"],
            processes=job["processes"],
        )

    def _tester_for(self, job: dict[str, Any]) -> tuple[_Tester, bool]:
        """The live test process if it may run this suite (the very same suite, or any pure
        suite when it has only run pure ones; see purity.py) and its last job ended cleanly;
        else a fresh one. Returns (tester, whether it must be sent the suite)."""
        suite = (tuple(job["tests"]), job["setup"])
        key = ("pure",) if purity.is_pure(*suite) else suite
        t = self.tester
        if t is not None and t.key == key and t.jobs < _TESTER_REUSE:
            fresh_suite = t.suite != suite
            t.suite = suite
            return t, fresh_suite
        self._drop_tester()
        ctrl_r, ctrl_w = os.pipe2(os.O_CLOEXEC)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # A test process lives across jobs, so no CPU-time limit: it would add up over the jobs
        # and kill it mid-test one day. Each test's wall-clock deadline bounds it instead.
        limits = self._limits(job, max(job["memory_bytes"], 1 << 30))._replace(cpu_seconds=1 << 30)
        spec = {"uid": self.test_uid, "limits": limits, "env": {"HOME": "/"},
                "seccomp": self.use_seccomp}
        pid = self.test_zygote.spawn(spec, [ctrl_w, out_w, err_w, theirs.fileno()])
        os.close(ctrl_w)
        theirs.close()
        for fd in (out_r, err_r):
            os.set_blocking(fd, False)
        self.tester = _Tester(pid, key, mine, ctrl_r, out_r, err_r, out_w, err_w)
        self.tester.suite = suite
        return self.tester, True

    def _drop_tester(self) -> None:
        t = self.tester
        if t is None:
            return
        self.tester = None
        _kill_tree(t.pid)
        self.test_zygote.reap(t.pid)
        t.sock.close()
        for fd in (t.ctrl_r, t.out_r, t.err_r, t.out_w, t.err_w):
            os.close(fd)

    def _run_pair(self, job: dict[str, Any], tmp: str, start: int,
                  verdicts: list[list[Any] | None], state: dict[str, Any]) -> int | None:
        """Run tests[start:] against a fresh program process. Returns the index to resume at
        with a fresh program (and test) process, or None when the job is finished."""
        tester, fresh = self._tester_for(job)
        t2p_r, t2p_w = os.pipe2(os.O_CLOEXEC)
        p2t_r, p2t_w = os.pipe2(os.O_CLOEXEC)
        prog_spec = {
            "uid": self.prog_uid, "limits": self._limits(job, job["memory_bytes"]), "cwd": tmp,
            "env": {"HOME": tmp, "TMPDIR": tmp}, "seccomp": self.use_seccomp,
            "program": job["program"], "setup": job["setup"],
        }
        prog_pid = self.prog_zygote.spawn(prog_spec, [t2p_r, p2t_w, tester.out_w, tester.err_w])
        order: dict[str, Any] = {"start": start,
                                 "stop_on_first_failure": job["stop_on_first_failure"]}
        if fresh:
            order.update(tests=job["tests"], setup=job["setup"])
        try:
            wire.send_msg(tester.sock, order, [t2p_w, p2t_r])
        except OSError:
            pass  # the test process is gone; seen below as tester_died
        for fd in (t2p_r, p2t_w, t2p_w, p2t_r):
            os.close(fd)
        ctrl_r, out_r, err_r = tester.ctrl_r, tester.out_r, tester.err_r

        sel = selectors.DefaultSelector()
        for fd in (out_r, err_r):
            sel.register(fd, selectors.EVENT_READ)
        sel.register(ctrl_r, selectors.EVENT_READ)
        timeout = float(job["timeout"])
        deadline = time.monotonic() + float(job["load_timeout"])
        current = -1  # -1 while loading
        t_start = time.monotonic()
        outcome = "running"
        prog_status = 0
        try:
            while outcome == "running":
                wait = deadline - time.monotonic()
                if wait <= 0:
                    outcome = "timeout"
                    break
                for key, _ in sel.select(wait):
                    fd = key.fd
                    if fd != ctrl_r:
                        self._drain(fd, out_r, job, state)
                        continue
                    try:
                        msg = wire.recv_plain(ctrl_r, 1 << 20)
                    except wire.FrameError:
                        outcome = "tester_died"
                        break
                    kind = msg[0]
                    # Tests run back to back: the next one starts when the last is done
                    # (or the program has loaded), so there is no "start" message to wait for.
                    if kind == "loaded":
                        current = start
                        t_start = time.monotonic()
                        deadline = t_start + timeout
                    elif kind == "done":
                        now = time.monotonic()
                        verdicts[int(msg[1])] = [msg[2], now - t_start, msg[3], msg[4]]
                        current = int(msg[1]) + 1
                        t_start = now
                        deadline = now + timeout
                    elif kind == "flag":
                        if msg[1] in HARNESS_FLAGS:
                            state["flags"].add(msg[1])
                    elif kind == "end":
                        outcome = "end"
                    elif kind == "lost":
                        outcome = "lost"
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
        finally:
            _kill_tree(prog_pid)
            # Unless its exit status is needed, the zygote reaps it before its next fork: it is
            # still dying now, and a message would only wake the zygote too early to find it dead.
            if outcome == "lost":
                prog_status = self.prog_zygote.status(prog_pid)
            for fd in (out_r, err_r):
                self._drain(fd, out_r, job, state, final=True)
            sel.close()
            if outcome in ("end", "load_failed", "setup_failed"):
                tester.jobs += 1  # clean: it may serve the next program with these tests
            else:
                self._drop_tester()

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
            verdict, detail = _describe_status(prog_status)
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
               final: bool = False) -> None:
        buf_key, trunc_key = ("out", "out_trunc") if fd == out_r else ("err", "err_trunc")
        cap = int(job["output_bytes"])
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                return
            except OSError:
                return
            if not chunk:
                return
            room = cap - len(state[buf_key])
            if room > 0:
                state[buf_key] += chunk[:room]
            if len(chunk) > max(room, 0):
                state[trunc_key] = True
            if not final:
                return

    # -- the loop -------------------------------------------------------------------------

    def serve(self) -> None:
        while True:
            try:
                job = wire.recv_trusted(self.chan_in)
            except wire.FrameError:
                return
            try:
                result = self.run(job)
            except Exception as exc:  # our bug: report it, keep the channel in sync
                result = {"internal_error": f"{type(exc).__name__}: {exc}"}
            wire.send(self.chan_out, result)


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
    # is much cheaper than a wake-up across cores.
    cores = sorted(os.sched_getaffinity(0))
    if hello.get("pin", True) and len(cores) > 1:
        os.sched_setaffinity(0, {cores[int(hello["slot"]) % len(cores)]})
    confine.prctl(_PR_SET_CHILD_SUBREAPER, 1)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    seccomp.prepare()

    # The program zygote first, from the smallest heap that serves programs: its own module and
    # what programs commonly import, nothing of the worker's or the test harness's. A program
    # process is forked for every job, so each page here is paid for on every job.
    global selectors, shutil, program, harness, purity
    from . import program

    for name in _PREIMPORT + list(hello.get("preimport", [])):
        try:
            importlib.import_module(name)
        except Exception:
            pass
    # Objects that exist now are never collected by children: they need not touch them.
    gc.collect()
    gc.freeze()
    prog_zygote = Zygote(_become_program)

    # Then the test zygote, with the harness. Test processes are reused from job to job (see
    # purity.py), so their size matters much less.
    from . import harness

    gc.collect()
    gc.freeze()
    test_zygote = Zygote(_become_tester)

    from . import purity
    import selectors
    import shutil

    from . import fs

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
