"""Stdio tests: for each test a fresh program process runs the program whole on the test's input
(a sealed in-memory file of its own), and the worker compares its output with the expected
output, which never leaves the worker. The verdict comes from the exit status first; only an
exit with status 0 lets the checker compare."""

from __future__ import annotations

import collections
import contextlib
import fcntl
import math
import os
import select
import signal
import stat
import time
from typing import Any

from .. import languages, pch
from . import checkers, program, wire
from .procs import describe_status, kill_tree, native_frame


def run(w: Any, job: dict[str, Any], req: Any, verdicts: list[list[Any] | None],
        state: dict[str, Any]) -> None:
    """Run a stdio request's tests (`w` is the Worker, `req` the request's _Request, see
    worker.py). A program in another language than Python is built first, once (its source
    written and compiled by a confined process like any run). Each test: a fresh program
    process runs the program whole on the test's input; the worker reads its output and
    compares it with the expected output, which never leaves the worker. The response's stdout
    is the output of the first test that did not pass (or of the last test)."""
    if req.spare is not None:  # a program process for assert tests: not this request's
        w._drop_pair(req.spare)
        req.spare = None
    lang = languages.LANGUAGES[job.get("language", "python")]
    if lang.name != "python" and not _build(w, job, req, lang, state):
        for k in range(len(verdicts)):
            verdicts[k] = ["ERROR", 0.0, "CompileError", state["detail"][:_DETAIL]]
        return
    check = checkers.parse(job["checker"])
    first_bad: bytes | None = None
    output = b""
    for i, given in enumerate(job["tests"]):
        verdict, output = _one(w, job, req, lang, given, state)
        if state["status"] == "SYNTAX_ERROR":
            for k in range(i, len(verdicts)):
                verdicts[k] = ["ERROR", 0.0, "SyntaxError", state["detail"]]
            break
        if verdict[0] == "EXITED" and check.kind == "custom":
            verdict[0], verdict[2], verdict[3] = _custom(w, job, req, state, given,
                                                         job["expected"][i], output)
        elif verdict[0] == "EXITED":  # exit status 0: the checker decides
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


_DETAIL = 16 * 1024  # compiler output kept in the status detail
_COMPILER_OUTPUT = 1 << 20  # a compiler that writes more is stopped: a compile error


class BuildCache:
    """What the compiler made from a source seen lately (verl's SandboxFusion calls send one
    test per request, so the same program arrives again for each of its tests), bounded in
    bytes, least recently used dropped first.

    Why a later request may use what an earlier one compiled: a build is a function of the
    source, the toolchain and the flags alone. The compiler runs in a directory holding the
    source and nothing else (no test, no input, nothing of the request but the source), with a
    fixed environment; the files are read by the worker the moment the compiler's processes
    are gone, before any run of the program, and each later request gets its own fresh copy in
    its own directory. Only successful builds are kept: a failure can come from the moment
    (a limit, the machine's load), a binary cannot. What a build may still carry of its moment
    (`__TIME__`, the compiling job's directory name in assertion messages) is no request's data.
    """

    def __init__(self, max_bytes: int = 128 << 20) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self._entries: collections.OrderedDict[str, dict[str, tuple[bytes, int]]] = (
            collections.OrderedDict())

    key = staticmethod(languages.build_key)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> dict[str, tuple[bytes, int]] | None:
        files = self._entries.get(key)
        if files is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return files

    def put(self, key: str, files: dict[str, tuple[bytes, int]]) -> None:
        size = sum(len(data) for data, _ in files.values())
        if key in self._entries or size > self.max_bytes // 8:  # one build evicts no others
            return
        self._entries[key] = files
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self.bytes -= sum(len(data) for data, _ in old.values())


def _harvest(directory: str, source: str, limit: int) -> dict[str, tuple[bytes, int]] | None:
    """The regular files the compiler left at the top of `directory` (the source aside), with
    their permission bits; None when there is anything else to keep (a link, or more than
    `limit` bytes). Opened without following links: the directory belongs to the program's
    uid."""
    files: dict[str, tuple[bytes, int]] = {}
    total = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name == source or entry.is_dir(follow_symlinks=False):
                continue  # a toolchain's own cache directory (Go's) is not the build
            try:
                fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                return None
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode) or total + st.st_size > limit:
                    return None
                data = f.read(limit - total + 1)
            total += len(data)
            if total > limit:
                return None
            files[entry.name] = (data, stat.S_IMODE(st.st_mode) & 0o755)
    return files


def _plain_names(files: Any) -> bool:
    """A build's files as _harvest makes them: plain names at the top of a directory, bytes
    and permission bits."""
    return isinstance(files, dict) and all(
        isinstance(name, str) and name not in ("", ".", "..") and "/" not in name
        and "\0" not in name and isinstance(v, tuple) and len(v) == 2
        and isinstance(v[0], bytes) and isinstance(v[1], int) for name, v in files.items())


def _place(directory: str, files: dict[str, tuple[bytes, int]], uid: int | None) -> None:
    """Write a build's files into a fresh job directory (nothing has run there yet), owned by
    the program's uid as the compiler would have left them."""
    for name, (data, mode) in files.items():
        fd = os.open(os.path.join(directory, name),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            wire.write_all(fd, data)
            if uid is not None:
                os.fchown(fd, uid, uid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)


def compile_argv(lang: Any, directory: str, memory_mb: int) -> list[str]:
    """The compiler's command line for a program in `directory`: C++ gets the precompiled
    <bits/stdc++.h> first on its include path where it is ready (see executor/pch.py)."""
    argv = languages.command(lang, languages.compile_template(lang), directory=directory,
                             memory_mb=memory_mb)
    if lang.name == "cpp" and (headers := pch.ready(lang)) is not None:
        argv += ["-I", headers]
    return argv


def _build(w: Any, job: dict[str, Any], req: Any, lang: Any, state: dict[str, Any]) -> bool:
    """Write the program's source in its directory and compile it (once per request), in a
    confined process under the compiler's own limits; or, when the same source was built
    lately, place that build's files there (see BuildCache). False, with the status
    COMPILE_ERROR and the compiler's trimmed output, when the compile fails."""
    key = BuildCache.key(lang, job["program"])
    shared = job.get("build")  # another worker's build of the same source, from the pool
    if shared is not None and shared[0] == key and w.builds.get(key) is None \
            and _plain_names(shared[1]):
        w.builds.put(key, shared[1])
    cached = w.builds.get(key)
    if cached is not None:
        started = time.monotonic()
        source = job["program"].encode("utf-8", errors="surrogateescape")
        _place(req.tmp, {lang.source: (source, 0o600), **cached}, w.prog_uid)
        state["compile_seconds"] = time.monotonic() - started
        return True
    frame = {**w._job_frame(job, req.tmp), "files": {lang.source: job["program"]},
             "argv": compile_argv(lang, req.tmp, job["compile_memory_bytes"] >> 20),
             "memory_bytes": int(job["compile_memory_bytes"]),
             "cpu_seconds": math.ceil(job["compile_timeout"]) + 1,
             "data_memory": lang.compile[:1] == ("javac",)}
    frame["env"].update(languages.environment(lang, req.tmp))
    timeout = float(job["compile_timeout"])
    ran = _launch(w, job, req, state, frame, b"", timeout=timeout, limit=_COMPILER_OUTPUT,
                  merge=True)
    if lang.compile:
        state["compile_seconds"] = ran.elapsed
    if ran.outcome == "running" and os.WIFEXITED(ran.status) and os.WEXITSTATUS(ran.status) == 0:
        files = _harvest(req.tmp, lang.source, w.builds.max_bytes // 8)
        if files:
            w.builds.put(key, files)
            state["build"] = (key, files)  # for the pool to hand to the other workers
        return True
    text = ran.out.decode("utf-8", errors="replace").replace(req.tmp + "/", "").strip()
    if ran.outcome == "timeout" or _cpu_killed(ran, frame):
        why = f"the compiler ran longer than {timeout}s"
    elif ran.outcome == "output":
        why = f"the compiler wrote more than {_COMPILER_OUTPUT} bytes"
    elif os.WIFSIGNALED(ran.status):
        why = f"the compiler was {describe_status(ran.status)[1]}"
    else:
        why = f"the compiler exited with status {os.WEXITSTATUS(ran.status)}"
    state["status"] = "COMPILE_ERROR"
    state["detail"] = f"{why}:\n{text}" if text else why
    return False


_CHECKER_OUTPUT = 64 * 1024  # what a custom checker may write (its comments)


def _custom(w: Any, job: dict[str, Any], req: Any, state: dict[str, Any], given: str,
            expected: str, output: bytes) -> tuple[str, str, str]:
    """A custom checker's verdict on one test's output: (verdict, error type, message). It runs
    as untrusted code, confined under the tests' uid once the program's processes are gone;
    only its exit status decides."""
    texts = [given, output.decode("utf-8", errors="surrogateescape"), expected]
    frame = {**w._job_frame(job, "/"), "program": job["checker_source"],
             "checker_texts": texts, "cpu_seconds": math.ceil(job["timeout"]) + 2,
             "memory_bytes": max(int(job["memory_bytes"]), 1 << 30)}
    frame["env"] = {"HOME": "/", "TMPDIR": "/nonexistent"}
    ran = _launch(w, job, req, state, frame, b"", timeout=float(job["timeout"]) + 1.0,
                  limit=_CHECKER_OUTPUT, merge=True, spec=w.checker_spec)
    said = ran.out.decode("utf-8", errors="replace").strip()[:_DETAIL]
    if ran.outcome == "running" and os.WIFEXITED(ran.status):
        code = os.WEXITSTATUS(ran.status)
        if code == 0:
            return "PASSED", "", ""
        if code in (1, 2):
            return "FAILED", "", f"the checker rejected the output: {said}" if said else (
                "the checker rejected the output")
        if code == program.EXIT_SYNTAX:
            return "ERROR", "CheckerError", f"the checker does not compile: {said}"
        if code == program.EXIT_RAISED:
            return "ERROR", "CheckerError", f"the checker raised: {said}"
        why = f"the checker exited with status {code}"
    elif ran.outcome == "timeout" or _cpu_killed(ran, frame):
        why = "the checker ran past its time limit"
    elif ran.outcome == "output":
        why = f"the checker wrote more than {_CHECKER_OUTPUT} bytes"
    else:
        why = f"the checker was {describe_status(ran.status)[1]}"
    return "ERROR", "CheckerError", f"{why}: {said}" if said else why


class _Ran:
    """How one confined run went: "running" (it ended by itself), "timeout" or "output"."""

    def __init__(self, outcome: str, elapsed: float, status: int, peak_kb: int, cpu: float,
                 out: bytes) -> None:
        self.outcome, self.elapsed, self.status = outcome, elapsed, status
        self.peak_kb, self.cpu, self.out = peak_kb, cpu, out


def _cpu_killed(ran: _Ran, frame: dict[str, Any]) -> bool:
    if not os.WIFSIGNALED(ran.status):
        return False
    sig = os.WTERMSIG(ran.status)
    return sig == signal.SIGXCPU or (sig == signal.SIGKILL and ran.cpu >= frame["cpu_seconds"])


def _one(w: Any, job: dict[str, Any], req: Any, lang: Any, given: str,
         state: dict[str, Any]) -> tuple[list[Any], bytes]:
    """Run one test; returns its verdict entry (EXITED when the program exited with status 0:
    the caller compares) and its output."""
    timeout = float(job["timeout"])
    limit = int(job["output_limit"])
    frame = {**w._job_frame(job, req.tmp), "cpu_seconds": math.ceil(timeout) + 1}
    memory_mb = int(job["memory_bytes"]) >> 20
    if lang.name != "python":
        frame.update(files={}, data_memory=lang.data_memory,
                     argv=languages.command(lang, lang.run, directory=req.tmp,
                                            memory_mb=memory_mb))
        frame["env"].update(languages.environment(lang, req.tmp))
        if _heap_flag(lang):
            # The runtime's own heap limit (-Xmx, --max-old-space-size) is the limit; what it
            # maps besides (code, thread stacks, metadata) gets room up to this backstop.
            frame["memory_bytes"] = 2 * int(job["memory_bytes"]) + (1 << 30)
    native = lang.name != "python" and w.native_runs
    ran = _launch(w, job, req, state, frame, given.encode("utf-8", errors="surrogateescape"),
                  timeout=timeout, limit=limit, merge=False,
                  spec=w.native_spec if native else None, native=native)
    elapsed, status, out = ran.elapsed, ran.status, ran.out
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    usage = [ran.cpu, ran.peak_kb, code]
    if ran.outcome == "timeout":
        return ["TIMEOUT", elapsed, "", f"test ran longer than {timeout}s", *usage], out
    if ran.outcome == "output":
        return ["ERROR", elapsed, "OutputLimitExceeded",
                f"the program wrote more than {limit} bytes", *usage], out
    if _cpu_killed(ran, frame):
        return ["TIMEOUT", elapsed, "", "CPU time limit exceeded", *usage], out
    resident_mb = memory_mb + lang.runtime_mb
    if ran.peak_kb > resident_mb << 10:
        # What it really held, whatever the rlimits let through (shared mappings, buffers off
        # the runtime's heap): a run past its limit is MEMORY, even one that printed the answer.
        return ["MEMORY", elapsed, "MemoryError",
                f"the program held {ran.peak_kb >> 10} MiB resident, past its limit of "
                f"{resident_mb} MiB", *usage], out
    if code == 0:
        return ["EXITED", elapsed, "", "", *usage], out
    if lang.name == "python":
        if code == program.EXIT_SYNTAX:
            state["status"] = "SYNTAX_ERROR"
            state["detail"] = "the program does not compile (see stderr)"
            return ["ERROR", elapsed, "SyntaxError", state["detail"], *usage], out
        if code == program.EXIT_MEMORY:
            return ["MEMORY", elapsed, "MemoryError", "", *usage], out
    elif code == lang.memory_exit or (  # the runtime says so, or it failed at its limit
            ran.peak_kb >= 0.8 * (memory_mb << 10)
            and (os.WIFSIGNALED(status) or not _heap_flag(lang))):
        return ["MEMORY", elapsed, "MemoryError",
                f"the program used {ran.peak_kb // 1024} MiB of its {memory_mb} MiB", *usage], out
    if os.WIFSIGNALED(status):
        verdict, detail = describe_status(status)
        return [verdict, elapsed, "", detail, *usage], out
    if code == program.EXIT_LAUNCH and lang.name != "python":
        return ["ERROR", elapsed, "LaunchError", "the program could not be started (see stderr)",
                *usage], out
    return ["ERROR", elapsed, "ExitStatus", f"program exited with status {code}", *usage], out


def _heap_flag(lang: Any) -> bool:
    """Does the runtime take the memory limit as its own heap limit (-Xmx, V8's
    --max-old-space-size)? Then running out is its own error, and RLIMIT_DATA a backstop."""
    return any("{mem}" in part for part in lang.run)


def _launch(w: Any, job: dict[str, Any], req: Any, state: dict[str, Any],
            frame: dict[str, Any], stdin_data: bytes, *, timeout: float, limit: int,
            merge: bool, spec: dict[str, Any] | None = None, native: bool = False) -> _Ran:
    """Spawn a confined program process with `frame` as its job, `stdin_data` as its input
    (a sealed file of its own) and a pipe of its own as its output (`merge`: its stderr too,
    else the request's stderr), and collect it: its output up to `limit`, its end, its usage.
    It is killed at `timeout`, or when it writes past `limit`; nothing it started outlives it.
    `native`: a child of a native spec, which execs `frame["argv"]` from the zygote's C loop
    (the frame goes as procs.native_frame)."""
    job_bytes = native_frame(
        frame["argv"], frame["env"], frame["cwd"], memory_bytes=int(frame["memory_bytes"]),
        cpu_seconds=int(frame["cpu_seconds"]), data_memory=bool(frame.get("data_memory")),
    ) if native else None
    stdin = sealed_file(stdin_data)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    job_r, job_w = os.pipe2(os.O_CLOEXEC)
    started = time.monotonic()
    pid = w.prog_zygote.spawn(spec or w.stdio_spec,
                              [job_r, stdin, out_w, out_w if merge else req.err_w])
    req.pids.append(pid)
    for fd in (job_r, stdin, out_w):
        os.close(fd)
    try:
        if job_bytes is not None:
            wire.write_all(job_w, job_bytes)
        else:
            wire.send_job(job_w, frame)
    except OSError:
        pass  # gone already: its exit status says why
    os.close(job_w)
    os.set_blocking(out_r, False)
    out = bytearray()
    outcome = "running"
    poller = select.poll()  # (no selector: a poll set costs no fd and no syscall to make)
    pidfd = os.pidfd_open(pid)
    try:
        for fd in (out_r, req.err_r, pidfd):
            poller.register(fd, select.POLLIN)
        w.detach_old()  # while it starts
        deadline = started + timeout
        exited = eof = False
        while not (exited and eof) and outcome == "running":
            wait = deadline - time.monotonic()
            if wait <= 0:
                outcome = "timeout"
                break
            for fd, _ in poller.poll(wait * 1000):
                if fd == pidfd:
                    exited = True
                    poller.unregister(pidfd)
                elif fd == out_r:
                    chunk = os.read(out_r, 1 << 16)
                    if not chunk:
                        eof = True
                        poller.unregister(out_r)
                    elif len(out) + len(chunk) > limit:
                        outcome = "output"
                        break
                    else:
                        out += chunk
                else:
                    w._drain(fd, req.out_r, job, state)  # the request's stderr
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
        w.sweep()  # nothing of this run outlives it, even what left its group
        os.close(pidfd)
        os.close(out_r)
    elapsed = time.monotonic() - started
    status, peak_kb, cpu = w.prog_zygote.ended(pid)
    return _Ran(outcome, elapsed, status, peak_kb, cpu, bytes(out))


def sealed_file(data: bytes) -> int:
    """A read-only descriptor of an in-memory file holding `data`, sealed against writes (a
    test's input: the program gets its own copy, and cannot change it for anyone)."""
    fd = os.memfd_create("stdin", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        wire.write_all(fd, data)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW
                    | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
        return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(fd)
