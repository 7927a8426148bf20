"""bench/soak.py runs end to end (a few seconds of it: the 10-minute soak is a benchmark)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_soak_runs_and_holds_for_a_few_seconds() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--minutes", "0.1",
                           "--clients", "4"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "disagreements with alone             0" in proc.stdout
    assert proc.stdout.rstrip().endswith("PASS")


def test_soak_refuses_bad_arguments() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--minutes", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--minutes" in proc.stderr
