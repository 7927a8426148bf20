#!/usr/bin/env python3
"""A well-behaved client's latency while hostile clients hit the same RM server.

One RM server (gRPC port and HTTP gateway, bearer tokens, a per-client rate limit) serves a
well-behaved client that scores one item at a time over gRPC, and polls the gateway's
/get_reward with one query. First alone (`--idle` seconds), then (`--attack` seconds) while,
all at once, from other processes:

- unauthenticated gRPC calls carrying 32 MB messages, and 64 bytes of garbage, in a loop;
- wrong tokens from one address (locked out after its failed-authentication budget);
- an authenticated client far over its rate limit (1,000-item Score calls, a ScoreStream of
  single items, oversized gateway requests);
- 200 slow HTTP connections that send half a request and trickle bytes (re-opened when the
  server closes them), 16 MB request lines, and bodies announced at 300 MB.

The server is pinned to the first core and every client to the second, so the attackers'
own work (building 32 MB messages) does not take the server's CPU, as it would not from
another machine. Prints p50/p99 of the well-behaved calls in each phase and their ratio (the
target: p99 under attack within 2x of idle), and what the attackers were answered.
Run: python bench/hostile_clients.py [--idle 20] [--attack 40]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from executor_bench import machine  # noqa: E402

GOOD_TOKEN = "good-client-0123456789abcdef"
GREEDY_TOKEN = "greedy-client-0123456789abcdef"
QUESTION = "Write a function add(a, b) that returns the sum of a and b."
GOOD = "def add(a, b):\n    return a + b\n"
QUERY = (f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n{GOOD}<|im_end|>")


def start_server(tokens: Path, cores: set[int]) -> tuple[subprocess.Popen[str], str, str]:
    cmd = [sys.executable, "-m", "acecoder.cli", "serve", "rm", "--port", "0", "--http-port",
           "0", "--auth-tokens", str(tokens), "--rate-limit", "3", "--rate-burst", "6",
           "--auth-failures", "30", "--http-header-timeout", "5", "--http-max-body-mb", "8"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, cores))
    assert proc.stdout is not None
    m = re.search(r"listening on (\S+) .*http on :(\d+)", proc.stdout.readline())
    if not m or "ready" not in proc.stdout.readline():
        proc.kill()
        raise SystemExit("the RM server did not start")
    return proc, m.group(1), f"http://127.0.0.1:{m.group(2)}"


# -- the well-behaved client ------------------------------------------------------------------

def measure(target: str, http: str, seconds: float) -> dict[str, list[float]]:
    from acecoder.clients import RetryPolicy, RewardClient
    from acecoder.security import ClientSecurity

    out: dict[str, list[float]] = {"grpc Score": [], "http get_reward": []}
    end = time.monotonic() + seconds
    with RewardClient(target, timeout=30, retry=RetryPolicy(attempts=1),
                      security=ClientSecurity(token=GOOD_TOKEN)) as rm, \
            httpx.Client(timeout=30, headers={"Authorization": f"Bearer {GOOD_TOKEN}"}) as web:
        while time.monotonic() < end:
            t = time.perf_counter()
            rm.score([(QUESTION, GOOD)])
            out["grpc Score"].append(time.perf_counter() - t)
            t = time.perf_counter()
            r = web.post(http + "/get_reward", json={"query": [QUERY]})
            r.raise_for_status()
            out["http get_reward"].append(time.perf_counter() - t)
            time.sleep(0.5)
    return out


# -- the attackers (each a process, looping until told to stop) -------------------------------

def _tally(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


def unauthenticated(target: str, stop: threading.Event, counts: dict[str, int]) -> None:
    huge = b"\x0a" + b"\x80\x80\x80\x10" + b"x" * (32 << 20)
    with grpc.insecure_channel(target, options=[("grpc.max_send_message_length", -1)]) as ch:
        score = ch.unary_unary("/acecoder.v1.RewardModel/Score")
        while not stop.is_set():
            for payload, meta in ((huge, None), (b"\xff" * 64, None),
                                  (b"\xff" * 64, [("authorization", "Bearer " + "w" * 30)])):
                try:
                    score(payload, timeout=10, metadata=meta)
                    _tally(counts, "grpc OK")
                except grpc.RpcError as exc:
                    _tally(counts, f"grpc {exc.code().name}")


def greedy(target: str, http: str, stop: threading.Event, counts: dict[str, int]) -> None:
    from acecoder.v1 import reward_pb2 as pb
    from acecoder.v1 import reward_pb2_grpc as pb_grpc

    meta = [("authorization", f"Bearer {GREEDY_TOKEN}")]
    item = pb.ScoreItem(question=QUESTION.encode(), response=GOOD.encode())
    big = pb.ScoreRequest(items=[item] * 1000)
    with grpc.insecure_channel(target) as ch, httpx.Client(timeout=30) as web:
        stub = pb_grpc.RewardModelStub(ch)
        while not stop.is_set():
            try:
                stub.Score(big, timeout=10, metadata=meta)
                _tally(counts, "grpc OK")
            except grpc.RpcError as exc:
                _tally(counts, f"grpc {exc.code().name}")
            try:
                for _ in stub.ScoreStream(iter([pb.ScoreRequest(items=[item])] * 500),
                                          timeout=10, metadata=meta):
                    _tally(counts, "stream item OK")
            except grpc.RpcError as exc:
                _tally(counts, f"stream {exc.code().name}")
            r = web.post(http + "/get_reward", json={"query": [QUERY] * 200},
                         headers={"Authorization": f"Bearer {GREEDY_TOKEN}"})
            _tally(counts, f"http {r.status_code}")


def slow_http(http: str, stop: threading.Event, counts: dict[str, int]) -> None:
    host, port = "127.0.0.1", int(http.rsplit(":", 1)[1])
    conns: list[socket.socket] = []
    while not stop.is_set():
        while len(conns) < 200:
            try:
                s = socket.create_connection((host, port), timeout=5)
                s.sendall(b"POST /get_reward HTTP/1.1\r\nHost: x\r\n")
                s.setblocking(False)
                conns.append(s)
            except OSError:
                _tally(counts, "connect refused")
                break
        alive = []
        for s in conns:
            try:
                s.send(b"X")
                alive.append(s)
            except OSError:
                _tally(counts, "slow closed by server")
                s.close()
        conns = alive
        for payload in (b"GET /" + b"a" * (16 << 20) + b" HTTP/1.1\r\n\r\n",
                        b"POST /get_reward HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                        + GOOD_TOKEN.replace("good", "nope").encode()
                        + b"\r\nContent-Length: 314572800\r\n\r\n"):
            try:
                with socket.create_connection((host, port), timeout=5) as s:
                    s.sendall(payload)
                    reply = s.recv(64)
                _tally(counts, "http " + (reply[9:12].decode() or "closed"))
            except OSError:
                _tally(counts, "http closed")
        time.sleep(0.5)
    for s in conns:
        s.close()


def _attacker(kind: str, target: str, http: str, seconds: float,
              queue: mp.Queue) -> None:  # type: ignore[type-arg]
    stop = threading.Event()
    counts: dict[str, int] = {}
    threading.Timer(seconds, stop.set).start()
    if kind == "unauthenticated":
        unauthenticated(target, stop, counts)
    elif kind == "greedy":
        greedy(target, http, stop, counts)
    else:
        slow_http(http, stop, counts)
    queue.put((kind, counts))


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--idle", type=float, default=20.0, help="seconds alone (default 20)")
    ap.add_argument("--attack", type=float, default=40.0,
                    help="seconds under attack (default 40)")
    args = ap.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    server_cores, client_cores = {cores[0]}, {cores[-1]}
    os.sched_setaffinity(0, client_cores)
    with tempfile.TemporaryDirectory() as tmp:
        tokens = Path(tmp) / "tokens"
        tokens.write_text(f"good {GOOD_TOKEN}\ngreedy {GREEDY_TOKEN}\n")
        proc, target, http = start_server(tokens, server_cores)
        try:
            print(f"machine: {machine()}\nserver on core {cores[0]}, clients on core "
                  f"{cores[-1]}", flush=True)
            measure(target, http, 3.0)  # warm-up
            idle = measure(target, http, args.idle)
            queue: mp.Queue = mp.Queue()  # type: ignore[type-arg]
            procs = [mp.Process(target=_attacker, args=(kind, target, http, args.attack, queue))
                     for kind in ("unauthenticated", "greedy", "slow")]
            for p in procs:
                p.start()
            time.sleep(1.0)
            attacked = measure(target, http, args.attack - 2.0)
            tallies = [queue.get(timeout=60) for _ in procs]
            for p in procs:
                p.join(timeout=60)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    print(f"\n{'well-behaved call':<18} {'phase':<8} {'calls':>6} {'p50 ms':>8} {'p99 ms':>8}")
    print("-" * 52)
    ratios = []
    for name in idle:
        for phase, runs in (("idle", idle), ("attack", attacked)):
            xs = runs[name]
            print(f"{name:<18} {phase:<8} {len(xs):>6} {pct(xs, .5):>8.1f} {pct(xs, .99):>8.1f}")
        ratios.append(pct(attacked[name], .99) / pct(idle[name], .99))
    print("\nwhat the attackers got:")
    for kind, counts in tallies:
        print(f"  {kind:<16} " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    worst = max(ratios)
    print("\np99 under attack / idle: "
          + ", ".join(f"{n} {r:.2f}x" for n, r in zip(idle, ratios))
          + f" (target <= 2x): {'PASS' if worst <= 2.0 else 'FAIL'}")
    return 0 if worst <= 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
