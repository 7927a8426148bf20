"""bench/sizing.py: its arithmetic on figures written here, its replay against its equations,
the committed figures, and the exit 2 a missing or malformed benchmark JSON gets."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SIZING = ROOT / "bench" / "sizing.py"
TARGET = 0.05


def executor_json(path: Path, core_s_per_test: float = 0.005, *, row: str = "mbpp-rl") -> Path:
    """executor_bench.py --json's shape, one row."""
    path.write_text(json.dumps({"machine": "test", "cpus": 2, "rows": [
        {"id": row, "name": row, "programs": 100, "tests": 300, "tests_per_program": 3.0,
         "wall_s": 300 * core_s_per_test / 2, "programs_per_s": 1.0, "tests_per_s": 1.0,
         "p50_ms": 1.0, "p99_ms": 2.0, "workers": 2, "cores": 2,
         "core_s_per_test": core_s_per_test, "core_s_per_program": 3 * core_s_per_test}]}))
    return path


def rm_json(path: Path, tokens_per_s: float = 1500.0, device: str = "cpu") -> Path:
    """rm_bench.py --json's shape: the row sizing must pick (acecoder gRPC, samples, the
    highest concurrency) among ones it must not."""
    def row(traffic: str, contender: str, concurrency: int, tps: float) -> dict:
        return {"traffic": traffic, "contender": contender, "concurrency": concurrency,
                "requests": 128, "items_per_s": tps / 300, "p50_ms": 1.0, "p99_ms": 2.0,
                "padding": 1.0, "peak_rss_mb": 1.0, "max_diff": 0.0, "stages": {},
                "tokens_per_item": 300.0, "tokens_per_s": tps, "device": device,
                "model": "embedded:smollm2-135m"}
    path.write_text(json.dumps({"machine": "test", "rows": [
        row("samples", "baseline", 64, 10 * tokens_per_s),
        row("samples", "acecoder gRPC", 8, tokens_per_s / 2),
        row("samples", "acecoder gRPC", 64, tokens_per_s),
        row("variants", "acecoder gRPC", 128, 10 * tokens_per_s)]}))
    return path


def sizing(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SIZING), *map(str, args)], capture_output=True,
                          text=True, timeout=120)


ROW = re.compile(r"^(rule|rm|mix)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)%", re.M)


def rows(out: str) -> dict[str, dict[str, float | None]]:
    """The replica table: per reward kind, cores, GPUs, the two waits and the wait share."""
    found = {}
    for kind, cores, gpus, model, replay, step, share in ROW.findall(out):
        found[kind] = {"cores": None if cores == "-" else int(cores),
                       "gpus": None if gpus == "-" else int(gpus), "model": float(model),
                       "replay": float(replay), "step": float(step), "share": float(share) / 100}
    assert set(found) == {"rule", "rm", "mix"}, out
    return found


def run_ok(*args: str | Path) -> dict[str, dict[str, float | None]]:
    proc = sizing("--cores-per-executor", "1", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return rows(proc.stdout)


@pytest.fixture
def figures(tmp_path: Path) -> tuple[Path, Path]:
    return executor_json(tmp_path / "e.json"), rm_json(tmp_path / "r.json")


def test_sized_counts_keep_the_wait_under_the_target_and_are_the_smallest(
        figures: tuple[Path, Path]) -> None:
    e, r = figures
    got = run_ok("--executor-json", e, "--rm-json", r)
    for kind in ("rule", "rm", "mix"):
        assert got[kind]["share"] <= TARGET, got
    assert got["mix"]["cores"] == got["rule"]["cores"] and got["mix"]["gpus"] == got["rm"]["gpus"]
    # one fewer is not enough: checking a deployment with it shows a wait over the target
    fewer = run_ok("--executor-json", e, "--rm-json", r,
                   "--executor-cores", str(got["rule"]["cores"] - 1),
                   "--rm-gpus", str(max(1, got["rm"]["gpus"] - 1)))
    assert fewer["rule"]["cores"] == got["rule"]["cores"] - 1
    assert fewer["rule"]["share"] > TARGET, fewer
    if got["rm"]["gpus"] > 1:
        assert fewer["rm"]["share"] > TARGET, fewer


def test_twice_the_executor_speed_halves_the_cores(tmp_path: Path) -> None:
    r = rm_json(tmp_path / "r.json")
    slow = run_ok("--executor-json", executor_json(tmp_path / "slow.json", 0.01), "--rm-json", r)
    fast = run_ok("--executor-json", executor_json(tmp_path / "fast.json", 0.005), "--rm-json", r)
    half = slow["rule"]["cores"] / 2
    assert slow["rule"]["cores"] >= 8  # large enough for halving to show
    assert half - 1 <= fast["rule"]["cores"] <= half + 1, (slow, fast)


def test_twice_the_rm_speed_halves_the_gpus(figures: tuple[Path, Path]) -> None:
    e, r = figures
    base = ["--executor-json", e, "--rm-json", r, "--prompts", "1024"]
    slow = run_ok(*base, "--rm-tokens-per-s", "2000")
    fast = run_ok(*base, "--rm-tokens-per-s", "4000")
    half = slow["rm"]["gpus"] / 2
    assert slow["rm"]["gpus"] >= 8
    assert half - 1 <= fast["rm"]["gpus"] <= half + 1, (slow, fast)


def test_the_replay_agrees_with_the_equations_without_timeouts(
        figures: tuple[Path, Path]) -> None:
    e, r = figures
    got = run_ok("--executor-json", e, "--rm-json", r, "--generate-batch", "4")
    per_sample = 20 * 0.005  # one sample more on the busiest core is the most they differ by
    assert abs(got["rule"]["replay"] - got["rule"]["model"]) <= per_sample + 0.01, got


def test_overlap_buys_cores_and_the_timeout_tail_costs_them(figures: tuple[Path, Path]) -> None:
    e, r = figures
    base = run_ok("--executor-json", e, "--rm-json", r)
    serial = run_ok("--executor-json", e, "--rm-json", r, "--no-overlap")
    assert serial["rule"]["cores"] > base["rule"]["cores"], (base, serial)
    proc = sizing("--cores-per-executor", "1", "--executor-json", e, "--rm-json", r,
                  "--timeout-share", "0.01")
    hung = rows(proc.stdout)
    # 1% of tests at 3 s each: about 7x the mean cost of a sample, and the replay's tail more
    assert hung["rule"]["cores"] > 5 * base["rule"]["cores"], (base, hung)
    assert "every test hangs takes 60 s" in proc.stdout


def test_inputs_say_which_figures_are_measured_and_which_are_gpu_parameters(
        figures: tuple[Path, Path]) -> None:
    e, r = figures
    out = sizing("--executor-json", e, "--rm-json", r).stdout
    assert re.search(r"executor cost of a test\s+5\.00 ms x core\s+measured", out), out
    assert re.search(r"RM tokens/s, measured\s+1,500\s+measured", out), out
    assert re.search(r"RM tokens/s per GPU \(7B\).*GPU-only.*estimate", out), out
    assert re.search(r"generation tokens/s per GPU.*GPU-only", out), out
    measured = sizing("--executor-json", e, "--rm-json", r, "--rm-tokens-per-s", "9000").stdout
    assert re.search(r"RM tokens/s per GPU \(7B\)\s+9,000\s+parameter", measured), measured


def test_the_committed_figures_size_acecoders_recipe() -> None:
    proc = sizing()  # bench/data/sizing/*.json, executor cores in replicas of 14 workers
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "128 x 8" in proc.stdout and "row mbpp-rl" in proc.stdout
    cores = re.search(r"^rule\s+(\d+) \((\d+) x 14\)", proc.stdout, re.M)
    assert cores and int(cores.group(2)) == -(-int(cores.group(1)) // 14), proc.stdout
    got = run_ok()
    assert all(got[k]["share"] <= TARGET for k in got), got


@pytest.mark.parametrize(("which", "content", "message"), [
    pytest.param("executor", None, "no file", id="executor-missing"),
    pytest.param("rm", None, "no file", id="rm-missing"),
    pytest.param("executor", "{not json", "is not JSON", id="executor-not-json"),
    pytest.param("rm", "", "cannot read", id="rm-a-directory"),
    pytest.param("rm", '{"rows": []}', 'has no "rows" list', id="rm-no-rows"),
    pytest.param("executor", '{"rows": [{"id": "other", "core_s_per_test": 1}]}',
                 "has no row 'mbpp-rl'", id="executor-no-usable-row"),
    pytest.param("executor", '{"rows": [{"id": "mbpp-rl", "core_s_per_test": -1}]}',
                 "core_s_per_test must be a positive number", id="executor-negative-cost"),
    pytest.param("rm", '{"rows": [{"contender": "baseline", "tokens_per_s": 1}]}',
                 'no "acecoder gRPC" row', id="rm-no-acecoder-row"),
    pytest.param("rm", '{"rows": [{"contender": "acecoder gRPC", "tokens_per_s": "fast", '
                       '"tokens_per_item": 3}]}', "tokens_per_s must be a positive number",
                 id="rm-bad-rate"),
])
def test_a_missing_or_malformed_json_exits_2_saying_what_is_wrong(
        figures: tuple[Path, Path], tmp_path: Path, which: str, content: str | None,
        message: str) -> None:
    e, r = figures
    bad = tmp_path / "bad.json"
    if content == "":
        bad.mkdir()
    elif content is not None:
        bad.write_text(content)
    args = ["--executor-json", bad, "--rm-json", r] if which == "executor" else \
        ["--executor-json", e, "--rm-json", bad]
    proc = sizing(*args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"sizing: {which}_bench: ") and "Traceback" not in proc.stderr


def test_an_executor_row_can_be_chosen_and_an_unknown_one_is_refused(
        tmp_path: Path, figures: tuple[Path, Path]) -> None:
    _, r = figures
    e = executor_json(tmp_path / "e.json", row="acecoder-grpc")
    proc = sizing("--executor-json", e, "--rm-json", r)  # the fallback row
    assert proc.returncode == 0 and "row acecoder-grpc" in proc.stdout, proc.stderr
    proc = sizing("--executor-json", e, "--rm-json", r, "--executor-row", "mbpp-api")
    assert proc.returncode == 2 and "has no row 'mbpp-api'" in proc.stderr


@pytest.mark.parametrize(("args", "flag"), [
    pytest.param(["--target", "1.5"], "--target", id="target"),
    pytest.param(["--target", "0"], "--target", id="target-zero"),
    pytest.param(["--tests", "0"], "--tests", id="tests"),
    pytest.param(["--gpus", "two"], "--gpus", id="gpus"),
    pytest.param(["--sync-s", "-1"], "--sync-s", id="sync"),
])
def test_bad_flags_exit_2(args: list[str], flag: str) -> None:
    proc = sizing(*args)
    assert proc.returncode == 2 and flag in proc.stderr, proc.stderr


def test_an_rm_figure_measured_on_a_gpu_is_used_scaled_by_flops_per_token(
        tmp_path: Path, figures: tuple[Path, Path]) -> None:
    e, _ = figures
    r = rm_json(tmp_path / "gpu.json", 760_000.0, device="cuda:0")
    out = sizing("--executor-json", e, "--rm-json", r).stdout
    # 760,000 tokens/s of the 135M model x 1.35e8 / 7.6e9 params = 13,500 for the 7B RM
    assert re.search(r"RM tokens/s per GPU \(7B\)\s+13,500\s+measured on cuda:0", out), out
    assert "on CPU machines" not in out


def test_out_of_reach_says_why(figures: tuple[Path, Path]) -> None:
    e, r = figures
    # one sample in flight per trainer process: no number of cores keeps up
    proc = sizing("--executor-json", e, "--rm-json", r, "--concurrency", "1")
    assert proc.returncode == 0 and re.search(
        r"^rule\s+-\s+-.*out of reach: the trainers keep at most 8 samples in flight",
        proc.stdout, re.M), proc.stdout
    # a sample whose tests alone outlast the step's slack
    proc = sizing("--executor-json", e, "--rm-json", r, "--tests", "5000")
    assert re.search(r"^rule.*out of reach: one sample alone takes 25\.0 s", proc.stdout,
                     re.M), proc.stdout
