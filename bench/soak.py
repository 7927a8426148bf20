#!/usr/bin/env python3
"""Soak: honest and hostile requests at saturation through gRPC, for minutes on end.

1. A reference server that never sees a hostile request runs every honest request once: the
   verdicts each should get when run alone.
2. A fresh server then takes, for `--minutes`, a mix of those honest requests and hostile ones
   (fork and memory bombs, output floods, forged reports from tests, debris, IPC, signalling
   daemons, poisoned test processes), from `--clients` concurrent clients.

It prints requests sent, errors (RPC failures; must be 0 for honest requests), verdict
disagreements with the reference (must be 0), and the RSS of the server and of its workers at
the start and the end (growth under 10%). Exit status 0 only when all three hold.
Run: python bench/soak.py [--minutes 10] [--workers 2] [--clients 8]
"""

from __future__ import annotations

import argparse
import itertools
import random
import re
import sys
import threading
import time
from pathlib import Path

import grpc

from acecoder.clients import ExecutorClient
from acecoder.datasets import broken, load_mbpp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from executor_bench import Server, _descendants, _rss, machine  # noqa: E402

_FRAME = ("import os, pickle, struct\ndef frame(m):\n    d = pickle.dumps(m)\n"
          "    os.write(3, struct.pack('>I', len(d)) + d)\n")
HOSTILE: list[tuple[str, str, list[str]]] = [
    ("fork-bomb", "import os\ndef f(x):\n    while True:\n        try:\n            os.fork()\n"
                  "        except OSError:\n            pass\n", ["f(1)"]),
    ("memory-bomb", "def f(x):\n    a = []\n    while True:\n        a.append(' ' * (1 << 20))\n", ["f(1)"]),
    ("output-flood", "import sys\ndef f(x):\n    while True:\n        sys.stdout.write('PASSED\\n' * 4096)\n",
     ["f(1)"]),
    ("late-output-daemon", "import os, time\nif os.fork() == 0:\n    time.sleep(0.05)\n"
                           "    for _ in range(100):\n        print('all tests passed', flush=True)\n"
                           "    os._exit(0)\ndef f(x):\n    return x\n", ["assert f(1) == 1"]),
    ("forged-reports", "def f(x):\n    return x\n",
     [_FRAME + "frame(('done', 99, 'PASSED', '', ''))", "assert f(1) == 1"]),
    ("garbage-on-channel", "def f(x):\n    return x\n", ["import os\nos.write(3, b'\\x00\\x00\\x00\\x05junk!')"]),
    ("pure-looking-poison", "def f(x):\n    return x\n",
     ["import math, operator, random\nrandom.seed(1)\n"
      "operator.setitem(operator.attrgetter('__dict__')(math), 'isclose', lambda *a, **k: True)\n"
      "g = operator.attrgetter('__class__.__init__.__globals__')(f)\n"
      "operator.setitem(g, '_classify', lambda e: ('PASSED', '', ''))"]),
    ("deep-debris", "import os\nfor i in range(2000):\n    os.mkdir('d' * 60)\n    os.chdir('d' * 60)\n"
                    "os.chmod('.', 0)\ndef f(x):\n    return x\n", ["assert f(1) == 1"]),
    ("sysv-ipc", "import ctypes\nlibc = ctypes.CDLL(None)\nlibc.shmget(0xACEC, 1 << 24, 0o1666)\n"
                 "libc.msgget(0xACEE, 0o1666)\ndef f(x):\n    return x\n", ["assert f(1) == 1"]),
    ("signal-daemon", "import os, signal\nif os.fork() == 0:\n    while True:\n"
                      "        for pid in range(2, 300):\n            try:\n"
                      "                os.kill(pid, signal.SIGSTOP)\n            except OSError:\n"
                      "                pass\ndef f(x):\n    return x\n", ["assert f(1) == 1"]),
    ("always-equal", "class A:\n    def __eq__(s, o): return True\ndef f(x):\n    return A()\n",
     ["assert f(1) == 7", "assert f(1) == f(2)"]),
    ("stop-iteration", "def f(x):\n    raise StopIteration\n", ["assert all(map(f, [1, 2])) and False"]),
]


def honest_requests() -> list[tuple[str, str, list[str], str]]:
    """(id, program, tests, setup): MbppBase's reference and broken solutions."""
    out = []
    for p in load_mbpp():
        out.append((f"{p.task_id}/ref", p.program, list(p.tests), p.setup))
        out.append((f"{p.task_id}/broken", broken(p), list(p.tests), p.setup))
    return out


def verdicts_of(client: ExecutorClient, program: str, tests: list[str], setup: str,
                timeout: float) -> tuple[str, ...]:
    r = client.execute(program, tests, setup=setup, timeout=timeout, deadline=120)
    return tuple(v.value for v in r.verdicts)


def reference(items: list[tuple[str, str, list[str], str]], workers: int,
              timeout: float) -> dict[str, tuple[str, ...]]:
    server = Server(workers)
    try:
        out: dict[str, tuple[str, ...]] = {}
        lock = threading.Lock()
        todo = iter(items)

        def drain() -> None:
            with ExecutorClient(server.target, timeout=120) as c:
                for rid, prog, tests, setup in todo:
                    v = verdicts_of(c, prog, tests, setup, timeout)
                    with lock:
                        out[rid] = v

        threads = [threading.Thread(target=drain) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out
    finally:
        server.stop()


def _is_worker(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"python" in Path(argv[0].decode(errors="replace")).name.encode() and \
        b"acecoder.executor.sandbox.worker" in argv


def worker_rss(server: Server, workers: int) -> float:
    """RSS of the jailed worker processes (not the jail tool's wrapper, not the zygotes or the
    per-request children), MiB. A worker retired for a hostile request is replaced, and for a
    moment both live: wait (up to 10 s) until there are `workers` of them, so that the sum is
    of the same number of workers at the start and at the end."""
    deadline = time.monotonic() + 10
    while True:
        total, count = _worker_rss(server)
        if count == workers or time.monotonic() > deadline:
            return total
        time.sleep(0.1)


def _worker_rss(server: Server) -> tuple[float, int]:
    total, count = 0.0, 0
    for pid in _descendants(server.proc.pid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        ppid = int(re.search(r"PPid:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        if _is_worker(pid) and not _is_worker(ppid):
            total += _rss(pid)
            count += 1
    return total, count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="soak duration (default 10)")
    ap.add_argument("--workers", type=int, default=2, help="executor workers (default 2)")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    ap.add_argument("--hostile-share", type=float, default=0.25,
                    help="fraction of requests that are hostile (default 0.25)")
    ap.add_argument("--timeout", type=float, default=3.0, help="per-test limit, s (default 3)")
    args = ap.parse_args()
    if args.minutes <= 0 or args.workers < 1 or args.clients < 1 or not 0 <= args.hostile_share < 1:
        ap.error("--minutes, --workers and --clients must be positive, --hostile-share in [0, 1)")

    print(f"machine: {machine()}", flush=True)
    items = honest_requests()
    t0 = time.monotonic()
    ref = reference(items, args.workers, args.timeout)
    print(f"reference: {len(items)} honest requests run alone in {time.monotonic() - t0:.0f} s",
          flush=True)

    server = Server(args.workers)
    stats = {"honest": 0, "hostile": 0, "honest_errors": 0, "hostile_errors": 0,
             "disagreements": 0}
    examples: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + 60 * args.minutes
    counter = itertools.count()
    try:
        with ExecutorClient(server.target, timeout=120) as warm:
            for rid, prog, tests, setup in items[:20]:
                verdicts_of(warm, prog, tests, setup, args.timeout)
        rss_start = (_rss(server.proc.pid), worker_rss(server, args.workers))

        def client_loop(seed: int) -> None:
            rng = random.Random(seed)
            with ExecutorClient(server.target, timeout=120) as c:
                while time.monotonic() < stop_at:
                    n = next(counter)
                    if rng.random() < args.hostile_share:
                        _, prog, tests = HOSTILE[n % len(HOSTILE)]
                        try:
                            c.execute(prog, tests, timeout=0.5, memory_mb=256, deadline=120)
                            kind = "hostile"
                        except grpc.RpcError:
                            kind = "hostile_errors"
                        with lock:
                            stats["hostile"] += 1
                            stats[kind] += kind == "hostile_errors"
                        continue
                    rid, prog, tests, setup = items[n % len(items)]
                    try:
                        got = verdicts_of(c, prog, tests, setup, args.timeout)
                    except grpc.RpcError as exc:
                        with lock:
                            stats["honest"] += 1
                            stats["honest_errors"] += 1
                            examples.append(f"{rid}: {exc.code().name}")
                        continue
                    with lock:
                        stats["honest"] += 1
                        if got != ref[rid]:
                            stats["disagreements"] += 1
                            examples.append(f"{rid}: {got} alone {ref[rid]}")

        threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(args.clients)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - started
        rss_end = (_rss(server.proc.pid), worker_rss(server, args.workers))
    finally:
        server.stop()

    growth = [(e - s) / s if s else 0.0 for s, e in zip(rss_start, rss_end)]
    print(f"\nsoak: {wall / 60:.1f} min, {args.workers} workers, {args.clients} clients, "
          f"{args.hostile_share:.0%} hostile")
    print(f"{'':28}{'value':>10}  {'must be':>10}")
    rows = [
        ("honest requests", stats["honest"], ""),
        ("hostile requests", stats["hostile"], ""),
        ("requests/s", f"{(stats['honest'] + stats['hostile']) / wall:.1f}", ""),
        ("errors, honest", stats["honest_errors"], "0"),
        ("errors, hostile", stats["hostile_errors"], ""),
        ("disagreements with alone", stats["disagreements"], "0"),
        ("server RSS start/end MiB", f"{rss_start[0]:.0f}/{rss_end[0]:.0f}", ""),
        ("server RSS growth", f"{growth[0]:.1%}", "< 10%"),
        ("worker RSS start/end MiB", f"{rss_start[1]:.0f}/{rss_end[1]:.0f}", ""),
        ("worker RSS growth", f"{growth[1]:.1%}", "< 10%"),
    ]
    for name, value, target in rows:
        print(f"{name:28}{value!s:>10}  {target:>10}")
    for line in examples[:10]:
        print("  " + line)
    ok = (stats["honest_errors"] == 0 and stats["disagreements"] == 0
          and all(g < 0.10 for g in growth))
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
