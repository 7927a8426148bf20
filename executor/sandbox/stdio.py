"""Stdio tests: for each test a fresh program process runs the program whole on the test's input
(a sealed in-memory file of its own), and the worker compares its output with the expected
output, which never leaves the worker. The verdict comes from the exit status first; only an
exit with status 0 lets the checker compare."""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import selectors
import signal
import time
from typing import Any

from . import checkers, program, wire
from .procs import describe_status, kill_tree


def run(w: Any, job: dict[str, Any], req: Any, verdicts: list[list[Any] | None],
        state: dict[str, Any]) -> None:
    """Run a stdio request's tests (`w` is the Worker, `req` the request's _Request, see
    worker.py). Each test: a fresh program process runs the program whole on the test's input;
    the worker reads its output and compares it with the expected output, which never leaves
    the worker. The response's stdout is the output of the first test that did not pass (or
    of the last test)."""
    if req.spare is not None:  # a program process for assert tests: not this request's
        w._drop_pair(req.spare)
        req.spare = None
    check = checkers.parse(job["checker"])
    first_bad: bytes | None = None
    output = b""
    for i, given in enumerate(job["tests"]):
        verdict, output = _one(w, job, req, i, given, state)
        if state["status"] == "SYNTAX_ERROR":
            for k in range(i, len(verdicts)):
                verdicts[k] = ["ERROR", 0.0, "SyntaxError", state["detail"]]
            break
        if verdict[0] == "EXITED":  # exit status 0: the checker decides
            ok = check(job["expected"][i], output.decode("utf-8", errors="replace"))
            verdict[0] = "PASSED" if ok else "FAILED"
            if not ok:
                verdict[3] = ("the output differs from the expected output "
                              f"(checker {check.spec})")
        verdicts[i] = verdict
        if verdict[0] != "PASSED":
            first_bad = output if first_bad is None else first_bad
            if job["stop_on_first_failure"]:
                break
    shown = output if first_bad is None else first_bad
    cap = int(job["output_bytes"])
    state["out"] = bytearray(shown[:cap])
    state["out_trunc"] = len(shown) > cap

def _one(w: Any, job: dict[str, Any], req: Any, i: int, given: str,
         state: dict[str, Any]) -> tuple[list[Any], bytes]:
    """Run test i; returns its verdict entry (EXITED when the program exited with status 0:
    the caller compares) and its output."""
    timeout = float(job["timeout"])
    limit = int(job["output_limit"])
    stdin = sealed_file(given.encode("utf-8", errors="surrogateescape"))
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    job_r, job_w = os.pipe2(os.O_CLOEXEC)
    started = time.monotonic()
    pid = w.prog_zygote.spawn(w.stdio_spec, [job_r, stdin, out_w, req.err_w])
    req.pids.append(pid)
    for fd in (job_r, stdin, out_w):
        os.close(fd)
    frame = {**w._job_frame(job, req.tmp), "cpu_seconds": math.ceil(timeout) + 1}
    try:
        wire.send(job_w, frame)
    except OSError:
        pass  # gone already: its exit status says why
    os.close(job_w)
    os.set_blocking(out_r, False)
    out = bytearray()
    outcome = "running"
    sel = selectors.DefaultSelector()
    pidfd = os.pidfd_open(pid)
    try:
        sel.register(out_r, selectors.EVENT_READ)
        sel.register(req.err_r, selectors.EVENT_READ)
        sel.register(pidfd, selectors.EVENT_READ)
        deadline = started + timeout
        exited = eof = False
        while not (exited and eof) and outcome == "running":
            wait = deadline - time.monotonic()
            if wait <= 0:
                outcome = "timeout"
                break
            for key, _ in sel.select(wait):
                if key.fd == pidfd:
                    exited = True
                    sel.unregister(pidfd)
                elif key.fd == out_r:
                    chunk = os.read(out_r, 1 << 16)
                    if not chunk:
                        eof = True
                        sel.unregister(out_r)
                    elif len(out) + len(chunk) > limit:
                        outcome = "output"
                        break
                    else:
                        out += chunk
                else:
                    w._drain(key.fd, req.out_r, job, state)
            if exited and not eof:  # a process it left holds its output: not waited for
                kill_tree(pid)
                with contextlib.suppress(BlockingIOError, OSError):
                    while chunk := os.read(out_r, 1 << 16):
                        if len(out) + len(chunk) > limit:
                            break
                        out += chunk
                eof = True
    finally:
        kill_tree(pid)
        if w.uids:  # nothing of this run outlives it, even what left its group
            w._kill_request_processes()
        sel.close()
        os.close(pidfd)
        os.close(out_r)
    elapsed = time.monotonic() - started
    status, peak_kb, cpu = w.prog_zygote.ended(pid)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    usage = [cpu, peak_kb, code]
    if outcome == "timeout":
        return ["TIMEOUT", elapsed, "", f"test ran longer than {timeout}s", *usage], bytes(out)
    if outcome == "output":
        return ["ERROR", elapsed, "OutputLimitExceeded",
                f"the program wrote more than {limit} bytes", *usage], bytes(out)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= frame["cpu_seconds"]):
            return ["TIMEOUT", elapsed, "", "CPU time limit exceeded", *usage], bytes(out)
        verdict, detail = describe_status(status)
        return [verdict, elapsed, "", detail, *usage], bytes(out)
    code = os.WEXITSTATUS(status)
    if code == program.EXIT_SYNTAX:
        state["status"] = "SYNTAX_ERROR"
        state["detail"] = "the program does not compile (see stderr)"
        return ["ERROR", elapsed, "SyntaxError", state["detail"], *usage], bytes(out)
    if code == program.EXIT_MEMORY:
        return ["MEMORY", elapsed, "MemoryError", "", *usage], bytes(out)
    if code != 0:
        return ["ERROR", elapsed, "ExitStatus", f"program exited with status {code}",
                *usage], bytes(out)
    return ["EXITED", elapsed, "", "", *usage], bytes(out)


def sealed_file(data: bytes) -> int:
    """A read-only descriptor of an in-memory file holding `data`, sealed against writes (a
    test's input: the program gets its own copy, and cannot change it for anyone)."""
    fd = os.memfd_create("stdin", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW
                    | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
        return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(fd)
