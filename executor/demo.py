"""The executor's step of `acecoder demo`: start an executor server, run MbppBase through it
(each reference solution and a broken variant of it), print verdicts and throughput."""

from __future__ import annotations

import collections
import statistics
import subprocess
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from acecoder.clients.executor import ExecutorClient, Program
from acecoder.serving import spawn_server

from .datasets import broken
from .types import Verdict


def start_server(workers: int, jail: str) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "acecoder.cli", "serve", "executor", "--port", "0",
           "--workers", str(workers), "--jail", jail, "--max-queue", "4096"]
    proc, m = spawn_server(cmd, r"listening on (\S+)", "the executor server")
    target = m.group(1)
    with grpc.insecure_channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError("the executor server is not serving")
    return proc, target


def run(target: str, problems: list) -> None:  # type: ignore[type-arg]
    """Run every problem's reference and broken solution through the server at `target`."""
    variants = {"reference": [p.program for p in problems],
                "broken": [broken(p) for p in problems]}
    rows = []
    with ExecutorClient(target, timeout=600) as client:
        info = client.info()
        for name, programs in variants.items():
            batch = [Program(prog, p.tests, setup=p.setup, request_id=p.task_id)
                     for prog, p in zip(programs, problems)]
            started = time.perf_counter()
            results = list(client.execute_batch(batch, deadline=600))
            wall = time.perf_counter() - started
            verdicts = collections.Counter(v for r in results for v in r.verdicts)
            lat = sorted(r.duration for r in results)
            rows.append({
                "variant": name, "programs": len(results),
                "all passed": sum(r.all_passed for r in results),
                "mean pass rate": statistics.fmean(r.pass_rate for r in results),
                **{v.value: verdicts.get(v, 0) for v in Verdict},
                "programs/s": len(results) / wall,
                "tests/s": sum(len(r.tests) for r in results) / wall,
                "p50 ms": 1000 * lat[len(lat) // 2],
                "p99 ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
            })
    print_table(rows)
    print(f"jail: {info.jail}, workers: {info.workers}")


def print_table(rows: list[dict[str, object]]) -> None:
    cols = list(rows[0])
    cells = [[_fmt(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


def _fmt(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, float) and v < 10 else (f"{v:.1f}" if isinstance(v, float) else str(v))
