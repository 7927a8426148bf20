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


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_step_runs_on_the_cpu_in_bf16_and_writes_its_table(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.txt"
    r = run("--device", "cpu", "--dtype", "bfloat16", "--items", "16", "--requests", "16",
            "--out", str(out), timeout=850)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    text = out.read_text()
    rows = {line.split("  ")[0]: line for line in text.splitlines()}
    for step in ("fp32 reference (one item per forward)", "transformers bfloat16 packed",
                 "transformers bfloat16 batched", "vllm bfloat16"):
        assert step in rows, text
        assert rows[step].rstrip().endswith("ok"), rows[step]
    # the agreement column is a real measurement: bf16 differs from fp32, within 1e-2
    diffs = [float(rows[s].split()[5]) for s in ("transformers bfloat16 packed",
                                                 "transformers bfloat16 batched")]
    assert all(0 < d <= 1e-2 for d in diffs), diffs
    # the benchmark on `samples` ran against the baseline on the same device
    assert "## traffic: samples" in text and "baseline" in text and "acecoder gRPC" in text
    bench = json.loads(out.with_suffix(".json").read_text())
    names = {row["contender"] for row in bench["rows"]}
    assert {"baseline", "acecoder gRPC"} <= names
    assert all(row["traffic"] == "samples" and row["requests"] == 16 for row in bench["rows"])
