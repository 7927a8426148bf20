"""`acecoder demo`: the main job on the embedded defaults, with the three services as real
processes on loopback.

0. Start the executor, the RM server (embedded SmolLM2-135M AceCode-RM, loading in the
   background) and the synthesis service (embedded SmolLM2-135M-Instruct) as child processes
   (`acecoder.services`, what `acecoder serve all` runs).
1. Executor: every MbppBase reference solution and a broken variant of each through it;
   verdicts and throughput. Then competitive-programming problems (StdioProblems: stdin/stdout
   tests, checkers) with their Python and C++ reference solutions and a broken variant of each
   (C++ compiled once per program, in the sandbox).
2. Reward model: online best-of-4 over the RM server (`acecoder.clients.bestofn`) on a few
   dozen problems: pass@1 of picking at random, by RM, by a test, by both, within a latency
   budget (`acecoder.evals`).
3. Synthesis: a job on the synthesis service for a few MbppBase questions (rewrite, imagined
   tests, proxy filter in the executor, decontamination); SmolLM2-135M's tests are poor and the
   filter shows it.
4. RL: a few REINFORCE++ steps (`acecoder train rl`, DeepSpeed on CPU) of SmolLM2-135M-Instruct
   on the warm-up prompts, rewards from the executor and the RM server over gRPC (mix).
Then every service is stopped with SIGTERM; the demo fails if one exits unclean or leaves a
process behind. Outputs go under one directory, printed at the start and the end.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from acecoder.clients.executor import ExecutorClient, Program
from acecoder.datasets import (
    Problem,
    StdioProblem,
    broken,
    broken_cpp,
    broken_stdio,
    load_mbpp,
    load_stdio,
)
from acecoder.executor.types import Verdict
from acecoder.jsonl import Progress
from acecoder.serving import spawn_server


def start_rm(executor: str) -> tuple[subprocess.Popen[str], str]:
    """An RM server on the embedded model, once it is ready (for benchmarks)."""
    cmd = [sys.executable, "-m", "acecoder.cli", "serve", "rm", "--port", "0",
           "--executor", executor]
    proc, m = spawn_server(cmd, r"listening on (\S+)", "the RM server")
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    if "ready" not in ready:
        proc.kill()
        raise RuntimeError(f"the RM server did not get ready (said: {ready!r})")
    print(ready.strip())
    return proc, m.group(1)


def rm_step(rm: str, problems: list[Problem], budget: float) -> None:
    from acecoder.clients import RewardClient
    from acecoder.clients.bestofn import BestOfN
    from acecoder.evals import best_of_n_gain, format_gain

    with RewardClient(rm, timeout=60) as client:
        trained = client.model_info().head_trained
    with BestOfN(rm, timeout=600) as bon:
        report = best_of_n_gain(bon, problems, budget=budget)
    print(format_gain(report))
    if not trained:
        print("note: the RM head is untrained, so RM picks are no better than chance yet; "
              "the executor's tests carry the ranking")


def synth_step(synth: str, data_dir: Path, problems: list[Problem]) -> Path:
    from acecoder.clients import SynthesisClient
    from acecoder.clients.synthesis import FINISHED, state_name

    seeds = data_dir / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"id": p.task_id, "question": p.question,
                                         "program": p.program, "source": "mbpp"}) + "\n"
                             for p in problems))
    started = time.perf_counter()
    bar = Progress(len(problems), True, unit="question", what="questions synthesized")
    with SynthesisClient(synth, timeout=60) as client:
        job = client.submit_job("seeds.jsonl", "acecode.jsonl", n_tests=8)
        done = 0
        while job.state not in FINISHED:
            time.sleep(1.0)
            job = client.get_job(job.job_id)
            bar.update(int(job.done) - done)
            done = int(job.done)
    bar.close()
    out = data_dir / "acecode.jsonl"
    dropped = ", ".join(f"{k} {v}" for k, v in sorted(job.dropped.items())) or "none"
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(job.tests_rejected.items())) or "none"
    print(f"job {job.job_id} {state_name(job.state)}{': ' + job.error if job.error else ''}: "
          f"{job.kept}/{job.seeds} questions kept (dropped: {dropped}); tests imagined "
          f"{job.tests_in}, kept {job.tests_kept} (rejected: {rejected}); "
          f"{time.perf_counter() - started:.0f} s")
    print(f"kept records in {out}, dropped ones (with reasons) in {out}.dropped.jsonl")
    if job.error:
        raise RuntimeError(f"the synthesis job failed: {job.error}")
    return out


def rl_step(executor: str, rm: str, out: Path, steps: int) -> int:
    cmd = [sys.executable, "-m", "acecoder.cli", "train", "rl", "--preset", "rl_cpu_tiny",
           "--output", str(out), "--reward", "mix", "--executor", executor, "--rm", rm,
           "--steps", str(steps), "--save-every", str(steps)]
    started = time.perf_counter()
    code = subprocess.run(cmd, env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"}).returncode
    if code != 0:
        print(f"acecoder train rl exited with code {code}")
        return code
    print(f"\n{'step':>4} {'reward':>7} {'pass rate':>9} {'RM score':>8} {'KL':>8} "
          f"{'entropy':>8} {'resp len':>8} {'clip':>5} {'step s':>7} {'reward wait':>11}")
    for line in (out / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        rm = r.get("reward/rm_score")
        print(f"{r['step']:>4} {r['reward/mean']:>7.3f} {r['reward/pass_rate']:>9.3f} "
              f"{'-' if rm is None else format(rm, '.2f'):>8} "
              f"{r['policy/kl']:>8.4f} {r['policy/entropy']:>8.3f} {r['response/length']:>8.1f} "
              f"{r['policy/clip_fraction']:>5.2f} {r['time/step']:>7.1f} "
              f"{100 * r['time/reward_wait_share']:>10.1f}%")
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # 1.6 GB of optimizer state
    print(f"{steps} RL steps in {time.perf_counter() - started:.0f} s; metrics, TensorBoard logs "
          f"and the trained policy in {out} (its checkpoint was removed: it resumes, but holds "
          "1.6 GB of optimizer state a demo does not need)")
    return 0


def main(workers: int = 2, jail: str = "auto", limit: int | None = None,
         rm_problems: int = 20, synth_questions: int = 3, rl_steps: int = 2,
         budget: float = 0.1, output: str | None = None, cp_problems: int = 16) -> int:
    from acecoder.services import ServiceGroup

    started = time.perf_counter()
    out = Path(output) if output else Path(tempfile.mkdtemp(prefix="acecoder-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    problems = load_mbpp()[:limit]
    with_question = [p for p in problems if p.question]
    print(f"acecoder demo: outputs under {out}")
    print("\nacecoder demo, step 0: the executor, RM and synthesis services as processes on "
          "loopback (the RM server loads its model in the background; the first run converts "
          "it from GGUF, about a minute)", flush=True)
    group = ServiceGroup(echo=False)  # the demo prints what they say itself, between its steps
    failed = None
    try:
        ex = group.start("executor", "--port", "0", "--workers", str(workers), "--jail", jail,
                         "--max-queue", "4096")
        rm = group.start("rm", "--port", "0", "--executor", ex.target, wait_ready=True)
        synth = None
        if synth_questions:
            (out / "synth").mkdir(exist_ok=True)
            synth = group.start("synth", "--port", "0", "--executor", ex.target,
                                "--state-dir", str(out / "synth-state"), "--data-dir",
                                str(out / "synth"), "--max-tokens", "384")
        for child in group.children:
            print(f"  {child.name:<8} {child.target} (pid {child.proc.pid})")

        print(f"\nacecoder demo, step 1: {len(problems)} MbppBase problems through the "
              "executor, reference + broken solution each", flush=True)
        executor_step(ex.target, problems)
        if cp_problems:
            print(f"\nacecoder demo, step 1b: {cp_problems} competitive-programming problems "
                  "(stdin/stdout tests) per language through the executor, reference + broken "
                  "solution each", flush=True)
            stdio_step(ex.target, load_stdio(), cp_problems)

        chosen = with_question[:rm_problems]
        print(f"\nacecoder demo, step 2: online best-of-4 on {len(chosen)} problems with the "
              "RM server (and its executor for the tests)", flush=True)
        print(group.await_ready(rm), flush=True)
        rm_step(rm.target, chosen, budget)

        if synth is not None:
            seeds = with_question[:synth_questions]
            print(f"\nacecoder demo, step 3: a test-synthesis job for {len(seeds)} questions on "
                  "the synthesis service (embedded SmolLM2-135M-Instruct: rewrite, imagine "
                  "tests, proxy-filter in the executor, decontaminate)", flush=True)
            synth_step(synth.target, out / "synth", seeds)
        if rl_steps:
            print(f"\nacecoder demo, step 4: {rl_steps} REINFORCE++ steps of the embedded "
                  "SmolLM2-135M-Instruct on DeepSpeed (CPU), rewards from the executor and the "
                  "RM server (mix)", flush=True)
            if rl_step(ex.target, rm.target, out / "rl", rl_steps) != 0:
                failed = "the RL step failed"
    except RuntimeError as exc:
        failed = str(exc)
    finally:
        codes = group.stop()
    print("\nservices stopped: " + ", ".join(f"{k} exit {v}" for k, v in codes.items())
          + (f"; processes left behind (killed): {group.leftovers}" if group.leftovers
             else "; no process left behind"))
    if failed:
        print(f"acecoder demo failed: {failed}")
    print(f"acecoder demo done in {time.perf_counter() - started:.0f} s; outputs under {out}")
    clean = all(c == 0 for c in codes.values()) and not group.leftovers
    return 0 if clean and not failed else 1


def executor_step(target: str, problems: list[Problem]) -> None:
    """Run every problem's reference and broken solution through the executor at `target`;
    print verdicts and throughput."""
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


def stdio_step(target: str, problems: list[StdioProblem], count: int) -> None:
    """Run `count` problems' Python and C++ references, and a broken variant of each, through
    the executor at `target`; print verdicts, throughput and compile times."""
    breakers = {"python": broken_stdio, "cpp": broken_cpp}
    rows = []
    with ExecutorClient(target, timeout=600) as client:
        for language, breaker in breakers.items():
            chosen = [p for p in problems if language in p.solutions][:count]
            for variant in ("reference", "broken"):
                batch = [Program(p.solutions[language] if variant == "reference"
                                 else breaker(p.solutions[language]),
                                 [{"input": i, "output": o} for i, o in p.tests],
                                 checker=p.checker, timeout=max(p.time_limit or 2.0, 2.0),
                                 language=language, request_id=p.task_id) for p in chosen]
                started = time.perf_counter()
                results = list(client.execute_batch(batch, deadline=600))
                wall = time.perf_counter() - started
                verdicts = collections.Counter(v for r in results for v in r.verdicts)
                rows.append({
                    "language": language, "variant": variant, "programs": len(results),
                    "all passed": sum(r.all_passed for r in results),
                    **{v.value: verdicts.get(v, 0) for v in Verdict if v is not Verdict.SKIPPED},
                    "compile s": statistics.fmean(r.compile_duration for r in results),
                    "programs/s": len(results) / wall,
                    "tests/s": sum(len(r.tests) for r in results) / wall,
                })
    print_table(rows)


def print_table(rows: list[dict[str, object]]) -> None:
    cols = list(rows[0])
    cells = [[_fmt(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


def _fmt(v: object) -> str:
    if not isinstance(v, float):
        return str(v)
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"
