"""The cheapest process isolation there is, as a yardstick for the executor.

Each worker is a Python process that has imported what the executor's program zygote imports
and frozen its heap; for every program it forks a child that compiles and runs the program and
its tests in-process and exits with 0 (all passed) or 1. Nothing else: no jail, no uid, no
rlimits, no seccomp, no separate test process, no output capture, no time limits. It is not
safe (a program can exit(0)); it measures what one fresh process per program costs on this
machine, which no process-isolated executor can beat.

Run by bench/executor_bench.py; `python bench/fork_floor.py` is the worker it starts.
"""

from __future__ import annotations

import gc
import importlib
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

_HEADER = struct.Struct(">I")


def _read(f) -> bytes | None:  # type: ignore[no-untyped-def]
    head = f.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    return f.read(_HEADER.unpack(head)[0])


def _write(f, data: bytes) -> None:  # type: ignore[no-untyped-def]
    f.write(_HEADER.pack(len(data)) + data)
    f.flush()


def serve(slot: int) -> None:
    """The worker: one job (setup, program, tests) in, one verdict byte out, a fork per job."""
    from acecoder.executor.sandbox import forking, worker

    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[slot % len(cores)]})
    for name in worker._PREIMPORT:
        importlib.import_module(name)
    devnull = os.open(os.devnull, os.O_WRONLY)
    gc.collect()
    gc.freeze()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while (data := _read(stdin)) is not None:
        setup, program, tests = pickle.loads(data)
        pid = forking.fork()
        if pid == 0:
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            try:
                ns: dict[str, object] = {"__name__": "solution"}
                exec(compile(setup + "\n" + program, "<program>", "exec"), ns)
                for test in tests:
                    exec(compile(test, "<test>", "exec"), ns)
            except BaseException:
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        _write(stdout, b"1" if status == 0 else b"0")


def run(jobs: Sequence[tuple[str, str, Sequence[str]]], workers: int) -> tuple[float, list[float], list[bool]]:
    """Run every job through `workers` fork-per-program workers, one job in flight each.
    Returns (wall seconds, latencies, passed) in job order."""
    procs = [subprocess.Popen([sys.executable, __file__, str(slot)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE) for slot in range(workers)]
    latencies = [0.0] * len(jobs)
    passed = [False] * len(jobs)
    lock = threading.Lock()
    todo = iter(range(len(jobs)))

    def drive(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            t = time.perf_counter()
            _write(proc.stdin, pickle.dumps(tuple(jobs[i])))
            passed[i] = _read(proc.stdout) == b"1"
            latencies[i] = time.perf_counter() - t

    try:
        for p in procs:  # warm-up: the first fork of each worker, not timed
            _write(p.stdin, pickle.dumps(("", "pass", [])))
            _read(p.stdout)
        threads = [threading.Thread(target=drive, args=(p,)) for p in procs]
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t0
    finally:
        for p in procs:
            p.stdin.close()  # type: ignore[union-attr]
            p.wait(timeout=30)
    return wall, latencies, passed


if __name__ == "__main__":
    serve(int(sys.argv[1]))
