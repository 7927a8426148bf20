"""bench/stdio_bench.py runs end to end on one problem (without SandboxFusion: its rows are
left out, and the table says so)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "stdio_bench.py"


@pytest.mark.slow
def test_stdio_bench_runs_on_one_problem() -> None:
    proc = subprocess.run([sys.executable, str(BENCH), "--problems", "1", "--cpp-problems", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "SandboxFusion: not run" in out
    for row in ("acecoder gRPC", "acecoder /acecoder/v1/run_tests", "acecoder /run_code"):
        lines = [line for line in out.splitlines() if line.startswith(row)]
        assert len(lines) >= 2, out  # python and cpp
    grpc = [line for line in out.splitlines() if line.startswith("acecoder gRPC")]
    assert all("2/2 (100%)" in line for line in grpc), out
    assert "stop_on_first_failure" in out and "all still fail: True" in out


def test_stdio_bench_refuses_bad_arguments() -> None:
    for args, flag in ((["--workers", "0"], "--workers"),
                       (["--sf-venv", "/nonexistent"], "--sandboxfusion"),
                       (["--problems", "1000"], "--problems")):
        proc = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 2 and flag in proc.stderr, (args, proc.stderr)
