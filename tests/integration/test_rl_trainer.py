"""`acecoder train rl` end to end: DeepSpeed processes under torchrun, rewards from real
executor and RM servers over gRPC, checkpoints, exact resume after SIGKILL, and samples
without a reward dropped and counted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from acecoder.serving import spawn_server
from acecoder.trainer.distributed import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# What must come out the same when a run is resumed (times are not).
SAME = ("samples", "reward/mean", "reward/std", "reward/pass_rate", "policy/kl",
        "policy/entropy", "policy/loss", "policy/clip_fraction", "response/length", "lr")


def command(out: Path, *extra: str, procs: int = 2) -> list[str]:
    launcher = [sys.executable, "-m"]
    if procs > 1:
        launcher += ["torch.distributed.run", "--nproc_per_node", str(procs),
                     "--master_port", str(free_port()), "-m"]
    return [*launcher, "acecoder.cli", "train", "rl", "--preset",
            "trainer/configs/rl_cpu_tiny.json", "--output", str(out), "--quiet", *extra]


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    finally:
        for leftover in Path("/dev/shm").glob("deepspeed_allreduce_buffer_*"):
            leftover.unlink(missing_ok=True)


def kill_tree(pid: int) -> None:
    """SIGKILL a launcher and every process under it at once (torchrun starts its workers in
    sessions of their own, so killing its process group would leave them running)."""
    import psutil

    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    for p in procs:
        p.send_signal(signal.SIGKILL)
    psutil.wait_procs(procs, timeout=30)


def rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.timeout(900)
def test_smollm2_on_two_processes_learns_logs_and_resumes(tmp_path: Path, server) -> None:  # type: ignore[no-untyped-def]
    """The CPU run that matters: the embedded SmolLM2-135M-Instruct as the policy, pass-rate
    rewards from the executor server, two DeepSpeed processes."""
    out = tmp_path / "run"
    done = run(command(out, "--executor", server.target, "--steps", "2"))
    assert done.returncode == 0, done.stderr[-4000:]
    first = rows(out)
    assert [r["step"] for r in first] == [1, 2]
    for r in first:
        assert r["samples"] == 4 and r["reward/dropped"] == 0
        assert 0.0 <= r["reward/mean"] <= 1.0 and 0.0 <= r["reward/pass_rate"] <= 1.0
        assert 0 < r["response/length"] <= 64 and r["policy/entropy"] > 0
        assert 0.0 <= r["time/reward_wait_share"] < 1.0 and r["time/step"] > 0
    assert first[0]["policy/kl"] == 0.0  # the reference is the starting policy, frozen
    if first[0]["reward/std"] > 0:  # a signal at step 1 moved the policy away from it
        assert first[1]["policy/kl"] != 0.0
    assert (out / "checkpoints" / "latest").read_text() == "step2"
    assert list((out / "tensorboard").iterdir())
    assert "2 steps done" in done.stderr

    # the same command with more steps resumes after step 2
    more = run(command(out, "--executor", server.target, "--steps", "3"))
    assert more.returncode == 0, more.stderr[-4000:]
    assert "resuming after step 2" in more.stderr
    assert [r["step"] for r in rows(out)] == [1, 2, 3]
    assert [r["step"] for r in rows(out)[:2]] == [1, 2] and rows(out)[:2] == first
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step3"]

    from transformers import AutoModelForCausalLM

    policy = AutoModelForCausalLM.from_pretrained(str(out / "policy"))
    assert policy.config.architectures == ["LlamaForCausalLM"]


@pytest.fixture(scope="module")
def one_at_a_time_rm(tiny_acecode_rm) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """An RM server that scores each item in a forward of its own, with no prefix cache: its
    scores do not depend on what else was in the batch, to the last bit. (A batched server's
    scores move in the 7th digit with the padding; Adam turns that into visibly different
    weights, which would hide what this test is after.)"""
    init, _ = tiny_acecode_rm
    proc, m = spawn_server([sys.executable, "-m", "acecoder.cli", "serve", "rm", "--port", "0",
                            "--model", str(init), "--max-batch-tokens", "1",
                            "--prefix-cache-mb", "0"], r"listening on (\S+)", "the RM server")
    yield m.group(1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


@pytest.mark.timeout(900)
def test_a_killed_run_resumes_and_matches_an_uninterrupted_one(
        tmp_path: Path, server, one_at_a_time_rm: str, tiny_policy: Path) -> None:  # type: ignore[no-untyped-def]
    """ZeRO-3 on two processes, the mixed reward (executor + RM server). Killed with SIGKILL
    once step 2's checkpoint exists, then started again: step 3 and the final weights are
    the uninterrupted run's."""
    args = ("--model", str(tiny_policy), "--reward", "mix", "--executor", server.target,
            "--rm", one_at_a_time_rm, "--zero", "3", "--lr", "1e-3", "--steps", "3")
    whole = tmp_path / "whole"
    done = run(command(whole, *args))
    assert done.returncode == 0, done.stderr[-4000:]

    broken = tmp_path / "broken"
    proc = subprocess.Popen(command(broken, *args), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    latest = broken / "checkpoints" / "latest"
    deadline = time.monotonic() + 600
    while not (latest.is_file() and latest.read_text() == "step2"):
        assert proc.poll() is None and time.monotonic() < deadline, "no step-2 checkpoint"
        time.sleep(0.02)
    kill_tree(proc.pid)
    proc.wait(timeout=60)
    assert latest.read_text() == "step2", "the run finished before it could be killed"

    resumed = run(command(broken, *args))
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resuming after step 2" in resumed.stderr, resumed.stderr[-6000:]
    a, b = rows(whole), rows(broken)
    assert [r["step"] for r in b] == [1, 2, 3]
    assert any(r["reward/std"] > 0 for r in a)  # the policy had something to learn from
    assert a[2]["policy/kl"] != 0.0  # and moved
    for key in SAME:
        assert b[2][key] == a[2][key], key

    from safetensors.torch import load_file

    wa = load_file(str(whole / "policy" / "model.safetensors"))
    wb = load_file(str(broken / "policy" / "model.safetensors"))
    start = load_file(str(tiny_policy / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert any(not torch.equal(wa[k], start[k]) for k in wa)  # trained
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_samples_without_a_reward_are_dropped_and_counted(tmp_path: Path,
                                                         tiny_policy: Path) -> None:
    """Nothing listens on the executor's address: every sample is dropped (never scored 0),
    each step says so, and the run goes on."""
    out = tmp_path / "run"
    done = run(command(out, "--model", str(tiny_policy), "--executor",
                       f"127.0.0.1:{free_port()}", "--reward-deadline", "2", "--steps", "2",
                       "--save-every", "0", "--gradient-checkpointing", "--estimator",
                       "baseline", procs=1))
    assert done.returncode == 0, done.stderr[-4000:]
    got = rows(out)
    assert [r["reward/dropped"] for r in got] == [4, 4]
    assert got[-1]["reward/dropped_total"] == 8
    assert got[0]["reward/mean"] is None  # a mean of nothing, not 0
    assert got[0]["policy/loss"] == 0.0
    assert "8 samples dropped (no reward)" in done.stderr


@pytest.mark.timeout(900)
def test_vllm_rollouts_see_each_update(tmp_path: Path, server, one_at_a_time_rm: str,
                                       tiny_policy: Path) -> None:  # type: ignore[no-untyped-def]
    """Greedy rollouts on vLLM, weights pushed after each update, against the same run on
    transformers: every step's samples (so their rewards) are the same only if vLLM
    generated step 2 with the weights step 1 trained."""
    args = ("--model", str(tiny_policy), "--reward", "mix", "--executor", server.target,
            "--rm", one_at_a_time_rm, "--lr", "1e-3", "--steps", "2", "--temperature", "0",
            "--save-every", "0")
    got = {}
    for engine in ("transformers", "vllm"):
        out = tmp_path / engine
        done = run(command(out, *args, "--rollout-engine", engine, procs=1))
        assert done.returncode == 0, done.stderr[-4000:]
        assert f"rollouts on {engine}" in done.stderr
        got[engine] = rows(out)
    hf, vl = got["transformers"], got["vllm"]
    assert hf[1]["policy/kl"] != 0.0  # step 1 moved the policy
    for a, b in zip(hf, vl, strict=True):
        assert b["reward/mean"] == pytest.approx(a["reward/mean"], abs=1e-6)
        assert b["response/length"] == a["response/length"]
    assert vl[0]["time/weight_sync"] > 0 and hf[0]["time/weight_sync"] == 0
    assert not (tmp_path / "vllm" / ".rollout-weights").exists()  # cleaned up


def test_the_deepspeed_launcher_runs_it(tmp_path: Path, server, tiny_policy: Path) -> None:  # type: ignore[no-untyped-def]
    """`deepspeed` passes --local_rank=N ahead of the command's own arguments."""
    out = tmp_path / "run"
    launcher = [str(Path(sys.executable).parent / "deepspeed"), "--num_accelerators", "2",
                "--master_port", str(free_port()), "--module"]
    cmd = [*launcher, "acecoder.cli", "train", "rl", "--preset", "rl_cpu_tiny", "--output",
           str(out), "--quiet", "--model", str(tiny_policy), "--executor", server.target,
           "--steps", "1", "--save-every", "0", "--no-resume"]
    done = run(cmd)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "2 process(es)" in done.stderr + done.stdout
    assert [r["samples"] for r in rows(out)] == [4]
