"""`acecoder demo`: the main job on the embedded defaults, with real servers on loopback.

1. Executor: start the sandboxed executor server, run every MbppBase reference solution and
   a broken variant of each through it, print verdicts and throughput.
2. Reward model: start the RM server (embedded SmolLM2-135M AceCode-RM) next to it, and for a
   few problems rank four candidates (the reference and three wrong ones) by RM score alone
   and by tests-then-RM; print the table and the pass rate of each pick.
3. Synthesis: a handful of MbppBase questions through stages 1-3 with the embedded
   SmolLM2-135M-Instruct as both rewriter and proxy (its tests are poor; the filter shows it).
4. RL: a few REINFORCE++ steps (`acecoder train rl`, DeepSpeed on CPU) of the embedded
   SmolLM2-135M-Instruct on the warm-up prompts, rewards from the executor server over gRPC;
   prints each step's metrics.
Both servers are stopped with SIGTERM at the end and must exit cleanly.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from acecoder.executor import demo as executor_demo
from acecoder.executor.datasets import Problem, load_mbpp, wrong_variants
from acecoder.serving import spawn_server


def candidates(p: Problem) -> list[str]:
    """The reference solution (shuffled in) and three wrong ones, as a policy might write."""
    wrong_op, perturbed, stub = wrong_variants(p)
    return [f"```python\n{wrong_op}```", p.program, perturbed, stub]


def _start_rm(executor: str) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "acecoder.cli", "serve", "rm", "--port", "0",
           "--executor", executor]
    proc, m = spawn_server(cmd, r"listening on (\S+)", "the RM server")
    assert proc.stdout is not None
    print("RM server loading the embedded SmolLM2-135M AceCode-RM (the first run converts it "
          "from GGUF, about a minute) ...", flush=True)
    ready = proc.stdout.readline()
    if "ready" not in ready:
        proc.kill()
        raise RuntimeError(f"the RM server did not get ready (said: {ready!r})")
    print(ready.strip())
    return proc, m.group(1)


def rm_step(executor: str, problems: list[Problem]) -> int:
    from acecoder.clients import RewardClient

    proc, target = _start_rm(executor)
    try:
        rows = []
        picks = {"random": 0.0, "RM": 0.0, "tests+RM": 0.0}
        started = time.perf_counter()
        with RewardClient(target, timeout=600) as rm:
            info = rm.model_info()
            for p in problems:
                cands = candidates(p)
                by_tests = rm.rerank(p.question, cands, tests=list(p.tests), setup=p.setup)
                rates = {r.index: r.pass_rate or 0.0 for r in by_tests}
                by_rm = rm.rerank(p.question, cands)
                picks["random"] += sum(rates.values()) / len(cands)
                picks["RM"] += rates[by_rm[0].index]
                picks["tests+RM"] += rates[by_tests[0].index]
                rows.append({
                    "problem": p.task_id,
                    "RM scores": " ".join(f"{r.score:+.2f}" for r in
                                          sorted(by_rm, key=lambda r: r.index)),
                    "pass rates": " ".join(f"{rates[i]:.2f}" for i in range(len(cands))),
                    "RM pick": by_rm[0].index, "tests+RM pick": by_tests[0].index,
                    "pass rate of RM pick": rates[by_rm[0].index],
                    "pass rate of tests+RM pick": rates[by_tests[0].index],
                })
        wall = time.perf_counter() - started
        executor_demo.print_table(rows)
        n = len(problems)
        print("mean pass rate of the pick: " + ", ".join(
            f"{k} {v / n:.2f}" for k, v in picks.items()) + f" ({n} problems, 4 candidates "
            f"each, {2 * n * 4 / wall:.1f} candidates scored/s)")
        if not info.head_trained:
            print("note: the RM head is untrained, so RM picks are no better than chance yet; "
                  "the executor's tests carry the ranking")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    print(f"RM server stopped cleanly (exit code {code})" if code == 0
          else f"RM server exited with code {code}")
    return code


def synth_step(executor: str, problems: list[Problem], max_tokens: int = 384) -> None:
    import asyncio
    import json
    import tempfile
    from pathlib import Path

    from acecoder.clients import AsyncExecutorClient
    from acecoder.server.synth import pipeline
    from acecoder.server.synth.local_llm import TransformersChat

    out_dir = Path(tempfile.mkdtemp(prefix="acecoder-demo-"))
    seeds = out_dir / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"id": p.task_id, "question": p.question,
                                         "program": p.program, "source": "mbpp"}) + "\n"
                             for p in problems))
    out = out_dir / "acecode.jsonl"
    llm = TransformersChat(max_tokens=max_tokens)
    started = time.perf_counter()

    async def run() -> dict:  # type: ignore[type-arg]
        async with AsyncExecutorClient(executor, timeout=600) as ex:
            try:
                return await pipeline.run(seeds, out, llm=llm, proxy=llm, executor=ex,
                                          config=pipeline.SynthConfig(n_tests=8, concurrency=1),
                                          progress=True)
            finally:
                await llm.close()

    report = asyncio.run(run())
    print(pipeline.format_report(report))
    print(f"{len(problems)} questions in {time.perf_counter() - started:.0f} s; kept records in "
          f"{out}, dropped ones (with reasons) in {out}.dropped.jsonl")


def rl_step(executor: str, steps: int) -> int:
    import json
    import os
    import tempfile
    from pathlib import Path

    out = Path(tempfile.mkdtemp(prefix="acecoder-demo-rl-"))
    cmd = [sys.executable, "-m", "acecoder.cli", "train", "rl", "--preset", "rl_cpu_tiny",
           "--output", str(out), "--executor", executor, "--steps", str(steps),
           "--save-every", str(steps)]
    started = time.perf_counter()
    code = subprocess.run(cmd, env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"}).returncode
    if code != 0:
        print(f"acecoder train rl exited with code {code}")
        return code
    print(f"\n{'step':>4} {'reward':>7} {'pass rate':>9} {'KL':>8} {'entropy':>8} "
          f"{'resp len':>8} {'clip':>5} {'step s':>7} {'reward wait':>11}")
    for line in (out / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        print(f"{r['step']:>4} {r['reward/mean']:>7.3f} {r['reward/pass_rate']:>9.3f} "
              f"{r['policy/kl']:>8.4f} {r['policy/entropy']:>8.3f} {r['response/length']:>8.1f} "
              f"{r['policy/clip_fraction']:>5.2f} {r['time/step']:>7.1f} "
              f"{100 * r['time/reward_wait_share']:>10.1f}%")
    import shutil

    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # 1.6 GB of optimizer state
    print(f"{steps} RL steps in {time.perf_counter() - started:.0f} s; metrics, TensorBoard logs "
          f"and the trained policy in {out} (its checkpoint was removed: it resumes, but holds "
          "1.6 GB of optimizer state a demo does not need)")
    return 0


def main(workers: int = 2, jail: str = "auto", limit: int | None = None,
         rm_problems: int = 6, synth_questions: int = 3, rl_steps: int = 2) -> int:
    problems = load_mbpp()[:limit]
    print(f"acecoder demo, step 1: {len(problems)} MbppBase problems through the executor, "
          "reference + broken solution each")
    proc, target = executor_demo.start_server(workers, jail)
    print(f"executor server up at {target} (pid {proc.pid})")
    rm_code = 1
    rl_code = 0
    try:
        executor_demo.run(target, problems)
        chosen = [p for p in problems if p.question][:rm_problems]
        print(f"\nacecoder demo, step 2: best-of-4 reranking on {len(chosen)} problems with the "
              "reward model server")
        rm_code = rm_step(target, chosen)
        if synth_questions:
            seeds = [p for p in problems if p.question][:synth_questions]
            print(f"\nacecoder demo, step 3: test synthesis for {len(seeds)} questions with the "
                  "embedded SmolLM2-135M-Instruct (rewrite, imagine tests, proxy-filter in the "
                  "executor, decontaminate)")
            synth_step(target, seeds)
        if rl_steps:
            print(f"\nacecoder demo, step 4: {rl_steps} REINFORCE++ steps of the embedded "
                  "SmolLM2-135M-Instruct on DeepSpeed (CPU), rewards from the executor server")
            rl_code = rl_step(target, rl_steps)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    print(f"executor server stopped cleanly (exit code {code})" if code == 0
          else f"executor server exited with code {code}")
    return 0 if code == 0 and rm_code == 0 and rl_code == 0 else 1
