#!/usr/bin/env python3
"""How many executor cores and RM GPUs an RL run needs for its reward wait to stay under 5% of a
step: the model of docs/sizing.md on this machine's measured figures, checked by a simulation.

Reads what the benchmarks measured (`executor_bench.py --json`: core-seconds per test;
`rm_bench.py --json`: the RM server's tokens/s) and takes the run's shape as flags, with
AceCoder's GPU recipe as the defaults: Qwen2.5-Coder-7B, 128 prompts x 8 samples per step,
about 20 tests per question, 8 trainer GPUs. What only a GPU can tell (generation and scoring
speed of 7B models) is a parameter: `--gpu a100|h100` picks published or estimated figures,
every one of which a flag overrides with your own measurement.

For each reward kind (rule: executor; rm: reward model; mix: both at once) it finds the
smallest counts whose reward wait, on the equations, is at most `--target` of the step; then
replays the step's chunks sample by sample through that many cores or GPUs (seeded; tests
time out at `--timeout-share` with `--test-timeout` each) and, where the replay waits longer,
adds replicas until it does not.

    python bench/sizing.py                 # the figures committed in bench/data/sizing/
    python bench/sizing.py --executor-json E.json --rm-json R.json --gpu a100
    python bench/sizing.py --executor-cores 32 --rm-gpus 2  # check a deployment instead
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data" / "sizing"
# Executor rows, best first: per-assert tests, several samples of a problem in a row (as a
# trainer sends them), then the same without the repeats, then HumanEval through gRPC (one
# `check()` per program: a per-program cost, so the per-test figure is far too high).
EXECUTOR_ROWS = ("mbpp-rl", "mbpp-api", "acecoder-grpc", "acecoder-api")
SEARCH_LIMIT = 1 << 16  # replicas; past this a target counts as out of reach


class SizingError(ValueError):
    """A benchmark's JSON is missing or does not hold what sizing needs."""


# -- what the benchmarks measured -------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Measured:
    core_s_per_test: float
    """Executor: wall seconds x cores / tests of the row used."""
    executor_row: str
    executor_machine: str
    rm_tokens_per_s: float
    """RM server (`acecoder gRPC`) on the benchmark's device, its highest concurrency."""
    rm_tokens_per_item: float
    rm_row: str
    rm_machine: str
    rm_model: str
    rm_device: str


def _read(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SizingError(f"{what}: no file {path} (write one with bench/{what}.py --json FILE)") \
            from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SizingError(f"{what}: cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise SizingError(f"{what}: {path} is not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list) or not data["rows"]:
        raise SizingError(f"{what}: {path} has no \"rows\" list (is it bench/{what}.py --json "
                          "output?)")
    return data


def _number(row: dict, key: str, what: str, path: Path) -> float:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
            or not math.isfinite(value):
        raise SizingError(f"{what}: {path}, row {row.get('id') or row.get('contender')!r}: "
                          f"{key} must be a positive number, got {value!r}")
    return float(value)


def load_executor(path: Path, row_id: str | None = None) -> tuple[float, str, str]:
    """(core-seconds per test, the row's id, the machine) from executor_bench.py --json."""
    data = _read(path, "executor_bench")
    rows = {r.get("id"): r for r in data["rows"] if isinstance(r, dict)}
    wanted = (row_id,) if row_id else EXECUTOR_ROWS
    for key in wanted:
        if key in rows:
            return (_number(rows[key], "core_s_per_test", "executor_bench", path), key,
                    str(data.get("machine", "?")))
    raise SizingError(f"executor_bench: {path} has no row {' or '.join(map(repr, wanted))} "
                      f"(it has {', '.join(sorted(map(str, rows)))})")


def load_rm(path: Path) -> tuple[float, float, str, str, str, str]:
    """(tokens/s, tokens per item, row, machine, model, device) of acecoder's gRPC server on
    `samples` traffic (another kind where there is none) at its highest concurrency."""
    data = _read(path, "rm_bench")
    rows = [r for r in data["rows"]
            if isinstance(r, dict) and r.get("contender") == "acecoder gRPC"]
    if not rows:
        raise SizingError(f"rm_bench: {path} has no \"acecoder gRPC\" row (run rm_bench.py "
                          "without --skip grpc)")
    kinds = [r for r in rows if r.get("traffic") == "samples"] or rows
    row = max(kinds, key=lambda r: (r.get("concurrency") or 0, r.get("requests") or 0))
    label = f"{row.get('traffic')}, concurrency {row.get('concurrency')}"
    return (_number(row, "tokens_per_s", "rm_bench", path),
            _number(row, "tokens_per_item", "rm_bench", path), label,
            str(data.get("machine", "?")), str(row.get("model", "?")), str(row.get("device", "?")))


# -- the run and the GPU-only figures ---------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Run:
    """The step's shape (trainer/configs/rl_acecoder_gpu.json and AceCoder's paper)."""

    prompts: int = 128
    samples: int = 8
    gpus: int = 8
    """Trainer processes, one per GPU, in lock step."""
    generate_batch: int = 32
    """Prompts per generate call per process (a chunk)."""
    tests: float = 20.0
    prompt_tokens: float = 250.0
    response_tokens: float = 400.0
    policy_params: float = 7.6e9
    update_epochs: int = 1
    gradient_checkpointing: bool = True
    overlap: bool = True
    concurrency: int = 64
    """Samples in flight per trainer process (RewardSpec.concurrency)."""
    per_call: int = 8


@dataclass(frozen=True, kw_only=True)
class Gpu:
    """Figures only a GPU can give: parameters, with where each default comes from."""

    name: str
    gen_tokens_per_s: float
    """vLLM decode throughput of the 7B policy, per GPU."""
    peak_tflops: float
    """Dense bf16 peak of the datasheet."""
    train_mfu: float = 0.3
    rm_mfu: float = 0.4
    rm_params: float = 7.6e9
    rm_tokens_per_s: float | None = None
    """Measured: overrides peak x rm_mfu / (2 x rm_params)."""
    logprobs_s: float | None = None
    """Measured log-prob seconds per step per process: overrides the FLOPs estimate."""
    update_s: float | None = None
    sync_s: float = 0.0

    @property
    def rm_rate(self) -> float:
        """Tokens/s of one RM GPU: scoring is one forward (prefill, no decoding), 2 x params
        FLOPs per token at rm_mfu of the peak, unless measured."""
        if self.rm_tokens_per_s is not None:
            return self.rm_tokens_per_s
        return self.peak_tflops * 1e12 * self.rm_mfu / (2 * self.rm_params)


# Generation: third-party vLLM figures for 7-8B models on one GPU (docs/sizing.md cites them).
GPUS = {"a100": Gpu(name="A100-80GB", gen_tokens_per_s=3363.0, peak_tflops=312.0),
        "h100": Gpu(name="H100-SXM", gen_tokens_per_s=12500.0, peak_tflops=989.0)}


# -- the step, on paper --------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    chunks: list[int]
    """Prompts per chunk of one process."""
    generate: list[float]
    logprobs: list[float]
    update: float
    sync: float

    @property
    def busy(self) -> float:
        """The step without any reward wait."""
        return sum(self.generate) + sum(self.logprobs) + self.update + self.sync


def step_times(run: Run, gpu: Gpu) -> Step:
    per_process = math.ceil(run.prompts / run.gpus)
    chunks = [min(run.generate_batch, per_process - j)
              for j in range(0, per_process, run.generate_batch)]
    tokens = run.prompt_tokens + run.response_tokens
    flops = gpu.peak_tflops * 1e12 * gpu.train_mfu
    generate = [c * run.samples * run.response_tokens / gpu.gen_tokens_per_s for c in chunks]
    # old policy and reference: one forward each, 2 x params FLOPs a token
    if gpu.logprobs_s is None:
        logprobs = [2 * 2 * run.policy_params * c * run.samples * tokens / flops for c in chunks]
    else:
        logprobs = [gpu.logprobs_s * c / per_process for c in chunks]
    # forward + backward (6 x params), one more forward when activations are recomputed
    per_token = (8 if run.gradient_checkpointing else 6) * run.policy_params
    update = gpu.update_s if gpu.update_s is not None else (
        run.update_epochs * per_token * per_process * run.samples * tokens / flops)
    return Step(chunks, generate, logprobs, update, gpu.sync_s)


def wait(step: Step, run: Run, service: Callable[[int], float], *, floor: float = 0.0) -> float:
    """Seconds one process waits on rewards in a step, on the equations: chunk k (B_k samples
    over all processes) is submitted when it is generated, scored in service(B_k) seconds
    (no sooner than `floor`, one sample's own latency) after the previous chunk, and waited
    for only after the last chunk's log-probs (overlap) or at once (no overlap)."""
    t = finished = waited = 0.0
    for c, g, lp in zip(step.chunks, step.generate, step.logprobs, strict=True):
        t += g
        finished = max(t, finished) + max(service(run.gpus * c * run.samples), floor)
        if not run.overlap:
            waited += finished - t
            t = finished
        t += lp
    return waited + max(0.0, finished - t)


def executor_service(cores: int, cost: float, run: Run) -> Callable[[int], float]:
    """Seconds to run n samples of `cost` core-seconds each on `cores` cores, of which the
    trainers keep at most gpus x concurrency busy."""
    usable = min(cores, run.gpus * run.concurrency)
    return lambda n: n * cost / usable


def rm_service(gpus: int, rate: float, run: Run) -> Callable[[int], float]:
    tokens = run.prompt_tokens + run.response_tokens
    return lambda n: n * tokens / (gpus * rate)


def smallest(share: Callable[[int], float], target: float, start: int = 1,
             limit: int = SEARCH_LIMIT) -> int | None:
    """The smallest n in [start, limit] with share(n) <= target (share falls as n grows), or
    None."""
    if share(limit) > target:
        return None
    lo, hi = start, start
    while share(hi) > target:
        lo, hi = hi + 1, min(hi * 2, limit)
    while lo < hi:
        mid = (lo + hi) // 2
        if share(mid) <= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


# -- the step, replayed sample by sample ------------------------------------------------------


def simulate(step: Step, run: Run, *, cores: int | None = None, per_test: float = 0.0,
             test_timeout: float = 0.0, timeout_share: float = 0.0, rm_gpus: int | None = None,
             rm_rate: float = 1.0, seed: int = 0) -> float:
    """Seconds one process waits on rewards when every sample is run, not averaged: on
    `cores` cores, a sample's tests one after another on one core, each costing `per_test`
    or, with probability `timeout_share`, `test_timeout`; on `rm_gpus` GPUs, calls of
    `per_call` samples. Work is served in the order it was submitted; a chunk is done when
    its slowest sample is."""
    rng = random.Random(seed)
    tests = max(1, round(run.tests))
    cores_free = [0.0] * min(cores, run.gpus * run.concurrency) if cores else []
    gpus_free = [0.0] * rm_gpus if rm_gpus else []
    call = run.per_call * (run.prompt_tokens + run.response_tokens) / rm_rate
    t = finished = waited = 0.0
    for c, g, lp in zip(step.chunks, step.generate, step.logprobs, strict=True):
        t += g
        n = run.gpus * c * run.samples
        for _ in range(n if cores_free else 0):
            slow = sum(rng.random() < timeout_share for _ in range(tests)) if timeout_share else 0
            end = max(heapq.heappop(cores_free), t) + (tests - slow) * per_test \
                + slow * test_timeout
            heapq.heappush(cores_free, end)
            finished = max(finished, end)
        for _ in range(math.ceil(n / run.per_call) if gpus_free else 0):
            end = max(heapq.heappop(gpus_free), t) + call
            heapq.heappush(gpus_free, end)
            finished = max(finished, end)
        if not run.overlap:
            waited += max(0.0, finished - t)
            t = max(t, finished)
        t += lp
    return waited + max(0.0, finished - t)


# -- sizing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sized:
    kind: str
    cores: int | None
    rm_gpus: int | None
    model_wait: float
    """Seconds, on the equations."""
    sim_wait: float
    """Seconds, replayed sample by sample."""
    busy: float
    """The step's seconds without waiting."""
    note: str = ""

    @property
    def share(self) -> float:
        """The replayed wait as a share of the step."""
        return self.sim_wait / (self.busy + self.sim_wait)


@dataclass(frozen=True, kw_only=True)
class Executor:
    per_test: float
    """Core-seconds of one test (measured)."""
    test_timeout: float = 3.0
    timeout_share: float = 0.0

    def per_sample(self, tests: float) -> float:
        """Mean core-seconds of one sample: a timed-out test costs its whole limit."""
        return tests * ((1 - self.timeout_share) * self.per_test
                        + self.timeout_share * self.test_timeout)


def size_one(kind: Literal["rule", "rm"], step: Step, run: Run, gpu: Gpu, ex: Executor, *,
             target: float, seed: int = 0, given: int | None = None) -> Sized:
    """rule: executor cores; rm: RM GPUs. The smallest count whose wait on the equations is
    at most `target` of the step (or `given`); then the replay's wait at that count, and, where
    that is longer than the target, the smallest count up to 4x whose replay is not."""
    busy = step.busy
    if kind == "rule":
        mean = ex.per_sample(run.tests)

        def model(n: int) -> float:  # a sample's own tests run one after another: its floor
            return wait(step, run, executor_service(n, mean, run), floor=mean)

        def sim(n: int) -> float:
            return simulate(step, run, cores=n, per_test=ex.per_test,
                            test_timeout=ex.test_timeout, timeout_share=ex.timeout_share,
                            seed=seed)
    else:
        call = run.per_call * (run.prompt_tokens + run.response_tokens) / gpu.rm_rate

        def model(n: int) -> float:  # a call is scored on one replica: its floor
            return wait(step, run, rm_service(n, gpu.rm_rate, run), floor=call)

        def sim(n: int) -> float:
            return simulate(step, run, rm_gpus=n, rm_rate=gpu.rm_rate, seed=seed)

    def share(w: float) -> float:
        return w / (busy + w)

    n = given or smallest(lambda k: share(model(k)), target)
    if n is None:
        floor = mean if kind == "rule" else call
        why = f"one {'sample' if kind == 'rule' else 'call'} alone takes {floor:.1f} s"
        if kind == "rule":
            free = replace(run, concurrency=SEARCH_LIMIT)
            if smallest(lambda k: share(wait(step, free, executor_service(k, mean, free),
                                             floor=mean)), target) is not None:
                why = (f"the trainers keep at most {run.gpus * run.concurrency} samples in "
                       "flight (raise --concurrency: ACECODER_CONCURRENCY)")
        return Sized(kind, None, None, math.inf, math.inf, busy, f"out of reach: {why}")
    first, note, replayed = n, "", sim(n)
    if given is None and share(replayed) > target:
        # the replay's rounds and tail: the smallest count up to 4x whose replay meets it
        found = smallest(lambda k: share(sim(k)), target, start=first + 1, limit=4 * first)
        if found is None:
            n, note = 4 * first, f"{kind}: the replay waits over {target:.0%} even at 4x " \
                f"the equations' {first}"
        else:
            n, note = found, f"{kind}: the equations said {first}, the replay needs {found}"
        replayed = sim(n)
    cores, gpus = (n, None) if kind == "rule" else (None, n)
    return Sized(kind, cores, gpus, model(n), replayed, busy, note)


def size_all(step: Step, run: Run, gpu: Gpu, ex: Executor, *, target: float, seed: int = 0,
             cores: int | None = None, rm_gpus: int | None = None) -> list[Sized]:
    """rule, rm, and mix: both services at once with the counts each needs alone (a call is
    done when both are), its wait checked on the equations and in the replay."""
    rule = size_one("rule", step, run, gpu, ex, target=target, seed=seed, given=cores)
    rm = size_one("rm", step, run, gpu, ex, target=target, seed=seed, given=rm_gpus)
    if rule.cores is None or rm.rm_gpus is None:
        return [rule, rm, Sized("mix", rule.cores, rm.rm_gpus, math.inf, math.inf, step.busy,
                                "out of reach")]
    mean = ex.per_sample(run.tests)
    on_exec = executor_service(rule.cores, mean, run)
    on_rm = rm_service(rm.rm_gpus, gpu.rm_rate, run)
    call = run.per_call * (run.prompt_tokens + run.response_tokens) / gpu.rm_rate
    model_wait = wait(step, run, lambda n: max(on_exec(n), on_rm(n)), floor=max(mean, call))
    sim_wait = simulate(step, run, cores=rule.cores, per_test=ex.per_test,
                        test_timeout=ex.test_timeout, timeout_share=ex.timeout_share,
                        rm_gpus=rm.rm_gpus, rm_rate=gpu.rm_rate, seed=seed)
    note = "; ".join(x for x in (rule.note, rm.note) if x)
    return [rule, rm, Sized("mix", rule.cores, rm.rm_gpus, model_wait, sim_wait, step.busy, note)]


# -- the report -------------------------------------------------------------------------------

# Parameters of the models the benchmarks may have measured, for scaling by FLOPs per token.
KNOWN_PARAMS = {"embedded:smollm2-135m": 1.35e8}


def table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in (0, len(cells) - 1) else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])


def _count(n: int | None, per: int) -> str:
    return "-" if n is None else f"{n} ({math.ceil(n / per)} x {per})" if per > 1 else str(n)


def report(results: list[Sized], run: Run, step: Step, gpu: Gpu, ex: Executor, m: Measured,
           *, target: float, cores_per_executor: int, cpu_rm: Sized | None,
           cpu_rm_rate: float = 0.0, inputs: list[list[str]]) -> str:
    out = [f"# executor figures: {m.executor_machine} (row {m.executor_row})",
           f"# RM figures: {m.rm_machine} ({m.rm_model} on {m.rm_device}, {m.rm_row})", "",
           "inputs", table(["figure", "value", "source"], inputs), "",
           f"one step, per trainer process ({len(step.chunks)} chunk(s) of "
           f"{', '.join(map(str, step.chunks))} prompts; rewards of a chunk overlap the "
           f"{'next chunks and its own log-probs' if run.overlap else 'nothing (--no-overlap)'})",
           table(["phase", "seconds", "how"], [
               ["generate", f"{sum(step.generate):.1f}",
                "samples x response tokens / generation tokens/s"],
               ["log-probs", f"{sum(step.logprobs):.1f}",
                "measured" if gpu.logprobs_s is not None else
                "2 models x 2 x params x tokens / (peak x train MFU)"],
               ["update", f"{step.update:.1f}", "measured" if gpu.update_s is not None else
                f"{8 if run.gradient_checkpointing else 6} x params x tokens / (peak x train MFU)"],
               ["weight sync", f"{step.sync:.1f}", "parameter"],
               ["step, no wait", f"{step.busy:.1f}", ""]]), "",
           f"replicas for a reward wait under {target:.0%} of the step "
           f"(executor cores in replicas of {cores_per_executor} workers; RM: one GPU each)"]
    rows = []
    for r in results:
        rows.append([r.kind, _count(r.cores, cores_per_executor),
                     "-" if r.rm_gpus is None else str(r.rm_gpus),
                     f"{r.model_wait:.2f}", f"{r.sim_wait:.2f}",
                     f"{r.busy + r.sim_wait:.1f}", f"{100 * r.share:.1f}%", r.note])
    out.append(table(["reward", "executor cores", "RM GPUs", "wait s (equations)",
                      "wait s (replay)", "step s", "wait share", "note"], rows))
    if cpu_rm is not None:
        found = (f"{cpu_rm.rm_gpus} machines (wait share {100 * cpu_rm.share:.1f}%)"
                 if cpu_rm.rm_gpus is not None else cpu_rm.note)
        out += ["", "the 7B RM on CPU machines like the one measured (its tokens/s scaled by "
                    f"FLOPs per token, {cpu_rm_rate:,.0f} tokens/s): {found}"]
    worst = ex.test_timeout * run.tests
    out += ["", f"one program whose every test hangs takes {worst:.0f} s of one core "
                f"({run.tests:g} tests x {ex.test_timeout:g} s) however many replicas there are; "
                f"the step's overlap hides {step.logprobs[-1]:.1f} s of it "
                "(docs/sizing.md: the tail)"]
    return "\n".join(out)


def _positive(kind: type) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(float(text)) if kind is int and "e" in text.lower() else kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0 or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    pos, count = _positive(float), _positive(int)
    g = ap.add_argument_group("measured (the benchmarks' JSON)")
    g.add_argument("--executor-json", type=Path, default=DATA / "executor.json",
                   help="bench/executor_bench.py --json output (default: the committed one)")
    g.add_argument("--executor-row", default=None,
                   help=f"its row to use (default: the first of {', '.join(EXECUTOR_ROWS)})")
    g.add_argument("--rm-json", type=Path, default=DATA / "rm.json",
                   help="bench/rm_bench.py --json output (default: the committed one)")
    g.add_argument("--measured-rm-params", type=pos, default=None,
                   help="parameters of the model rm_bench measured (known: "
                        f"{', '.join(KNOWN_PARAMS)})")
    g = ap.add_argument_group("the run (defaults: AceCoder's GPU recipe)")
    g.add_argument("--prompts", type=count, default=128, help="prompts per step (%(default)s)")
    g.add_argument("--samples", type=count, default=8, help="samples per prompt (%(default)s)")
    g.add_argument("--gpus", type=count, default=8, help="trainer GPUs/processes (%(default)s)")
    g.add_argument("--generate-batch", type=count, default=32,
                   help="prompts per generate call per process (%(default)s, the preset's)")
    g.add_argument("--tests", type=pos, default=20.0, help="tests per question (%(default)s)")
    g.add_argument("--prompt-tokens", type=pos, default=250.0, help="mean (%(default)s)")
    g.add_argument("--response-tokens", type=pos, default=400.0, help="mean (%(default)s)")
    g.add_argument("--policy-params", type=pos, default=7.6e9, help="(%(default)s)")
    g.add_argument("--update-epochs", type=count, default=1)
    g.add_argument("--no-gradient-checkpointing", action="store_true")
    g.add_argument("--no-overlap", action="store_true", help="the trainer's overlap=false")
    g.add_argument("--concurrency", type=count, default=64,
                   help="samples in flight per trainer process (ACECODER_CONCURRENCY, "
                        "%(default)s)")
    g.add_argument("--per-call", type=count, default=8, help="samples per call (%(default)s)")
    g.add_argument("--test-timeout", type=pos, default=3.0,
                   help="seconds a hung test costs (the executor's default limit, %(default)s)")
    g.add_argument("--timeout-share", type=_share, default=0.0,
                   help="share of tests that hang until the limit (%(default)s)")
    g = ap.add_argument_group("GPU-only figures (parameters)")
    g.add_argument("--gpu", choices=sorted(GPUS), default="h100",
                   help="defaults for the figures below (%(default)s)")
    g.add_argument("--gen-tokens-per-s", type=pos, help="policy generation per GPU")
    g.add_argument("--peak-tflops", type=pos, help="dense bf16 peak per GPU")
    g.add_argument("--train-mfu", type=pos, help="trainer forward/backward (default 0.3)")
    g.add_argument("--rm-mfu", type=pos, help="RM scoring (default 0.4)")
    g.add_argument("--rm-params", type=pos, help="RM parameters (default 7.6e9, AceCodeRM-7B)")
    g.add_argument("--rm-tokens-per-s", type=pos, help="measured RM tokens/s per GPU")
    g.add_argument("--logprobs-s", type=pos, help="measured log-prob seconds per step")
    g.add_argument("--update-s", type=pos, help="measured update seconds per step")
    g.add_argument("--sync-s", type=float, default=0.0, help="weight sync seconds per step")
    g = ap.add_argument_group("what to find")
    g.add_argument("--target", type=_share, default=0.05, help="wait share (%(default)s)")
    g.add_argument("--executor-cores", type=count, help="check these cores instead of sizing")
    g.add_argument("--rm-gpus", type=count, help="check these RM GPUs instead of sizing")
    g.add_argument("--cores-per-executor", type=count, default=14,
                   help="workers (cores) of one executor replica (%(default)s, as "
                        "k8s/overlays/prod-gpu runs them)")
    g.add_argument("--seed", type=int, default=0, help="the replay's timeouts (%(default)s)")
    args = ap.parse_args(argv)
    if args.target <= 0:
        ap.error("--target must be > 0")
    if args.sync_s < 0:
        ap.error("--sync-s must be >= 0")

    try:
        per_test, row, ex_machine = load_executor(args.executor_json, args.executor_row)
        rm_tps, rm_tokens, rm_row, rm_machine, rm_model, rm_device = load_rm(args.rm_json)
    except SizingError as exc:
        print(f"sizing: {exc}", file=sys.stderr)
        return 2
    m = Measured(core_s_per_test=per_test, executor_row=row, executor_machine=ex_machine,
                 rm_tokens_per_s=rm_tps, rm_tokens_per_item=rm_tokens, rm_row=rm_row,
                 rm_machine=rm_machine, rm_model=rm_model, rm_device=rm_device)
    run = Run(prompts=args.prompts, samples=args.samples, gpus=args.gpus,
              generate_batch=args.generate_batch, tests=args.tests,
              prompt_tokens=args.prompt_tokens, response_tokens=args.response_tokens,
              policy_params=args.policy_params, update_epochs=args.update_epochs,
              gradient_checkpointing=not args.no_gradient_checkpointing,
              overlap=not args.no_overlap, concurrency=args.concurrency, per_call=args.per_call)
    preset = GPUS[args.gpu]
    given = {k: v for k, v in (("gen_tokens_per_s", args.gen_tokens_per_s),
                               ("peak_tflops", args.peak_tflops), ("train_mfu", args.train_mfu),
                               ("rm_mfu", args.rm_mfu), ("rm_params", args.rm_params),
                               ("rm_tokens_per_s", args.rm_tokens_per_s),
                               ("logprobs_s", args.logprobs_s), ("update_s", args.update_s))
             if v is not None}
    measured_params = args.measured_rm_params or KNOWN_PARAMS.get(rm_model)
    rm_params = args.rm_params or preset.rm_params
    rm_gpu_source = ""
    if args.rm_tokens_per_s is None and rm_device != "cpu":
        # rm_bench ran on a GPU: its figure is the one to use, scaled by FLOPs per token when
        # it measured a smaller model (whose lower MFU makes this an underestimate)
        scale = measured_params / rm_params if measured_params else 1.0
        given["rm_tokens_per_s"] = rm_tps * scale
        rm_gpu_source = f"measured on {rm_device} ({args.rm_json.name}: {rm_model}" + (
            f", x {measured_params:.3g}/{rm_params:.3g} params)" if measured_params else ")")
    gpu = replace(preset, sync_s=args.sync_s, **given)
    ex = Executor(per_test=per_test, test_timeout=args.test_timeout,
                  timeout_share=args.timeout_share)
    step = step_times(run, gpu)
    results = size_all(step, run, gpu, ex, target=args.target, seed=args.seed,
                       cores=args.executor_cores, rm_gpus=args.rm_gpus)
    cpu_rm, cpu_rm_rate = None, 0.0
    if measured_params is not None and rm_device == "cpu":
        cpu_rm_rate = rm_tps * measured_params / gpu.rm_params
        cpu = replace(gpu, rm_tokens_per_s=cpu_rm_rate)
        cpu_rm = size_one("rm", step, run, cpu, ex, target=args.target, seed=args.seed)

    def src(flag: str, default: str) -> str:
        return f"parameter (--{flag})" if flag.replace("-", "_") in given else default

    est = f"GPU-only: {preset.name} default"
    inputs = [
        ["prompts x samples per step", f"{run.prompts} x {run.samples}",
         "parameter (AceCoder's recipe)"],
        ["trainer GPUs; prompts per chunk", f"{run.gpus}; {run.generate_batch}",
         "parameter (one 8-GPU node; trainer/configs/rl_acecoder_gpu.json)"],
        ["tests per question", f"{run.tests:g}", "parameter (AceCoder: ~20 made per question)"],
        ["prompt + response tokens", f"{run.prompt_tokens:g} + {run.response_tokens:g}",
         f"parameter (the RM benchmark's samples: {rm_tokens:.0f} a sample)"],
        ["executor cost of a test", f"{1000 * per_test:.2f} ms x core",
         f"measured ({args.executor_json.name}, row {row})"],
        ["tests that hang", f"{args.timeout_share:.1%} x {args.test_timeout:g} s",
         "parameter (--timeout-share, --test-timeout)"],
        ["RM tokens/s, measured", f"{rm_tps:,.0f}",
         f"measured ({args.rm_json.name}: {rm_model} on {rm_device})"],
        ["RM tokens/s per GPU (7B)", f"{gpu.rm_rate:,.0f}", rm_gpu_source or
         src("rm-tokens-per-s", f"{est}: estimate, {gpu.peak_tflops:g} TFLOP/s x "
             f"{gpu.rm_mfu:g} MFU / (2 x {gpu.rm_params:.3g} params)")],
        ["generation tokens/s per GPU", f"{gpu.gen_tokens_per_s:,.0f}",
         src("gen-tokens-per-s", f"{est} (published vLLM figure)")],
        ["trainer peak x MFU", f"{gpu.peak_tflops:g} TFLOP/s x {gpu.train_mfu:g}",
         src("train-mfu", f"{est}: datasheet peak, assumed MFU")],
    ]
    print(report(results, run, step, gpu, ex, m, target=args.target,
                 cores_per_executor=args.cores_per_executor, cpu_rm=cpu_rm,
                 cpu_rm_rate=cpu_rm_rate, inputs=inputs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
