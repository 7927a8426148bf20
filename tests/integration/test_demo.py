"""`acecoder demo`, the main job, end to end on the embedded models (small sizes): the three
services as processes, every step's output, and a clean stop with nothing left behind."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_demo_runs_every_step_and_stops_cleanly(tmp_path: Path) -> None:
    out_dir = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "acecoder.cli", "demo", "--limit", "4",
                           "--rm-problems", "3", "--synth-questions", "1", "--rl-steps", "1",
                           "--cp-problems", "3", "--workers", "1", "--output", str(out_dir)],
                          capture_output=True, text=True, timeout=850)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    for step in range(5):
        assert f"step {step}" in out
    # step 0: three services, each its own process
    assert len(re.findall(r"^  (executor|rm|synth)\s+127\.0\.0\.1:\d+ \(pid \d+\)$", out,
                          re.M)) == 3
    # step 1b: competitive programming in Python and C++: references pass, broken ones do not
    for language in ("python", "cpp"):
        assert re.search(rf"^\s*{language}\s+reference\s+3\s+3\s", out, re.M), out
        assert re.search(rf"^\s*{language}\s+broken\s+3\s+0\s", out, re.M), out
    # step 2: the gain table; tests always find the reference solution
    assert "best-of-4 on MbppBase: 3 problems" in out
    assert re.search(r"^oracle\s+1\.000", out, re.M)
    assert re.search(r"^first test \+ RM\s+1\.000", out, re.M)
    assert re.search(r"^RM\s+[01]\.\d{3}", out, re.M)
    # step 3: a job on the synthesis service, its records where it says
    assert re.search(r"job \S+ SUCCEEDED: [01]/1 questions kept", out)
    assert (out_dir / "synth" / "acecode.jsonl").exists()
    # step 4: an RL step whose rewards came from the services
    rows = [json.loads(line) for line in (out_dir / "rl" / "metrics.jsonl").read_text()
            .splitlines()]
    assert [r["step"] for r in rows] == [1] and rows[0]["reward/dropped"] == 0
    assert "services stopped: synth exit 0, rm exit 0, executor exit 0; no process left " \
           "behind" in out
