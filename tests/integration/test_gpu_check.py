"""bench/gpu_check.sh, the RM server's GPU check, run as CI can: its argument handling, and
every step on the CPU (bf16 weights too), with the same table a GPU run writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.sh"


def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHON": sys.executable}, cwd=ROOT, check=False)


@pytest.mark.parametrize(("args", "says"), [
    pytest.param(["--device", "tpu"], "cpu or cuda", id="device"),
    pytest.param(["--skip", "flash"], "unknown step", id="skip"),
    pytest.param(["--items", "12"], "multiple of 8", id="items"),
    pytest.param(["--dtype", "int8"], "invalid choice", id="dtype"),
    pytest.param([], "--out", id="no-out"),
])
def test_bad_arguments_exit_2_saying_what_to_change(args: list[str], says: str,
                                                    tmp_path: Path) -> None:
    out = ["--out", str(tmp_path / "t.txt")] if args else []
    r = run(*args, *out)
    assert r.returncode == 2, r.stderr
    assert says in r.stderr
    assert not (tmp_path / "t.txt").exists()


def test_cuda_without_a_cuda_build_says_what_to_install(tmp_path: Path) -> None:
    """The machine CI runs on has torch's CPU build: asking for CUDA is refused plainly."""
    import torch

    assert not torch.cuda.is_available()  # the pinned CPU build
    r = run("--out", str(tmp_path / "t.txt"))
    assert r.returncode == 2
    assert "no CUDA device" in r.stderr and "--device cpu" in r.stderr


def table(text: str) -> dict[str, list[str]]:
    """The step rows of the table, split into their columns."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("  ") if c.strip()]
        if cells and cells[0].startswith(("fp32 reference", "transformers", "vllm")):
            rows[cells[0]] = cells
    return rows


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_step_runs_on_the_cpu_and_writes_its_table(tmp_path: Path) -> None:
    """The whole script in fp32 on the CPU: every backend agrees with the reference within
    1e-3 and keeps its order, and the benchmark on `samples` ran against the baseline."""
    out = tmp_path / "gpu_check.txt"
    r = run("--device", "cpu", "--dtype", "float32", "--items", "8", "--requests", "16",
            "--out", str(out), timeout=850)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    text = out.read_text()
    rows = table(text)
    steps = ("transformers float32 packed", "transformers float32 batched", "vllm float32")
    assert set(steps) <= set(rows), text
    for step in steps:
        _, dtype, rate, diff, tol, result, reward, order = rows[step]
        assert (dtype, tol, result) == ("float32", "1e-03", "ok"), rows[step]
        assert float(rate) > 0 and float(diff) <= 1e-3 and float(reward) <= 1e-3
        assert order == "100.0%", rows[step]
    assert "## traffic: samples" in text and "baseline" in text and "acecoder gRPC" in text
    bench = json.loads(out.with_suffix(".json").read_text())
    names = {row["contender"] for row in bench["rows"]}
    assert {"baseline", "acecoder gRPC"} <= names
    assert all(row["traffic"] == "samples" and row["requests"] == 16 for row in bench["rows"])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_bf16_is_measured_against_fp32_and_judged_by_the_tolerance(tmp_path: Path) -> None:
    """The transformers backend in bf16 (the GPU's serving dtype) runs in both engines; its
    distance from fp32 is a real measurement (bf16 scores are never exactly the fp32 ones)
    and the exit status follows the 1e-2 verdict."""
    out = tmp_path / "gpu_check.txt"
    r = run("--device", "cpu", "--dtype", "bfloat16", "--items", "8", "--skip", "vllm,bench",
            "--out", str(out), timeout=550)
    rows = table(out.read_text())
    results = []
    for step in ("transformers bfloat16 packed", "transformers bfloat16 batched"):
        _, dtype, _, diff, tol, result, reward, order = rows[step]
        assert (dtype, tol) == ("bfloat16", "1e-02")
        assert 0 < float(diff) < 5 and 0 <= float(reward) <= 1
        assert result == ("ok" if float(diff) <= 1e-2 else "OVER TOLERANCE")
        assert float(order.rstrip("%")) >= 50  # bf16 keeps most of fp32's ranking
        results.append(result)
    assert r.returncode == (0 if results == ["ok", "ok"] else 1), r.stderr[-2000:]
