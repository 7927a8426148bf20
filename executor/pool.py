"""The pool of long-lived jailed workers, driven from asyncio.

Each worker is a `sandbox.worker` process inside its own jail, fed one job at a time over a
pipe. A worker that dies mid-job (killed from outside, say) costs no request: the job is rerun
on another worker, and if that one dies too its tests come back CRASHED. Dead workers are
replaced, and every worker is replaced after `recycle_after` programs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import struct
import time
from typing import Any

from acecoder.errors import DeadlineExceeded, Unavailable

from . import jail as jails
from . import languages, pch
from .config import ExecutorConfig
from .metrics import ExecutorMetrics
from .sandbox import wire
from .sandbox.stdio import BuildCache
from .types import ExecutionRequest, ExecutionResult, ProgramStatus, TestResult, Verdict

logger = logging.getLogger(__name__)

_HEADER = struct.Struct(">I")
_START_TIMEOUT = 60.0


class WorkerLost(Exception):
    """The worker process died or broke the protocol."""


class _Worker:
    def __init__(self, slot: int, jail: str, config: ExecutorConfig) -> None:
        self.slot = slot
        self.jail = jail
        self.config = config
        self.jobs = 0
        self.builds: set[str] = set()
        """Keys of the builds this worker made or was given (see SharedBuilds)."""
        self.proc: asyncio.subprocess.Process | None = None
        self._stderr_task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *jails.worker_command(self.jail),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=jails.worker_env(), start_new_session=True,
        )
        self._stderr_task = asyncio.create_task(self._relay_stderr())
        hide, keep = jails.fs_policy(self.config.hide_paths)
        hello = {
            "slot": self.slot, "uid_base": self.config.uid_base, "seccomp": self.config.seccomp,
            "sweep_uid": self.config.uid_base + 3 * self.config.workers,
            "arrange_fs": True, "hide": hide, "keep": keep,
            "preimport": list(self.config.preimport), "separate_uids": os.geteuid() == 0,
            "pin": self.config.pin_workers, "tmp_bytes": self.config.tmp_bytes,
            "max_memory_bytes": max(self.config.max_memory_mb, 1024) << 20,
            "file_bytes": self.config.file_bytes, "open_files": self.config.open_files,
            "processes": self.config.processes, "judge": self.config.plain_judge,
        }
        await self._send(hello)
        ready = await asyncio.wait_for(self._recv(), _START_TIMEOUT)
        if not isinstance(ready, dict) or not ready.get("ready"):
            raise WorkerLost(f"worker {self.slot} did not start: {ready!r}")
        logger.info("worker %d started in %s (pid %s, seccomp=%s)", self.slot, self.jail,
                    self.pid, ready.get("seccomp"))

    async def _relay_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while True:
            line = await self.proc.stderr.readline()
            if not line:
                return
            logger.warning("worker %d: %s", self.slot, line.decode(errors="replace").rstrip())

    async def _send(self, obj: Any) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        data = wire.dumps(obj)
        try:
            self.proc.stdin.write(_HEADER.pack(len(data)) + data)
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise WorkerLost(f"worker {self.slot} is gone: {exc}") from None

    async def _recv(self) -> Any:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            (size,) = _HEADER.unpack(await self.proc.stdout.readexactly(_HEADER.size))
            data = await self.proc.stdout.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
            raise WorkerLost(f"worker {self.slot} is gone: {exc}") from None
        try:
            return wire.loads_plain(data)
        except Exception as exc:
            raise WorkerLost(f"worker {self.slot} sent an undecodable reply: {exc}") from None

    async def run(self, job: dict[str, Any]) -> dict[str, Any]:
        await self._send(job)
        reply = await self._recv()
        if not isinstance(reply, dict):
            raise WorkerLost(f"worker {self.slot} sent a malformed reply")
        self.jobs += 1
        return reply

    async def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(Exception):
                assert proc.stdin is not None
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 2.0)
            except TimeoutError:
                pass
        # The jail's whole session goes, whatever is left in it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 5.0)
        if self._stderr_task is not None:
            self._stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._stderr_task


# Added to the longest a job can legitimately take (see answer_bound).
_ANSWER_SLACK = 10.0


def answer_bound(job: dict[str, Any]) -> float:
    """The longest a worker may take to answer `job`: every test may hang (each costs its
    limit, and a fresh pair that loads the program again), plus slack for spawning and settling.
    Past it the worker is stuck, whatever the program did."""
    per_pair = float(job["load_timeout"]) + float(job["timeout"]) + 1.0
    compile_s = float(job["compile_timeout"]) if job.get("language", "python") != "python" else 0.0
    return (len(job["tests"]) + 1) * per_pair + compile_s + _ANSWER_SLACK


class SharedBuilds:
    """Builds of compiled programs, shared by the pool's workers: verl's SandboxFusion calls
    send one test per request, so the same program reaches every worker, and without this
    each would compile it again (a C++ compile costs hundreds of times a test's run). A worker
    returns what its compiler made with the result; the pool hands it, with its key, to a
    worker it has not given it yet, which places it as its own BuildCache would (see
    stdio.BuildCache for why a build crosses no request boundary). Bounded in bytes, least
    recently used dropped first."""

    def __init__(self, max_bytes: int = 128 << 20) -> None:
        self.cache = BuildCache(max_bytes)
        """Each build's files, by the request's key (language and source)."""
        self.build_keys: dict[str, str] = {}
        """The worker's key of each build (its toolchain and flags too), by the request's."""
        self.shared = 0

    @staticmethod
    def key(req: ExecutionRequest) -> str | None:
        """The request's language and exact source (cheap: no toolchain is asked here, in
        the event loop). The worker keys what it takes by its own build key (toolchain and
        flags too) and takes a build only under the key it computes itself."""
        lang = languages.LANGUAGES.get(req.language)
        if req.kind != "stdio" or lang is None or not lang.compile:
            return None
        text = f"{req.language}\0{req.program}".encode("utf-8", errors="surrogateescape")
        return hashlib.sha256(text).hexdigest()

    def offer(self, key: str | None, worker: _Worker) -> tuple[str, Any] | None:
        """The build of the request keyed `key` for `worker` ((the worker's build key,
        files)), if the pool has it and has not given it that worker (nor had it from it)."""
        if key is None or key in worker.builds:
            return None
        files = self.cache.get(key)
        if files is None or key not in self.build_keys:
            return None
        self._given(worker, key)
        self.shared += 1
        return self.build_keys[key], files

    def take(self, key: str | None, built: Any, worker: _Worker) -> None:
        """What a worker's compiler made for the request keyed `key`: (its build key, files),
        as stdio._build returns it."""
        if key is None or not (isinstance(built, tuple) and len(built) == 2
                               and isinstance(built[0], str) and isinstance(built[1], dict)):
            return
        self._given(worker, key)
        self.cache.put(key, built[1])
        self.build_keys[key] = built[0]
        if len(self.build_keys) > 4096:  # forget the keys of builds the cache dropped
            self.build_keys = {k: v for k, v in self.build_keys.items()
                               if k in self.cache}

    @staticmethod
    def _given(worker: _Worker, key: str) -> None:
        if len(worker.builds) > 4096:  # a worker's own cache holds far fewer: forget, re-send
            worker.builds.clear()
        worker.builds.add(key)


class WorkerPool:
    """Runs programs on `config.workers` jailed workers. Use `async with` or start()/close()."""

    def __init__(self, config: ExecutorConfig, metrics: ExecutorMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or ExecutorMetrics()
        self.jail = ""
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._waiting = 0  # requests waiting for a worker (first come, first served)
        self._workers: dict[int, _Worker] = {}
        self._replacing: set[asyncio.Task[None]] = set()
        self._closed = False
        self.builds = SharedBuilds()

    async def __aenter__(self) -> WorkerPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self.jail = await asyncio.to_thread(jails.choose, self.config.jail)
        pch.build_in_background()  # C++ compiles use it once it is there (see pch.py)
        workers = [_Worker(slot, self.jail, self.config) for slot in range(self.config.workers)]
        started = await asyncio.gather(*(w.start() for w in workers), return_exceptions=True)
        failures = [r for r in started if isinstance(r, BaseException)]
        if failures:
            await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
            raise RuntimeError(
                f"could not start the {self.jail} workers: {failures[0]}") from failures[0]
        for w in workers:
            self._workers[w.slot] = w
            self._idle.put_nowait(w)
        self.metrics.workers.set(len(workers))
        self.metrics.jail_info.info({"jail": self.jail})

    async def close(self) -> None:
        self._closed = True
        for task in list(self._replacing):
            task.cancel()
        await asyncio.gather(*(w.stop() for w in self._workers.values()), return_exceptions=True)
        self._workers.clear()
        self.metrics.workers.set(0)

    def worker_pids(self) -> list[int]:
        return [w.pid for w in self._workers.values() if w.pid is not None]

    @property
    def idle(self) -> int:
        return self._idle.qsize()

    # -- running ---------------------------------------------------------------------------

    def job(self, req: ExecutionRequest) -> dict[str, Any]:
        c = self.config
        return {
            "program": req.program, "tests": list(req.tests), "setup": req.setup,
            # Loading is not a test, but a program that never finishes loading should not hold
            # a worker for long either: a little more than one test's limit, at most load_timeout.
            "timeout": req.timeout, "load_timeout": min(c.load_timeout, req.timeout + 2.0),
            "memory_bytes": req.memory_mb << 20, "file_bytes": c.file_bytes,
            "open_files": c.open_files, "processes": c.processes,
            "output_bytes": req.capture_bytes or c.output_bytes,
            "stop_on_first_failure": req.stop_on_first_failure,
            "kind": req.kind, "expected": list(req.expected), "checker": req.checker,
            "output_limit": req.output_limit, "language": req.language,
            "compile_timeout": req.compile_timeout, "checker_source": req.checker_source,
            "compile_memory_bytes": c.compile_memory_mb << 20,
        }

    async def execute(self, req: ExecutionRequest, *,
                      deadline: float | None = None) -> ExecutionResult:
        """Run one program. `deadline` (time.monotonic) bounds the wait for a worker: work
        whose deadline has passed is never started."""
        job = self.job(req)
        build_key = SharedBuilds.key(req)
        for _attempt in range(2):  # a second worker if the first dies under the program
            worker = await self._acquire(deadline)
            bound = answer_bound(job)
            shared = self.builds.offer(build_key, worker)
            try:
                async with asyncio.timeout(bound):  # (no task of its own, as wait_for makes)
                    raw = await worker.run({**job, "build": shared} if shared else job)
            except WorkerLost as exc:
                logger.warning("%s; rerunning request %s elsewhere", exc, req.request_id)
                self._replace(worker, "lost")
                continue
            except TimeoutError:
                # The worker enforces every limit itself; one that has not answered long after
                # the last of them could have expired is broken or stuck, and is not trusted
                # again. The request is not rerun: its program may be what stuck it.
                logger.error("worker %d did not answer request %s within %.0fs; replaced",
                             worker.slot, req.request_id, bound)
                self._replace(worker, "hung")
                return self._lost_result(
                    req, f"the sandbox did not answer within {bound:.0f}s; its worker was replaced")
            except BaseException:
                # Cancelled mid-job: the worker's state is unknown, so it is replaced.
                self._replace(worker, "cancelled")
                raise
            if "internal_error" in raw:
                # Our bug, not the program's: the worker is replaced, and the request still gets
                # an answer (a batch or an `exec` run answers every record).
                logger.error("worker %d failed on request %s: %s", worker.slot, req.request_id,
                             raw["internal_error"])
                self._replace(worker, "internal_error")
                return self._lost_result(req, f"the sandbox failed: {raw['internal_error']}")
            if "build" in raw:
                self.builds.take(build_key, raw.pop("build"), worker)
            try:
                result = self._result(req, raw)
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                logger.error("worker %d sent a malformed result: %s", worker.slot, exc)
                self._replace(worker, "malformed")
                return self._lost_result(req, "the sandbox sent a malformed result")
            if worker.jobs >= self.config.recycle_after:
                self._replace(worker, "recycled")
            else:
                self._idle.put_nowait(worker)
            return result
        return self._lost_result(req)

    async def _acquire(self, deadline: float | None) -> _Worker:
        if self._closed:
            raise Unavailable("the executor is shutting down")
        timeout = None if deadline is None else deadline - time.monotonic()
        if timeout is not None and timeout <= 0:
            raise DeadlineExceeded("deadline passed before a worker was free; nothing was run")
        if not self._waiting and not self._idle.empty():  # free, and no one is before us
            return self._idle.get_nowait()
        getter = asyncio.ensure_future(self._idle.get())
        self.metrics.queue_depth.inc()
        self._waiting += 1
        try:
            done, _ = await asyncio.wait({getter}, timeout=timeout)
        except asyncio.CancelledError:
            if getter.done() and not getter.cancelled():
                self._idle.put_nowait(getter.result())
            getter.cancel()
            raise
        finally:
            self.metrics.queue_depth.dec()
            self._waiting -= 1
        if getter in done:
            return getter.result()
        getter.cancel()
        raise DeadlineExceeded("deadline passed before a worker was free; nothing was run")

    def _replace(self, worker: _Worker, reason: str) -> None:
        self.metrics.worker_restarts.labels(reason=reason).inc()
        task = asyncio.create_task(self._restart(worker))
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)

    async def _restart(self, old: _Worker) -> None:
        await old.stop()
        delay = 0.1
        while not self._closed:
            new = _Worker(old.slot, self.jail, self.config)
            try:
                await new.start()
            except Exception as exc:  # keep trying: a pool short of a worker still serves
                logger.error("restarting worker %d failed: %s", old.slot, exc)
                await new.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if self._closed:
                await new.stop()
                return
            self._workers[new.slot] = new
            self._idle.put_nowait(new)
            return

    def _result(self, req: ExecutionRequest, raw: dict[str, Any]) -> ExecutionResult:
        tests = tuple(
            TestResult(verdict=Verdict(v[0]), duration=float(v[1]), error_type=str(v[2]),
                       error_message=str(v[3]), cpu_seconds=float(v[4]) if len(v) > 4 else 0.0,
                       peak_memory_kb=int(v[5]) if len(v) > 5 else 0,
                       exit_code=int(v[6]) if len(v) > 6 else 0)
            for v in raw["verdicts"]
        )
        if len(tests) != len(req.tests):
            raise ValueError(f"{len(tests)} verdicts for {len(req.tests)} tests")
        return ExecutionResult(
            request_id=req.request_id, status=ProgramStatus(raw["status"]), tests=tests,
            status_detail=str(raw["detail"]),
            stdout=raw["stdout"].decode("utf-8", errors="replace"),
            stderr=raw["stderr"].decode("utf-8", errors="replace"),
            stdout_truncated=bool(raw["stdout_truncated"]),
            stderr_truncated=bool(raw["stderr_truncated"]),
            duration=float(raw["duration"]), jail=self.jail,
            flags=tuple(str(f) for f in raw.get("flags", ())),
            compile_duration=float(raw.get("compile_seconds", 0.0)),
        )

    def _lost_result(self, req: ExecutionRequest,
                     detail: str = "the sandbox worker died twice while running this program",
                     ) -> ExecutionResult:
        return ExecutionResult(
            request_id=req.request_id, status=ProgramStatus.OK, status_detail=detail,
            tests=tuple(TestResult(verdict=Verdict.CRASHED, error_message=detail)
                        for _ in req.tests),
            jail=self.jail,
        )
