#!/usr/bin/env python3
"""Executor replicas behind one client target: does the work spread, and what it buys.

Starts `--replicas` executor servers on loopback, each with one worker and pinned to one core
(replica k on core k mod the cores this process may use, like `taskset -c`; its worker pins
itself inside that set). Then the same seeded stream of MbppBase programs (reference
solutions, per-assert tests) from `--concurrency` client threads, for 1, 2, ... replicas:

- `list`: the client's target names the replicas (`ipv4:a,b,c`): one connection to each,
  calls round-robin (what `dns:///NAME-headless:PORT` gives in Kubernetes);
- `one address`: the client's target is one address, an L4 balancer that hands each new TCP
  connection to the next replica, as a ClusterIP Service does (kube-proxy balances
  connections, not calls). gRPC opens one connection, so one replica does all the work.

Prints one table: requests/s, latency, and how many calls each replica served (its own
Prometheus counter). The client and the balancer run unpinned, on the same cores. With more
replicas than cores, two share a core; round_robin is not load-aware and gives them equal
shares, so that pair sets the pace.
    python bench/replicas.py [--replicas 3] [--requests 600] [--concurrency 12]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402  (bench/ is not a package)

from acecoder.clients import ExecutorClient  # noqa: E402
from acecoder.datasets import load_mbpp  # noqa: E402


@dataclass
class Replica:
    proc: subprocess.Popen[str]
    address: str
    metrics: str
    core: int

    def served(self) -> int:
        text = httpx.get(self.metrics, timeout=10).text
        return int(sum(float(n) for n in re.findall(
            r'^acecoder_executor_requests_total\{(?=[^}]*method="Execute")[^}]*\} (\S+)',
            text, re.M)))


def start_replicas(n: int, cores: list[int]) -> list[Replica]:
    out = []
    for k in range(n):
        core = cores[k % len(cores)]
        cmd = [sys.executable, "-m", "acecoder.cli", "serve", "executor", "--port", "0",
               "--workers", "1", "--metrics-port", "0", "--max-queue", "4096"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                                preexec_fn=lambda c=core: os.sched_setaffinity(0, {c}))
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"listening on (\S+) .*metrics on :(\d+)", line)
        if not m:
            proc.kill()
            raise SystemExit(f"an executor did not start: {line!r}")
        out.append(Replica(proc, m.group(1), f"http://127.0.0.1:{m.group(2)}/metrics", core))
    return out


class ConnectionBalancer:
    """One address in front of the replicas; each new TCP connection goes to the next one
    (kube-proxy's per-connection balancing), bytes copied both ways."""

    def __init__(self) -> None:
        self.backends: list[str] = []
        self._next = 0
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self.port = 0

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            started.set()
            self._loop.run_forever()

        threading.Thread(target=run, daemon=True, name="balancer").start()
        started.wait()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = self.backends[self._next % len(self.backends)].rsplit(":", 1)
        self._next += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@dataclass
class Row:
    target: str
    replicas: int
    requests: int
    wall: float
    latencies: list[float]
    served: list[int]
    passed: int
    """Programs whose tests all passed (the same in every row: a check, not a figure)."""

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies)
        return 1000 * xs[min(len(xs) - 1, int(q * len(xs)))]


def measure(name: str, target: str, replicas: list[Replica], jobs: list[tuple[str, list[str], str]],
            concurrency: int) -> Row:
    latencies: list[float] = []
    passed: list[bool] = []
    with ExecutorClient(target, timeout=120) as client:
        def one(job: tuple[str, list[str], str]) -> None:
            program, tests, setup = job
            started = time.perf_counter()
            result = client.execute(program, tests, setup=setup)
            latencies.append(time.perf_counter() - started)
            passed.append(result.all_passed)

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, jobs[:concurrency * 2]))  # warm-up: connections, caches
            before = [r.served() for r in replicas]
            latencies.clear()
            passed.clear()
            started = time.perf_counter()
            list(pool.map(one, jobs))
            wall = time.perf_counter() - started
    served = [r.served() - b for r, b in zip(replicas, before, strict=True)]
    return Row(name, len(replicas), len(jobs), wall, latencies, served, sum(passed))


def table(rows: list[Row]) -> str:
    head = ["target", "replicas", "requests", "passed", "req/s", "p50 ms", "p99 ms",
            "calls per replica"]
    body = [[r.target, str(r.replicas), str(r.requests), str(r.passed),
             f"{r.requests / r.wall:.1f}", f"{r.pct(0.5):.1f}", f"{r.pct(0.99):.1f}",
             " / ".join(map(str, r.served))] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) if i in (0, 7) else h.rjust(w)
                       for i, (h, w) in enumerate(zip(head, widths, strict=True))),
             "  ".join("-" * w for w in widths)]
    for row in body:
        lines.append("  ".join(v.ljust(w) if i in (0, 7) else v.rjust(w)
                               for i, (v, w) in enumerate(zip(row, widths, strict=True))))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicas", type=int, default=3, help="most replicas (default 3)")
    ap.add_argument("--requests", type=int, default=600, help="per row (default 600)")
    ap.add_argument("--concurrency", type=int, default=12, help="client threads (default 12)")
    ap.add_argument("--seed", type=int, default=0, help="order of the programs (default 0)")
    args = ap.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    problems = [p for p in load_mbpp() if p.tests]
    rng = random.Random(args.seed)
    jobs = [(p.program, list(p.tests), p.setup) for p in rng.choices(problems, k=args.requests)]
    replicas = start_replicas(args.replicas, cores)
    balancer = ConnectionBalancer()
    rows = []
    try:
        print(f"machine: {machine()}")
        print(f"{args.replicas} executor replicas, 1 worker each, replica k pinned to core "
              f"k mod {len(cores)} (cores {', '.join(map(str, cores))}); {args.concurrency} "
              f"client threads and the balancer unpinned; {args.requests} MbppBase reference "
              f"solutions per row (seed {args.seed})\n", flush=True)
        for n in range(1, args.replicas + 1):
            some = replicas[:n]
            rows.append(measure("list (round_robin)", "ipv4:" + ",".join(r.address for r in some),
                                some, jobs, args.concurrency))
            balancer.backends = [r.address for r in some]
            rows.append(measure("one address (L4)", f"127.0.0.1:{balancer.port}", some, jobs,
                                args.concurrency))
            print(f"done: {n} replica(s)", file=sys.stderr, flush=True)
    finally:
        for r in replicas:
            r.proc.send_signal(signal.SIGTERM)
        for r in replicas:
            r.proc.wait(timeout=60)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
